"""What a model or encoder is worth, alone: costs and benchmarks, probes, what a teacher knows
before distilling, the diagnosis of a teacher-student pair, paired statistics, the SpecDeepMap peer."""

SCORE_NAMES = {"miou": "mIoU", "oa": "OA", "mf1": "mF1", "specdeepmap_iou": "SpecDeepMap IoU"}  # a score's key -> its name in tables

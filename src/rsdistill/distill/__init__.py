"""Distillation: the teacher policy, HyperKD's cross-spectral feature distillation, BLM-KD's logit distillation."""

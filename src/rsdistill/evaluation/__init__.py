"""What a model or encoder is worth, alone: costs and benchmarks, probes, what a teacher knows
before distilling, the diagnosis of a teacher-student pair, paired statistics, the SpecDeepMap peer."""

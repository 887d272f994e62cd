"""Experiments: models or pretraining recipes over seeds (and folds, sweeps, grids), their
pairs and results files; the quickstart and the unmixing evaluation run on the same runner."""

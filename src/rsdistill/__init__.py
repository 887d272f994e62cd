"""rsdistill: label-free pretraining and knowledge distillation for multispectral and hyperspectral imagery."""

__version__ = "0.1.0"

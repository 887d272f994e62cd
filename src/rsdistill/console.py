"""What the console shows: rsdistill's own lines, Lightning's progress and tables, and none of the
third-party noise a user cannot act on. One place, installed by the CLI; ``RSDISTILL_VERBOSE=1``
(or ``--verbose``) brings everything back.

Dropped (each known harmless, with why):
- Lightning's advertising tips ("💡 Tip: ... litlogger"), on every fit;
- "Loading `train_dataloader` to estimate number of stepping batches" (the warm-up schedule's step
  count; the fit that follows says nothing else);
- torch's ``isinstance(treespec, LeafSpec)`` deprecation raised inside Lightning's own code;
- jsonargparse's deprecations of arguments LightningCLI passes itself (``skip_none``,
  ``add_instantiator``, ``instantiate_classes``) and the note jsonargparse puts before the first;
- onnxconverter's "the float32 number … will be truncated" on fp16 export (tiny weights below fp16's
  range; what it costs is in the export's parity report);
- the ONNX exporter's "torchvision is not installed. Skipping torchvision::nms" (four lines on every
  export: rsdistill's models use no torchvision operator);
- Lightning's lines at every fit of an experiment's runs: "Seed set to N" (the seed is in rsdistill's
  own result line), "GPU/TPU/HPU available: …, used: …" (the device is the Trainer's
  ``accelerator`` option; Lightning still warns when a GPU is there and unused) and "`Trainer.fit`
  stopped: `max_epochs=N` reached" (the planned end, not an early stop);
- onnxruntime's own warnings (``onnxruntime_severity``, set by ``deploy.runtime.OnnxModel``): an fp16 graph prints "Could not
  find a CPU kernel and hence can't constant fold …" for each half-precision node it leaves unfolded,
  as this CPU has no fp16 kernels (the graph runs as exported; the parity report measures it);
- inside ``restored_quietly()`` only: "Restoring states from the checkpoint path at …" and "Loaded
  model weights from the checkpoint at …", when an experiment tests a grid's chosen point from its
  checkpoint (its own result line names the point); a resumed fit still says that it resumed.
"""

from __future__ import annotations

import logging
import os
import warnings
from contextlib import contextmanager

_MESSAGES = ("💡 Tip:", "Loading `train_dataloader` to estimate number of stepping batches", "torchvision is not installed. Skipping",
             "Seed set to ", "GPU available: ", "TPU available: ", "HPU available: ", "`Trainer.fit` stopped: `max_epochs=")
# a logger's filter sees only the records logged on it, not its children's: each logger by name
_NOISY_LOGGERS = ("lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.seed",
                  "torch.onnx._internal.exporter._registration")
_WARNINGS = (r".*isinstance\(treespec, LeafSpec\)` is deprecated", r"(?s).*skip_none parameter was deprecated",
             r"(?s).*add_instantiator`` was deprecated", r"(?s).*instantiate_classes`` was deprecated",
             r"(?s)\s*By default only one JsonargparseDeprecationWarning per type is shown",  # the note before the first of them
             r"the float32 number .* will be truncated to")  # fp16 export: weights below fp16's range; the parity check measures it


_RESTORED = ("Restoring states from the checkpoint path at ", "Loaded model weights from the checkpoint at ")


class _DropKnownNoise(logging.Filter):
    def __init__(self, messages: tuple[str, ...] = _MESSAGES):
        super().__init__()
        self.messages = messages

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(self.messages)


@contextmanager
def restored_quietly():
    """Lightning's lines about restoring a checkpoint dropped inside the block (unless verbose)."""
    logger, hush = logging.getLogger("lightning.pytorch.utilities.rank_zero"), _DropKnownNoise(_RESTORED)
    if not verbose():
        logger.addFilter(hush)
    try:
        yield
    finally:
        logger.removeFilter(hush)


def verbose() -> bool:
    return os.environ.get("RSDISTILL_VERBOSE", "").lower() in ("1", "true", "yes")


def onnxruntime_severity() -> int:
    """The ``log_severity_level`` of onnxruntime sessions: errors only (3), or warnings too (2,
    onnxruntime's default) when verbose."""
    return 2 if verbose() else 3


def quiet() -> None:
    """Install the filters (idempotent); nothing when ``RSDISTILL_VERBOSE`` is set."""
    if verbose():
        return
    for name in _NOISY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropKnownNoise) for f in logger.filters):
            logger.addFilter(_DropKnownNoise())
    for message in _WARNINGS:
        warnings.filterwarnings("ignore", message=message)

"""What the console shows: rsdistill's own lines, Lightning's progress and tables, and none of the
third-party noise a user cannot act on. One place, installed by the CLI; ``RSDISTILL_VERBOSE=1``
(or ``--verbose``) brings everything back.

Dropped (each known harmless, with why):
- Lightning's advertising tips ("💡 Tip: ... litlogger"), on every fit;
- "Loading `train_dataloader` to estimate number of stepping batches" (the warm-up schedule's step
  count; the fit that follows says nothing else);
- torch's ``isinstance(treespec, LeafSpec)`` deprecation raised inside Lightning's own code;
- jsonargparse's deprecations of arguments LightningCLI passes itself (``skip_none``,
  ``add_instantiator``, ``instantiate_classes``).
"""

from __future__ import annotations

import logging
import os
import warnings

_MESSAGES = ("💡 Tip:", "Loading `train_dataloader` to estimate number of stepping batches")
_WARNINGS = (r".*isinstance\(treespec, LeafSpec\)` is deprecated", r"(?s).*skip_none parameter was deprecated",
             r"(?s).*add_instantiator`` was deprecated", r"(?s).*instantiate_classes`` was deprecated")


class _DropKnownNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(_MESSAGES)


def verbose() -> bool:
    return os.environ.get("RSDISTILL_VERBOSE", "").lower() in ("1", "true", "yes")


def quiet() -> None:
    """Install the filters (idempotent); nothing when ``RSDISTILL_VERBOSE`` is set."""
    if verbose():
        return
    for name in ("lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropKnownNoise) for f in logger.filters):
            logger.addFilter(_DropKnownNoise())
    for message in _WARNINGS:
        warnings.filterwarnings("ignore", message=message)

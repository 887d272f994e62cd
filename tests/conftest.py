"""Shared fixtures. Real data is found through RSDISTILL_DATA (default: ../shared/data next to the repo).

Outside CI a test that needs missing real data is skipped; with CI=true it fails, so CI can never
pass by silently testing nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rsdistill.data.paths import data_root

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = data_root().resolve()  # the package's own rule ($RSDISTILL_DATA, else ../shared/data)


def _missing(what: str):
    message = f"real data not found: {what} (set RSDISTILL_DATA; default {REPO.parent / 'shared' / 'data'})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Root of the real data; each test names the files it needs through ``real_file``."""
    if not DATA_DIR.is_dir():
        _missing(str(DATA_DIR))
    return DATA_DIR


@pytest.fixture
def real_file(data_dir):
    def get(relative: str) -> Path:
        path = data_dir / relative
        if not path.exists():
            _missing(str(path))
        return path

    return get


MAX_WORKERS = 4  # each worker holds torch, Lightning and the models of its test files (a few GB at peak)


def _cores() -> int:
    """The cores this process may run on (a container's share, not the host's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto``: one worker per core, at most ``MAX_WORKERS`` (a many-core machine would
    otherwise start dozens of workers for a suite of about 45 files)."""
    return min(_cores(), MAX_WORKERS)


def pytest_configure(config):
    """Each pytest-xdist worker takes its share of the cores for torch's threads: two workers with
    every core each would oversubscribe the machine (in-process runs, ``-n 0``, keep torch's default)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers:
        import torch

        torch.set_num_threads(max(1, _cores() // workers))


def _repo_root_entries() -> set[str]:
    return {p.name for p in REPO.iterdir()}


_ENTRIES_AT_START = _repo_root_entries()


def pytest_sessionfinish(session, exitstatus):
    """Tests write under tmp_path only: anything new in the repository root (an encoder card a
    Trainer without a run folder put in the working directory, a lightning_logs folder) fails the run."""
    # dot-folders are tools' caches (.pytest_cache, pytest-benchmark's .benchmarks), not test output
    new = sorted(e for e in _repo_root_entries() - _ENTRIES_AT_START if not e.startswith(".") and e != "__pycache__")
    if new:
        print(f"\ntests left files in the repository root: {new}")
        session.exitstatus = 1

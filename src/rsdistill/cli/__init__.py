"""The ``rsdistill`` command line."""

from rsdistill.cli.main import main

__all__ = ["main"]

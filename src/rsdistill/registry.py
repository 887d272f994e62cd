"""One registry for everything a recipe or a checkpoint chooses by name: encoder architectures,
pixel-classifier and segmentation networks (``models.registry``), tasks (``tasks.loading``).

An entry is an object, or ``"module:attribute"`` imported on first use, so that a table can name
what it holds without importing all of it (a checkpoint loads only its own task's module). A
name nobody registered is one line listing those that are.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterator

from rsdistill.errors import InputError


class Registry:
    """Name -> object (a class or a function that builds one). ``what`` names the kind in errors."""

    def __init__(self, what: str, entries: dict[str, object] | None = None):
        self.what = what
        self._entries: dict[str, object] = {}
        for name, entry in (entries or {}).items():
            self.register(name, entry)

    def register(self, name: str, entry: object) -> object:
        """Add ``entry`` under ``name``; a name registered twice is a programming error."""
        if name in self._entries:
            raise ValueError(f"{self.what} {name!r} is registered twice")
        self._entries[name] = entry
        return entry

    def __getitem__(self, name: str) -> object:
        if name not in self._entries:
            raise InputError(f"unknown {self.what} {name!r}; registered: {', '.join(self._entries)}")
        entry = self._entries[name]
        if isinstance(entry, str):  # "module:attribute.attribute", imported now
            module, _, path = entry.partition(":")
            entry = importlib.import_module(module)
            for attribute in path.split("."):
                entry = getattr(entry, attribute)
            self._entries[name] = entry
        return entry

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def build(self, name: str, *args, options: dict | None = None, **kwargs):
        """``self[name](*args, **kwargs, **options)``, where ``options`` may hold more than the entry
        takes (a task's flat hyper-parameters): only the keywords its signature names are passed.
        An entry that refuses its arguments is one line naming it."""
        entry = self[name]
        signature = inspect.signature(entry)
        chosen = {k: v for k, v in (options or {}).items() if k in signature.parameters and k not in kwargs}
        try:  # bad arguments are the caller's; an error inside the constructor keeps its traceback
            signature.bind(*args, **kwargs, **chosen)
        except TypeError as error:
            raise InputError(f"{self.what} {name!r}: {error}") from None
        return entry(*args, **kwargs, **chosen)

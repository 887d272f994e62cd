"""The one exception type for problems a user can fix (bad files, bad arguments, bad configs).

The CLI prints an ``InputError`` as a single line and exits non-zero; anything else is a bug and
keeps its traceback.
"""


class InputError(ValueError):
    """Bad input: the message names the file, band, key or shape that was wrong and what was expected."""

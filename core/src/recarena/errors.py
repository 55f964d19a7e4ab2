"""User-facing errors.

Anything a user can cause (bad file, unknown name, misspelled key) raises a
:class:`RecArenaError`. The CLI prints its message as one paragraph and exits with
code 2, without a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class RecArenaError(Exception):
    """An error caused by the user's input; the message says what and where."""

    exit_code = 2


class UnknownNameError(RecArenaError, KeyError):
    """An unknown model / dataset / protocol / config key."""

    def __init__(self, kind: str, name: str, available: Iterable[str], where: str = ""):
        available = sorted(available)
        close = difflib.get_close_matches(name, available, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        loc = f" in {where}" if where else ""
        msg = (
            f"Unknown {kind} {name!r}{loc}.{hint} "
            f"Available: {', '.join(available) if available else '(none)'}."
        )
        super().__init__(msg)
        self.kind, self.name, self.available = kind, name, available

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


class NotFittedError(RecArenaError, RuntimeError):
    """A model was used before ``fit``."""


class DataFileError(RecArenaError):
    """A data file is missing or malformed."""

"""A frozen dataclass's hash kept once asked (issue 18): ``SecurityLabel`` and ``Assurance``.

Such a class declares ``hash_: int = field(default=-1, init=False, repr=False, compare=False)``
(``hash()`` never answers -1), a ``__hash__`` that answers ``hash_`` or else :func:`keep_hash` of
every compared field in order (the generated ``__hash__``'s value), and ``__getstate__`` /
``__setstate__`` from here: pickled or copied without the kept hash, since a string's hash differs
between processes.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

__all__ = ["keep_hash", "restore_without_hash", "state_without_hash"]


def keep_hash(obj: Any, values: tuple[object, ...]) -> int:
    """The hash of ``values``, kept on ``obj``."""
    found = hash(values)
    object.__setattr__(obj, "hash_", found)
    return found


def state_without_hash(obj: Any) -> list[object]:
    """Every field but the kept hash, in order."""
    return [getattr(obj, f.name) for f in fields(obj) if f.name != "hash_"]


def restore_without_hash(obj: Any, state: list[object]) -> None:
    """The fields :func:`state_without_hash` gave, and no hash kept yet."""
    names = [f.name for f in fields(obj) if f.name != "hash_"]
    for name, value in zip(names, state, strict=True):
        object.__setattr__(obj, name, value)
    object.__setattr__(obj, "hash_", -1)

"""The package's one `os.register_at_fork`: what must not cross a fork is told about it here.

A forked child (an RQ work horse, a gunicorn worker, `multiprocessing` with fork) inherits
its parent's memory, including connections, lock states and references to threads that
do not exist in the child. Objects holding such things register with `forget_after_fork`;
in the child each one's `after_fork()` runs before anything else, while the child is
still single-threaded.
"""

from __future__ import annotations

import os
import weakref
from typing import Any, TypeVar

T = TypeVar("T")

_registered: weakref.WeakSet[Any] = weakref.WeakSet()


def forget_after_fork(obj: T) -> T:
    """Call `obj.after_fork()` in every forked child while `obj` lives; returns `obj`."""
    _registered.add(obj)
    return obj


def _after_fork_in_child() -> None:
    for obj in list(_registered):
        obj.after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)

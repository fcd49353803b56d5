"""Per-app state of the extension, the objects derived from it, and how code below the routes reaches it.

`init_app` resolves an app's settings, keys, providers and tables into one `AppState`.
Everything the package derives from it per process (the shared-state store, the engines
request rows are written with, the row writer, the HTTP client, Redis connections) is
made on first use through `AppState.derived` and kept there, never in module globals.

Forks: every `AppState` is told when it finds itself in a forked child (see forks.py).
Each derived object then either adapts (an engine drops its pooled connections without
closing them; a store forgets its connections) or is dropped and made again on first
use: a child never uses its parent's connections, threads or locks.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Flask, current_app, has_app_context

from ..errors import ProviderNotRegistered
from .forks import forget_after_fork
from .memory_store import MemoryStore
from .redis_store import RedisStore
from .store import Store

if TYPE_CHECKING:  # pragma: no cover
    from .crypto import Keyring

T = TypeVar("T")
#: Called in a forked child with a derived object: True keeps it (adapted), False drops it.
AfterFork = Callable[[Any], bool]

_live: weakref.WeakSet[AppState] = weakref.WeakSet()


@dataclass(eq=False)
class AppState:
    """What `init_app` resolved for one app: settings, keys, providers, tables; and what derives from them."""

    app: Flask
    db: Any
    config: dict[str, Any]
    keyring: Keyring
    providers: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, Any] = field(default_factory=dict)
    #: the active `integrations.fake(...)`, if a test installed one
    fake: Any = None
    #: set in a forked child until a job has disposed of the app's inherited engines (queue.run_job)
    inherited_engines: bool = False
    _derived: dict[str, tuple[Any, AfterFork | None]] = field(default_factory=dict, repr=False)
    #: re-entrant: making one derived object may need another (the writer needs the log engine)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def __post_init__(self) -> None:
        _live.add(self)
        forget_after_fork(self)

    def __repr__(self) -> str:
        return f"<AppState app={self.app.name!r} providers={sorted(self.providers)}>"

    def provider(self, key: str) -> Any:
        """The registered `Provider` instance for `key`; `ProviderNotRegistered` otherwise."""
        try:
            return self.providers[key]
        except KeyError:
            raise ProviderNotRegistered(key) from None

    def setting(self, name: str) -> Any:
        """The resolved value of ``INTEGRATIONS_<name>``."""
        return self.config["INTEGRATIONS_" + name]

    # -- derived objects --------------------------------------------------------------------

    def derived(self, name: str, make: Callable[[], T], after_fork: AfterFork | None = None) -> T:
        """The object `name` of this app in this process, made by `make()` on first use.

        `after_fork(obj)` runs in a forked child and says whether to keep the object;
        without it the child makes a new one.
        """
        entry = self._derived.get(name)
        if entry is None:
            with self._lock:
                entry = self._derived.get(name)
                if entry is None:
                    entry = self._derived[name] = (make(), after_fork)
        return entry[0]

    def peek(self, name: str) -> Any:
        """The derived object `name` if it was made in this process, else None."""
        entry = self._derived.get(name)
        return None if entry is None else entry[0]

    @property
    def store(self) -> Store:
        """The shared-state store: Redis with `INTEGRATIONS_REDIS_URL`, process memory otherwise."""
        return self.derived(
            "store",
            lambda: create_store(self.setting("REDIS_URL"), self.setting("REDIS_PREFIX")),
            after_fork=lambda store: True,  # it forgets its connections itself (a `forget_after_fork` object)
        )

    def engine(self) -> Any:
        """The app's default engine, looked up once (Flask-SQLAlchemy's lookup costs a few µs a call)."""
        return self.derived("app_engine", lambda: self.db.engine, after_fork=keep_engine_after_fork)

    def dispose_engines(self) -> None:
        """Give the connections of the engines the package made for this app back to the server.

        The engines stay usable (they reconnect on demand); the app's own engine belongs to
        Flask-SQLAlchemy and is left to it.
        """
        for name, (obj, _) in list(self._derived.items()):
            if name != "app_engine" and callable(getattr(obj, "dispose", None)):
                obj.dispose()

    def after_fork(self) -> None:
        """In a forked child: keep or drop each derived object (see the module docstring)."""
        self._lock = threading.RLock()
        self.inherited_engines = True
        kept = {}
        for name, (obj, after_fork) in self._derived.items():
            if after_fork is not None and after_fork(obj):
                kept[name] = (obj, after_fork)
        self._derived = kept


def keep_engine_after_fork(engine: Any) -> bool:
    """A child keeps an engine but not its parent's pooled connections (left open: the parent's)."""
    engine.dispose(close=False)
    return True


def create_store(redis_url: str | None, prefix: str = "integrations:") -> Store:
    """A Redis store for a URL, else a memory store (the embedded mode)."""
    return RedisStore(redis_url, prefix) if redis_url else MemoryStore()


def live_states() -> list[AppState]:
    """Every AppState of this process."""
    return list(_live)


def current_state() -> AppState:
    """The state of the current app; a clear error outside an app context."""
    if not has_app_context():
        raise RuntimeError(
            "flask-integrations needs an application context: run this inside a request, "
            "a CLI command or `with app.app_context():`."
        )
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    extension = app.extensions.get("integrations")
    if extension is None:
        raise RuntimeError(
            f"flask-integrations is not initialised on app {app.name!r}: call Integrations(app)."
        )
    return extension.state_for(app)

"""Persistence behind a small interface (SQLite now; a shared engine can take over in cluster mode).

``AsyncStore`` is what the event loop uses: every call runs, in submission order, on one dedicated worker
thread, so disk I/O never stalls the loop and a later write never overtakes an earlier one.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from softswitch.cdr import CDR
from softswitch.store.sqlite import SCHEMA_VERSION, SqliteStore, StoreError

if TYPE_CHECKING:
    from softswitch.config import Config

__all__ = ["AsyncStore", "SCHEMA_VERSION", "SqliteStore", "Store", "StoreError", "open_store"]

log = logging.getLogger(__name__)
T = TypeVar("T")


class Store(Protocol):
    """Synchronous store interface; implementations are used from one thread at a time."""

    def save_cdr(self, cdr: CDR | Mapping[str, Any]) -> None: ...

    def save_cdrs(self, cdrs: Sequence[CDR | Mapping[str, Any]]) -> None: ...

    def list_cdrs(self, last: int | None = None) -> list[dict[str, Any]]: ...

    def save_registration(self, aor: str, contact: str, source: tuple[str, str, int], expires_at: float,
                          call_id: str, cseq: int, user_agent: str = "") -> None: ...

    def delete_registration(self, aor: str, contact: str | None = None) -> int: ...

    def load_registrations(self, now: float | None = None) -> list[dict[str, Any]]: ...

    def close(self) -> None: ...


def open_store(config: Config) -> SqliteStore:
    """The store configured by ``[store]`` (path resolved against the config file)."""
    return SqliteStore(config.store_path())


class AsyncStore:
    """Async facade over a ``Store``: calls are queued immediately (so order is call order) and return an
    awaitable. Awaiting is optional for writes: failures are logged on the worker either way.

    CDRs are group-committed: those handed over within ``cdr_batch_s`` (or ``cdr_batch_max`` of them) go to
    the worker as one transaction. Per-CDR hand-offs and commits cost more CPU than the call itself at a
    few hundred calls/s; the window bounds what a crash can lose, and ``flush``/``close`` write it all."""

    def __init__(self, store: Store, cdr_batch_s: float = 0.05, cdr_batch_max: int = 200) -> None:
        self.store = store
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._closed = False
        self.cdr_batch_s = cdr_batch_s
        self.cdr_batch_max = cdr_batch_max
        self._cdrs: list[CDR | dict[str, Any]] = []
        self._cdrs_done: asyncio.Future[None] | None = None
        self._cdr_timer: asyncio.TimerHandle | None = None

    def _submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> asyncio.Future[T]:
        if self._closed:
            raise RuntimeError("AsyncStore is closed")
        fut = asyncio.wrap_future(self._pool.submit(_logged, functools.partial(fn, *args, **kwargs)))
        fut.add_done_callback(_consume)
        return fut

    def save_cdr(self, cdr: CDR | Mapping[str, Any]) -> asyncio.Future[None]:
        """Queue a CDR for the next group commit. A CDR object is handed over: don't change it afterwards."""
        if self._closed:
            raise RuntimeError("AsyncStore is closed")
        loop = asyncio.get_running_loop()
        if self._cdrs_done is None:
            self._cdrs_done = loop.create_future()
            self._cdr_timer = loop.call_later(self.cdr_batch_s, self._write_cdrs)
        self._cdrs.append(cdr if isinstance(cdr, CDR) else dict(cdr))
        done = self._cdrs_done
        if len(self._cdrs) >= self.cdr_batch_max:
            self._write_cdrs()
        return done

    def _write_cdrs(self) -> None:
        """Hand the pending batch to the worker; its waiters learn the outcome of that one transaction."""
        if self._cdr_timer is not None:
            self._cdr_timer.cancel()
        batch, done = self._cdrs, self._cdrs_done
        self._cdrs, self._cdrs_done, self._cdr_timer = [], None, None
        if done is None:
            return
        written = self._submit(self.store.save_cdrs, batch)
        written.add_done_callback(lambda f: done.set_exception(f.exception()) if f.exception()
                                  else done.set_result(None))
        done.add_done_callback(_consume)

    def list_cdrs(self, last: int | None = None) -> asyncio.Future[list[dict[str, Any]]]:
        return self._submit(self.store.list_cdrs, last)

    def save_registration(self, aor: str, contact: str, source: tuple[str, str, int], expires_at: float,
                          call_id: str, cseq: int, user_agent: str = "") -> asyncio.Future[None]:
        return self._submit(self.store.save_registration, aor, contact, tuple(source), expires_at, call_id,
                            cseq, user_agent)

    def delete_registration(self, aor: str, contact: str | None = None) -> asyncio.Future[int]:
        return self._submit(self.store.delete_registration, aor, contact)

    def load_registrations(self, now: float | None = None) -> asyncio.Future[list[dict[str, Any]]]:
        return self._submit(self.store.load_registrations, now)

    async def flush(self) -> None:
        """Wait until everything submitted so far has been written."""
        self._write_cdrs()
        await self._submit(lambda: None)

    async def close(self) -> None:
        """Finish pending writes, close the store and stop the worker (idempotent)."""
        if self._closed:
            return
        self._write_cdrs()
        done = self._submit(self.store.close)
        self._closed = True
        try:
            await done
        finally:
            self._pool.shutdown(wait=False)


def _logged(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except Exception:
        log.exception("store operation %s failed", getattr(fn, "func", fn).__qualname__)
        raise


def _consume(fut: asyncio.Future[Any]) -> None:
    """Mark the exception as retrieved: it was already logged on the worker."""
    if not fut.cancelled():
        fut.exception()

"""Persistence behind a small interface (SQLite now; a shared engine can take over in cluster mode).

``AsyncStore`` is what the event loop uses: every call runs, in submission order, on one dedicated worker
thread, so disk I/O never stalls the loop and a later write never overtakes an earlier one.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping
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
    awaitable. Awaiting is optional for writes: failures are logged on the worker either way."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")
        self._closed = False

    def _submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> asyncio.Future[T]:
        if self._closed:
            raise RuntimeError("AsyncStore is closed")
        fut = asyncio.wrap_future(self._pool.submit(_logged, functools.partial(fn, *args, **kwargs)))
        fut.add_done_callback(_consume)
        return fut

    def save_cdr(self, cdr: CDR | Mapping[str, Any]) -> asyncio.Future[None]:
        # Snapshot now: the caller may keep mutating the CDR object after handing it over.
        return self._submit(self.store.save_cdr, cdr.to_json_dict() if isinstance(cdr, CDR) else dict(cdr))

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
        await self._submit(lambda: None)

    async def close(self) -> None:
        """Finish pending writes, close the store and stop the worker (idempotent)."""
        if self._closed:
            return
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

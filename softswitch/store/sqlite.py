"""SQLite store for CDRs and registrations (the embedded default).

WAL mode with ``synchronous=NORMAL``: every write is its own committed transaction, so a crash loses at most
the transaction in flight and never corrupts the file. The connection is used by one thread at a time
(``AsyncStore`` gives it a dedicated worker thread).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from softswitch.cdr import CDR

# Index i upgrades a database from user_version i to i + 1.
_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE cdrs (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            call_id TEXT NOT NULL UNIQUE,
            sip_call_id TEXT NOT NULL,
            start REAL NOT NULL,
            end_ts REAL,
            direction TEXT NOT NULL,
            disposition TEXT NOT NULL,
            from_user TEXT NOT NULL,
            to_user TEXT NOT NULL,
            trunk TEXT,
            data TEXT NOT NULL)""",
        "CREATE INDEX cdrs_start ON cdrs(start)",
        "CREATE INDEX cdrs_sip_call_id ON cdrs(sip_call_id)",
        """CREATE TABLE registrations (
            aor TEXT NOT NULL,
            contact TEXT NOT NULL,
            transport TEXT NOT NULL,
            host TEXT NOT NULL,
            port INTEGER NOT NULL,
            expires_at REAL NOT NULL,
            call_id TEXT NOT NULL,
            cseq INTEGER NOT NULL,
            user_agent TEXT NOT NULL,
            PRIMARY KEY (aor, contact)) WITHOUT ROWID""",
        "CREATE INDEX registrations_expires ON registrations(expires_at)",
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)


class StoreError(Exception):
    """The database cannot be used (e.g. written by a newer version)."""


class SqliteStore:
    """CDRs and registrations in one SQLite file; parent directories are created."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves so schema changes are transactional too.
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._migrate()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _migrate(self) -> None:
        with self._tx() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(f"{self.path}: schema version {version} is newer than supported "
                                 f"({SCHEMA_VERSION}); upgrade softswitch")
            for steps in _MIGRATIONS[version:]:
                for sql in steps:
                    db.execute(sql)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # -- CDRs
    def save_cdr(self, cdr: CDR | Mapping[str, Any]) -> None:
        """Insert (or replace, same call_id) one CDR atomically. Accepts a CDR or its ``to_json_dict()``."""
        self.save_cdrs([cdr])

    def save_cdrs(self, cdrs: Sequence[CDR | Mapping[str, Any]]) -> None:
        """Several CDRs in one transaction (group commit under load). A malformed record does not cost the
        others their place: the good ones are written, then the first problem is raised."""
        rows, problem = [], None
        for cdr in cdrs:
            try:
                d = cdr.to_json_dict() if isinstance(cdr, CDR) else dict(cdr)
                rows.append((d["call_id"], d["sip_call_id"], d["start_ts"], d["end_ts"], d["direction"],
                             d["disposition"], d["from"], d["to"], d["trunk"], json.dumps(d, separators=(",", ":"))))
            except (KeyError, TypeError, ValueError) as exc:
                problem = problem or exc
        with self._tx() as db:
            db.executemany(
                """INSERT INTO cdrs (call_id, sip_call_id, start, end_ts, direction, disposition, from_user,
                       to_user, trunk, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                   ON CONFLICT(call_id) DO UPDATE SET sip_call_id=excluded.sip_call_id, start=excluded.start,
                       end_ts=excluded.end_ts, direction=excluded.direction, disposition=excluded.disposition,
                       from_user=excluded.from_user, to_user=excluded.to_user, trunk=excluded.trunk,
                       data=excluded.data""", rows)
        if problem is not None:
            raise problem

    def list_cdrs(self, last: int | None = None) -> list[dict[str, Any]]:
        """CDR JSON dicts in the order they were written (oldest first); ``last`` keeps the newest N."""
        if last is not None and last < 0:
            raise ValueError("last must be >= 0")
        rows = self._db.execute(
            "SELECT data FROM (SELECT id, data FROM cdrs ORDER BY id DESC LIMIT ?) ORDER BY id",
            (-1 if last is None else last,)).fetchall()
        return [json.loads(data) for (data,) in rows]

    # -- registrations
    def save_registration(self, aor: str, contact: str, source: tuple[str, str, int], expires_at: float,
                          call_id: str, cseq: int, user_agent: str = "") -> None:
        """Insert or refresh one binding (key: aor + contact); ``source`` is (transport, host, port)."""
        transport, host, port = source
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO registrations VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (aor, contact, transport, host, int(port), expires_at, call_id, cseq, user_agent))

    def delete_registration(self, aor: str, contact: str | None = None) -> int:
        """Remove one binding, or every binding of ``aor`` when contact is None; returns how many."""
        with self._tx() as db:
            if contact is None:
                return db.execute("DELETE FROM registrations WHERE aor = ?", (aor,)).rowcount
            return db.execute("DELETE FROM registrations WHERE aor = ? AND contact = ?", (aor, contact)).rowcount

    def load_registrations(self, now: float | None = None) -> list[dict[str, Any]]:
        """Live bindings (expired ones are deleted), as dicts with ``save_registration``'s arguments."""
        now = time.time() if now is None else now
        with self._tx() as db:
            db.execute("DELETE FROM registrations WHERE expires_at <= ?", (now,))
            rows = db.execute(
                """SELECT aor, contact, transport, host, port, expires_at, call_id, cseq, user_agent
                   FROM registrations ORDER BY aor, contact""").fetchall()
        return [{"aor": aor, "contact": contact, "source": (transport, host, port), "expires_at": expires_at,
                 "call_id": call_id, "cseq": cseq, "user_agent": user_agent}
                for aor, contact, transport, host, port, expires_at, call_id, cseq, user_agent in rows]

    def close(self) -> None:
        self._db.close()

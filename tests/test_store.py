import asyncio
import sqlite3

import pytest

from softswitch.cdr import CDR, CDR_COLUMNS, disposition_for, iso_utc, q850_for_status
from softswitch.config import parse_config
from softswitch.store import SCHEMA_VERSION, AsyncStore, SqliteStore, StoreError, open_store


def make_cdr(n: int, **kw) -> CDR:
    cdr = CDR(call_id=f"call-{n}", sip_call_id=f"sip-{n}@host", from_="1001", from_uri="sip:1001@127.0.0.1",
              to="1002", to_uri="sip:1002@127.0.0.1", direction="internal", source="user:1001",
              destination="user", start=1_700_000_000.0 + n, answer=1_700_000_001.5 + n,
              legs=[{"role": "a", "sip_call_id": f"sip-{n}@host", "codec": "PCMU", "rtp_in": 10}], **kw)
    return cdr.finish(1_700_000_011.5 + n, 200, hangup_by="caller")


@pytest.fixture
def store(tmp_path):
    s = SqliteStore(tmp_path / "sub" / "dir" / "s.db")
    yield s
    s.close()


def test_cdr_json_dict():
    d = make_cdr(0).to_json_dict()
    assert tuple(d) == CDR_COLUMNS
    assert d["from"] == "1001" and "from_" not in d
    assert d["start"] == "2023-11-14T22:13:20.000Z" and d["start_ts"] == 1_700_000_000.0
    assert d["answer"] == "2023-11-14T22:13:21.500Z" and d["end_ts"] == 1_700_000_011.5
    assert (d["duration"], d["billsec"], d["disposition"], d["q850_cause"]) == (11.5, 10.0, "ANSWERED", 16)
    assert CDR.from_json_dict(d) == make_cdr(0)
    assert iso_utc(None) is None


def test_disposition_and_q850():
    assert disposition_for(200, False) == "ANSWERED"
    assert disposition_for(486, False) == disposition_for(600, False) == "BUSY"
    assert disposition_for(487, True) == "CANCELLED"
    assert disposition_for(487, False) == disposition_for(408, False) == disposition_for(480, False) == "NO ANSWER"
    assert disposition_for(503, False) == disposition_for(0, False) == "FAILED"
    assert {s: q850_for_status(s) for s in (200, 404, 486, 480, 408, 487, 503, 603, 484, 488)} == {
        200: 16, 404: 1, 486: 17, 480: 18, 408: 102, 487: 16, 503: 41, 603: 21, 484: 28, 488: 65}
    assert q850_for_status(499) == 31 and q850_for_status(599) == 41
    unanswered = CDR(start=10.0).finish(12.0, 486)
    assert (unanswered.billsec, unanswered.duration, unanswered.disposition) == (0.0, 2.0, "BUSY")


def test_cdr_round_trip_and_last(store):
    assert store.list_cdrs() == []
    cdrs = [make_cdr(i) for i in range(5)]
    for cdr in cdrs:
        store.save_cdr(cdr)
    assert store.list_cdrs() == [c.to_json_dict() for c in cdrs]
    assert [d["call_id"] for d in store.list_cdrs(last=2)] == ["call-3", "call-4"]
    assert store.list_cdrs(last=0) == []
    store.save_cdr(make_cdr(1, extra={"note": "rewritten"}))  # same call_id: replaced in place
    assert [d["call_id"] for d in store.list_cdrs()] == [f"call-{i}" for i in range(5)]
    assert store.list_cdrs()[1]["extra"] == {"note": "rewritten"}


def test_pragmas_and_schema_version(tmp_path):
    path = tmp_path / "s.db"
    SqliteStore(path).close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StoreError, match="newer"):
        SqliteStore(path)


def test_registrations(store):
    store.save_registration("1001", "sip:1001@10.0.0.1:5062", ("udp", "10.0.0.1", 5062), 100.0, "c1", 1, "ua/1")
    store.save_registration("1001", "sip:1001@10.0.0.2:5062", ("tcp", "10.0.0.2", 5062), 200.0, "c2", 5)
    store.save_registration("1002", "sip:1002@10.0.0.3", ("udp", "10.0.0.3", 5060), 300.0, "c3", 1)
    store.save_registration("1001", "sip:1001@10.0.0.1:5062", ("udp", "10.0.0.1", 5062), 150.0, "c1", 2, "ua/1")
    regs = store.load_registrations(now=50.0)
    assert regs[0] == {"aor": "1001", "contact": "sip:1001@10.0.0.1:5062", "source": ("udp", "10.0.0.1", 5062),
                       "expires_at": 150.0, "call_id": "c1", "cseq": 2, "user_agent": "ua/1"}
    assert len(regs) == 3
    assert [r["call_id"] for r in store.load_registrations(now=160.0)] == ["c2", "c3"]
    assert [r["call_id"] for r in store.load_registrations(now=0.0)] == ["c2", "c3"]  # expired ones are gone
    assert store.delete_registration("1001", "sip:1001@10.0.0.2:5062") == 1
    assert store.delete_registration("1002") == 1
    assert store.load_registrations(now=0.0) == []
    store.save_registration(**regs[2])  # load -> save round trip
    assert store.load_registrations(now=0.0) == [regs[2]]


def test_reopen_keeps_data(tmp_path):
    path = tmp_path / "s.db"
    s = SqliteStore(path)
    s.save_cdr(make_cdr(1))
    s.save_registration("1001", "sip:x", ("udp", "127.0.0.1", 5060), 1e12, "c", 1)
    s.close()
    s = SqliteStore(path)
    assert [d["call_id"] for d in s.list_cdrs()] == ["call-1"]
    assert len(s.load_registrations()) == 1
    s.close()


def test_open_store_uses_config_path(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[store]\npath = "db/x.db"\n')
    from softswitch.config import load_config
    s = open_store(load_config(cfg))
    assert s.path == tmp_path / "db/x.db" and s.path.exists()
    s.close()
    assert parse_config("").store.path == "data/softswitch.db"


def test_async_store_keeps_order_and_flushes(tmp_path):
    async def scenario():
        astore = AsyncStore(SqliteStore(tmp_path / "a.db"))
        pending = astore.save_cdr(make_cdr(0))
        for i in range(1, 20):
            astore.save_cdr(make_cdr(i))  # fire and forget: one group commit
        astore.save_registration("1001", "sip:x", ("udp", "h", 1), 1e12, "c", 1)
        await astore.flush()
        assert pending.done()
        rows = await astore.list_cdrs()
        assert [r["call_id"] for r in rows] == [f"call-{i}" for i in range(20)]
        assert len(await astore.load_registrations()) == 1
        assert await astore.delete_registration("1001") == 1
        failing = astore.save_cdr({"call_id": "broken"})  # missing keys: fails on the worker, logged
        astore.save_cdr(make_cdr(50))  # same batch: still written
        with pytest.raises(KeyError):
            await failing
        assert (await astore.list_cdrs(last=1))[0]["call_id"] == "call-50"
        astore.save_cdr(make_cdr(99))
        await astore.close()
        await astore.close()
        with pytest.raises(RuntimeError):
            astore.save_cdr(make_cdr(100))

    asyncio.run(scenario())
    s = SqliteStore(tmp_path / "a.db")
    assert s.list_cdrs(last=1)[0]["call_id"] == "call-99"  # written before close returned
    s.close()

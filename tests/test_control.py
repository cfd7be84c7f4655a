"""Control socket (softswitch/control.py) and the `softswitch queue` / `softswitch agent` commands using it.

A real ControlServer runs in a background event loop with a small fake switch as its handler; the CLI runs as
a subprocess against it, the way an operator uses it."""

import asyncio
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from softswitch.cli import AGENT_COLUMNS, QUEUE_COLUMNS, format_table
from softswitch.control import MAX_REQUEST_BYTES, ControlError, ControlServer, request

ROOT = Path(__file__).resolve().parent.parent

QUEUE_ROW = {"name": "support", "strategy": "longest-idle-agent", "waiting": 2, "offered": 10, "answered": 7,
             "abandoned": 1, "timed_out": 0, "overflowed": 0, "left_empty": 0, "service_level_pct": 87.5,
             "asa_s": 12.25, "aht_s": 180.0, "longest_wait_s": 41.0, "staffed": 3, "available": 1}
AGENT_ROWS = [
    {"name": "1001", "state": "on_call", "pause_reason": "", "queues": ["support", "sales"], "calls": 4,
     "talk_time_s": 600.5, "wrap_up_time_s": 20.0, "idle_s": 0.0, "no_answers": 0},
    {"name": "1002", "state": "paused", "pause_reason": "lunch", "queues": ["support"], "calls": 12,
     "talk_time_s": 1500.0, "wrap_up_time_s": 90.0, "idle_s": 300.0, "no_answers": 2},
]


class FakeSwitch:
    """What the real switch's dispatcher does, in miniature; records every request."""

    def __init__(self) -> None:
        self.queues = {"support": dict(QUEUE_ROW), "sales": dict(QUEUE_ROW, name="sales", strategy="ring-all")}
        self.requests: list[dict] = []

    def handle(self, req: dict):
        self.requests.append(req)
        cmd = req["cmd"]
        if cmd.startswith("agent.") and cmd != "agent.list":
            return self._agent(req)         # a coroutine: the server awaits it
        if cmd == "queue.status":
            name = req.get("name")
            if name is not None and name not in self.queues:
                raise KeyError(f"unknown queue {name!r}")
            return [q for n, q in self.queues.items() if name in (None, n)]
        if cmd == "queue.set":
            queue = self.queues[req["name"]]
            for key, value in req["changes"].items():
                if key not in ("strategy", "max_wait_s", "join_empty", "moh"):
                    raise ValueError(f"{key}: not a queue setting")
            queue.update({k: v for k, v in req["changes"].items() if k in queue})
            return queue
        if cmd in ("queue.add_member", "queue.remove_member", "sleep"):
            if cmd == "sleep":
                import time
                time.sleep(1.0)
            return None
        if cmd == "agent.list":
            return AGENT_ROWS
        if cmd == "crash":
            raise RuntimeError("internal detail the user need not see")
        if cmd == "unserialisable":
            return {"x": object()}
        raise ValueError(f"unknown command {cmd!r}")

    async def _agent(self, req: dict):
        await asyncio.sleep(0)
        if req["name"] != "1001":
            raise KeyError(f"unknown agent {req['name']!r}")
        return {"name": "1001", "state": req["cmd"].removeprefix("agent.")}


class Loop:
    """An asyncio loop in a thread, for servers the blocking client and subprocesses talk to."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 5.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def loop():
    lp = Loop()
    yield lp
    lp.stop()


@pytest.fixture
def short_dir():
    """A short directory: Unix socket paths are limited to about 107 bytes."""
    d = Path(tempfile.mkdtemp(prefix="ctl"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def switch(loop, short_dir):
    """A running control server with a fake switch behind it; ``switch.config`` names its socket."""
    fake = FakeSwitch()
    server = ControlServer(short_dir / "run" / "ctl.sock", fake.handle)
    loop.run(server.start())
    fake.server, fake.config = server, short_dir / "s.toml"
    fake.config.write_text('[control]\nsocket = "run/ctl.sock"\n')
    yield fake
    loop.run(server.close())
    assert not server.path.exists()


def cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-m", "softswitch", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env=env)


def test_queue_status_json(switch):
    r = cli("queue", "status", "--config", str(switch.config), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == list(switch.queues.values())
    r = cli("queue", "status", "sales", "--config", str(switch.config), "--json")
    assert [q["name"] for q in json.loads(r.stdout)] == ["sales"]
    assert switch.requests[-2:] == [{"cmd": "queue.status"}, {"cmd": "queue.status", "name": "sales"}]


def test_queue_status_table(switch):
    r = cli("queue", "status", "-c", str(switch.config))
    assert r.returncode == 0, r.stderr
    header, support, sales = r.stdout.splitlines()
    assert header.startswith("queue    strategy  ") and "timed out" in header and header.endswith("available")
    assert support.split() == ["support", "longest-idle-agent", "2", "10", "7", "1", "0", "0", "87.5", "12.2",
                               "180.0", "41.0", "3", "1"]
    assert sales.split()[:2] == ["sales", "ring-all"]
    # numbers are right-aligned under their header
    assert support.index("87.5") + 4 == header.index("SL %") + 4 == sales.index("87.5") + 4


def test_format_table_alignment_and_cells():
    out = format_table(AGENT_ROWS, AGENT_COLUMNS).splitlines()
    assert out[0].split() == ["agent", "state", "reason", "queues", "calls", "talk", "s", "wrap-up", "s", "idle",
                              "s", "no-answers"]
    assert out[1].split() == ["1001", "on_call", "-", "support,sales", "4", "600.5", "20.0", "0.0", "0"]
    assert out[2].split() == ["1002", "paused", "lunch", "support", "12", "1500.0", "90.0", "300.0", "2"]
    assert out[1].index("on_call") == out[2].index("paused")              # text left-aligned
    assert out[1].index("600.5") + 5 == out[2].index("1500.0") + 6        # numbers right-aligned
    assert format_table([], QUEUE_COLUMNS).startswith("queue  strategy  waiting")


def test_queue_set_parses_values_and_prints_the_row(switch):
    r = cli("queue", "set", "support", "strategy=ring-all", "max_wait_s=60", "join_empty=false", "moh=jazz.wav",
            "--config", str(switch.config))
    assert r.returncode == 0, r.stderr
    assert switch.requests[0] == {"cmd": "queue.set", "name": "support", "changes": {
        "strategy": "ring-all", "max_wait_s": 60, "join_empty": False, "moh": "jazz.wav"}}
    assert r.stdout.splitlines()[0].startswith("queue") and r.stdout.splitlines()[1].split()[:2] == [
        "support", "ring-all"]
    r = cli("queue", "set", "support", "colour=red", "--config", str(switch.config))
    assert (r.returncode, r.stdout, r.stderr) == (1, "", "softswitch: colour: not a queue setting\n")
    r = cli("queue", "set", "support", "strategy", "--config", str(switch.config))
    assert r.returncode == 1 and "expected KEY=VALUE" in r.stderr


def test_members(switch):
    r = cli("queue", "add-member", "support", "1003", "--level", "2", "--config", str(switch.config))
    assert (r.returncode, r.stdout) == (0, "queue support: agent 1003 added at level 2\n"), r.stderr
    r = cli("queue", "remove-member", "support", "1003", "--config", str(switch.config))
    assert (r.returncode, r.stdout) == (0, "queue support: agent 1003 removed\n"), r.stderr
    assert switch.requests == [{"cmd": "queue.add_member", "name": "support", "agent": "1003", "level": 2},
                               {"cmd": "queue.remove_member", "name": "support", "agent": "1003"}]


def test_agents(switch):
    r = cli("agent", "list", "--json", "--config", str(switch.config))
    assert r.returncode == 0 and json.loads(r.stdout) == AGENT_ROWS, r.stderr
    r = cli("agent", "list", "--config", str(switch.config))
    assert r.returncode == 0 and r.stdout.splitlines()[0].startswith("agent") and len(r.stdout.splitlines()) == 3
    for args, out in ((["login"], "agent 1001: logged in\n"), (["pause", "--reason", "lunch"],
                      "agent 1001: paused (lunch)\n"), (["unpause"], "agent 1001: unpaused\n"),
                      (["logout"], "agent 1001: logged out\n")):
        r = cli("agent", args[0], "1001", *args[1:], "--config", str(switch.config))
        assert (r.returncode, r.stdout) == (0, out), r.stderr
    assert switch.requests[2:] == [{"cmd": "agent.login", "name": "1001"},
                                   {"cmd": "agent.pause", "name": "1001", "reason": "lunch"},
                                   {"cmd": "agent.unpause", "name": "1001"}, {"cmd": "agent.logout", "name": "1001"}]
    r = cli("agent", "login", "nobody", "--config", str(switch.config))
    assert (r.returncode, r.stdout, r.stderr) == (1, "", "softswitch: unknown agent 'nobody'\n")


def test_no_running_switch(tmp_path, short_dir):
    cfg = tmp_path / "s.toml"
    cfg.write_text('[control]\nsocket = "nothing.sock"\n')
    for args in (["queue", "status"], ["agent", "list", "--json"], ["agent", "pause", "1001"]):
        r = cli(*args, "--config", str(cfg))
        assert (r.returncode, r.stdout) == (1, ""), r.stderr
        assert r.stderr == f"softswitch: no running switch at {tmp_path / 'nothing.sock'} " \
                           f"(start it with `softswitch run`)\n"
    with socket.socket(socket.AF_UNIX) as s:   # a socket file nobody listens on
        s.bind(str(short_dir / "dead.sock"))
    with pytest.raises(ControlError, match="^no running switch at .*dead.sock"):
        request(short_dir / "dead.sock", "queue.status")
    cfg.write_text('[control]\nsocket = ""\n')
    r = cli("queue", "status", "--config", str(cfg))
    assert r.returncode == 1 and "control socket off" in r.stderr
    cfg.write_text('[control]\nsockt = ""\n')
    r = cli("queue", "status", "--config", str(cfg))
    assert r.returncode == 2 and "control.sockt: unknown key" in r.stderr


def _raw(path: Path, data: bytes) -> list[dict]:
    """Send raw bytes on one connection; the answers until the server closes or goes quiet."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(2)
        s.connect(str(path))
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        buf = b""
        while chunk := s.recv(65536):
            buf += chunk
    return [json.loads(line) for line in buf.splitlines()]


def test_malformed_requests_keep_the_connection(switch):
    answers = _raw(switch.server.path, b'not json\n[1, 2]\n{"name": "x"}\n\n\xff\n{"cmd": "queue.status", '
                                       b'"name": "sales"}\n')
    assert [a["ok"] for a in answers] == [False, False, False, False, True]
    assert answers[0]["error"].startswith("malformed request (not JSON")
    assert answers[1]["error"] == answers[2]["error"] == \
        'malformed request: expected a JSON object with a "cmd" string'
    assert answers[4]["result"][0]["name"] == "sales"


def test_oversized_request_is_refused(switch):
    answers = _raw(switch.server.path, b'{"cmd": "' + b"x" * (MAX_REQUEST_BYTES + 10) + b'"}\n')
    assert answers == [{"ok": False, "error": f"request longer than {MAX_REQUEST_BYTES} bytes"}]
    assert request(switch.server.path, "queue.status", name="sales")[0]["name"] == "sales"   # still serving


def test_handler_exceptions_become_error_answers(switch, caplog):
    path = switch.server.path
    with caplog.at_level(logging.ERROR, logger="softswitch.control"):
        with pytest.raises(ControlError) as exc:
            request(path, "crash")
    assert str(exc.value) == "internal error handling 'crash' (see the switch's log)"
    assert "internal detail" in caplog.text and "Traceback" in caplog.text
    with pytest.raises(ControlError, match="^unknown command 'nope'$"):
        request(path, "nope")
    with pytest.raises(ControlError, match="^unknown queue 'x'$"):       # KeyError: its message, unquoted
        request(path, "queue.status", name="x")
    with pytest.raises(ControlError, match="internal error handling 'unserialisable'"):
        request(path, "unserialisable")
    assert request(path, "agent.login", name="1001") == {"name": "1001", "state": "login"}  # async handler
    with pytest.raises(ControlError, match="did not answer within 0.2 s"):
        request(path, "sleep", timeout=0.2)


def test_stale_socket_is_replaced_and_a_live_one_refused(loop, short_dir):
    path = short_dir / "ctl.sock"
    with socket.socket(socket.AF_UNIX) as s:   # what a killed switch leaves behind
        s.bind(str(path))
    assert path.is_socket()
    first = ControlServer(path, lambda req: "first")
    loop.run(first.start())
    assert request(path, "x") == "first"
    second = ControlServer(path, lambda req: "second")
    with pytest.raises(OSError, match=f"another switch is running on {path}"):
        loop.run(second.start())
    assert request(path, "x") == "first"      # the running one is untouched
    loop.run(first.close())
    assert not path.exists()
    loop.run(first.close())                   # twice is harmless
    path.write_text("not a socket")
    with pytest.raises(OSError, match="exists and is not a socket"):
        loop.run(second.start())
    assert path.read_text() == "not a socket"


def test_start_creates_the_directory_and_close_drops_clients(loop, short_dir):
    path = short_dir / "a" / "b" / "ctl.sock"
    server = ControlServer(path, lambda req: req)
    loop.run(server.start())
    assert request(path, "echo", name="x", none=None) == {"cmd": "echo", "name": "x"}
    with socket.socket(socket.AF_UNIX) as s:  # an idle client does not keep the server from closing
        s.settimeout(2)
        s.connect(str(path))
        s.sendall(b'{"cmd": "hello"}\n')
        assert json.loads(s.recv(1000)) == {"ok": True, "result": {"cmd": "hello"}}
        loop.run(server.close())
        assert s.recv(10) == b""
    assert not path.exists()


def test_a_socket_path_longer_than_sun_path_works(tmp_path):
    """Deep work directories: the path does not fit in a sockaddr_un (107 bytes) and still works."""
    import asyncio
    import threading

    from softswitch.control import ControlServer, request
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    path = deep / "softswitch.sock"
    assert len(str(path)) > 107
    loop = asyncio.new_event_loop()
    server = ControlServer(path, lambda req: {"echo": req["cmd"]})
    loop.run_until_complete(server.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        assert path.is_socket()
        assert request(path, "ping") == {"echo": "ping"}
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
    assert not path.exists()

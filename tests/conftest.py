"""Fixtures that start the real softswitch as a process (the way users run it) and read its CDRs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from peers.netutil import PortAllocator, free_udp_port, udp_port_bound, wait_udp_sip
from peers.sipp import Sipp

REPO = Path(__file__).resolve().parent.parent


class SwitchProcess:
    """`softswitch run --config FILE` in a subprocess, with its log kept for failure messages."""

    def __init__(self, workdir: Path, config_text: str, sip_port: int = 5060, name: str = "switch") -> None:
        self.workdir = workdir
        self.config = workdir / f"{name}.toml"
        self.config.write_text(config_text)
        self.log_path = workdir / f"{name}.log"
        self.sip_port = sip_port
        self.proc: subprocess.Popen | None = None

    def start(self) -> "SwitchProcess":
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        started = self._ups()  # a restart appends to the same log: wait for a *new* "softswitch up"
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "softswitch", "run", "--config", str(self.config)],
                                     cwd=self.workdir, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 15.0
        while self._ups() == started:  # listening, bindings restored, trunks registering
            if not self.alive() or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"softswitch did not come up on :{self.sip_port}\n{self.log_tail()}")
            time.sleep(0.05)
        try:
            wait_udp_sip("127.0.0.1", self.sip_port, 5.0)
        except TimeoutError:
            self.stop()
            raise AssertionError(f"softswitch does not answer OPTIONS on :{self.sip_port}\n{self.log_tail()}")
        return self

    def _ups(self) -> int:
        try:
            return self.log_path.read_text(errors="replace").count("softswitch up")
        except FileNotFoundError:
            return 0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def evidence(self) -> str:
        return f"--- switch log {self.log_path} (tail) ---\n{self.log_tail(50)}"

    def cdrs(self) -> list[dict]:
        out = subprocess.run([sys.executable, "-m", "softswitch", "cdr", "--config", str(self.config),
                              "--format", "json"], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def wait_cdrs(self, count: int, timeout: float = 15.0) -> list[dict]:
        """CDRs are written off the event loop: poll until `count` are there."""
        deadline = time.monotonic() + timeout
        cdrs = self.cdrs()
        while len(cdrs) < count and time.monotonic() < deadline:
            time.sleep(0.2)
            cdrs = self.cdrs()
        return cdrs


def sipp_uac(workdir: Path, scenario: str = "uac", switch: str = "127.0.0.1:5060", **kw) -> Sipp:
    """A SIPp caller towards the switch (by default dialling 9123: out through the loopback trunk)."""
    kw.setdefault("local_port", free_udp_port())
    kw.setdefault("service", "9123")
    return Sipp(workdir, scenario, remote=switch, **kw)


def sipp_uas(workdir: Path, scenario: str = "uas", port: int = 5090, **kw) -> Sipp:
    """A SIPp callee, by default where the loopback trunk's gateway points (a fixed port: give the
    previous test's callee a moment to let go of it)."""
    deadline = time.monotonic() + 3.0
    while udp_port_bound(port) and time.monotonic() < deadline:
        time.sleep(0.05)
    return Sipp(workdir, scenario, local_port=port, **kw)


def switch_config(sip_port: int = 5060, trunk_gateways: list[tuple[str, int, str]] | None = None,
                  extra: str = "", rtp: tuple[int, int] = (30000, 39998), ring_timeout: float = 60,
                  grace: float = 1.0, users_extra: str = "", trunk_extra: str = "") -> str:
    """A test config: the loopback-trunk example's shape with ports and knobs a test can choose."""
    gws = trunk_gateways if trunk_gateways is not None else [("127.0.0.1", 5090, "udp")]
    gw_text = ", ".join(f'{{host = "{h}", port = {p}, transport = "{t}"}}' for h, p, t in gws)
    users = "".join(f'\n[[users]]\nname = "{n}"\npassword = "{n}pass"\n{users_extra}\n' for n in ("1001", "1002", "1003"))
    return f"""
[sip]
listen = ["udp:127.0.0.1:{sip_port}", "tcp:127.0.0.1:{sip_port}"]
t1_ms = 500

[media]
ip = "127.0.0.1"
port_min = {rtp[0]}
port_max = {rtp[1]}

[calls]
ring_timeout_s = {ring_timeout}
shutdown_grace_s = {grace}

[store]
path = "data/switch.db"

[log]
level = "INFO"
{users}
[[trunks]]
name = "loopback"
gateways = [{gw_text}]
inbound_ips = ["127.0.0.1"]
dead_backoff_s = 30
{trunk_extra}

[[routes]]
name = "echo"
exact = "echo"
to = "service:echo"

[[routes]]
name = "playback"
exact = "playback"
to = "service:playback"

[[routes]]
name = "dtmf"
exact = "dtmf"
to = "service:dtmf"

[[routes]]
name = "outbound"
prefix = "9"
strip = 1
to = "trunk:loopback"

[[routes]]
name = "extensions"
regex = "^(1\\\\d{{3}})$"
to = "user"
{extra}
"""


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            kids.append(int(stat.parent.name))
    return kids


@pytest.fixture(autouse=True)
def _reap_leftover_peers():
    """A test that fails half-way must not leave SIPp/baresip holding ports for the next one."""
    yield
    for pid in _children(os.getpid()):
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


@pytest.fixture(scope="module")
def ports() -> PortAllocator:
    """Ports for one test module's peers (SIP, RTP, control), chosen so parallel runs do not collide."""
    return PortAllocator()


@pytest.fixture
def sip_port(ports: PortAllocator) -> int:
    return int(os.environ.get("SOFTSWITCH_TEST_SIP_PORT", "0")) or ports.port()


@pytest.fixture
def switch_factory(tmp_path):
    started: list[SwitchProcess] = []

    def make(config_text: str, sip_port: int = 5060, name: str = "switch") -> SwitchProcess:
        sw = SwitchProcess(tmp_path, config_text, sip_port, name)
        started.append(sw)
        return sw.start()

    yield make
    for sw in started:
        sw.stop(signal.SIGKILL if sw.alive() else signal.SIGTERM)

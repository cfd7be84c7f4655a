"""Fixtures that start the real softswitch as a process (the way users run it) and read its CDRs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def options_probe(host: str, port: int, timeout: float = 10.0) -> bool:
    """True once something answers a SIP OPTIONS on host:port/udp."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(0.2)
        lport = s.getsockname()[1]
        while time.monotonic() < deadline:
            branch = "z9hG4bK" + uuid.uuid4().hex
            msg = (f"OPTIONS sip:{host}:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{lport};branch={branch}\r\n"
                   f"Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:{host}>\r\n"
                   f"Call-ID: {branch}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
            s.sendto(msg.encode(), (host, port))
            try:
                data, _ = s.recvfrom(65535)
                if data.startswith(b"SIP/2.0 "):
                    return True
            except OSError:
                time.sleep(0.1)
    return False


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
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "softswitch", "run", "--config", str(self.config)],
                                     cwd=self.workdir, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 15.0
        while "softswitch up" not in self.log_path.read_text(errors="replace"):
            if not self.alive() or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"softswitch did not come up on :{self.sip_port}\n{self.log_tail()}")
            time.sleep(0.05)
        if not options_probe("127.0.0.1", self.sip_port, 5.0):
            self.stop()
            raise AssertionError(f"softswitch does not answer OPTIONS on :{self.sip_port}\n{self.log_tail()}")
        return self

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

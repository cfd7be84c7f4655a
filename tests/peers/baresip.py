"""Drive a headless baresip 1.0.0 (a real C softphone) over its ctrl_tcp JSON interface.

One :class:`Baresip` = one ``baresip -n 127.0.0.1 -f <dir>`` process with its own config
dir (config + accounts), its own SIP port, ctrl_tcp port and RTP range. Audio comes from
a WAV file (``aufile``); ``sndfile`` dumps what it sent (``*-enc.wav``) and received
(``*-dec.wav``) per call, which is how tests check media end to end::

    a = Baresip(tmp_path / "a", user="a", ports=ports, auto_answer=True,
                audio_source=speech_wav).start()
    b = Baresip(tmp_path / "b", user="b", ports=ports).start()
    b.dial(a.contact_uri)
    b.wait_event("CALL_ESTABLISHED"); a.wait_event("CALL_ESTABLISHED")

Quirks of 1.0.0 (measured here):
  * ``-n lo`` fails; ``-n 127.0.0.1`` works. The ``stdio`` module needs a tty: left out.
  * baresip binds SIP on UDP+TCP ``port`` and TLS on TCP ``port+1``: never give two
    UAs adjacent ports (PortAllocator.pair() keeps ``port+1`` for it).
  * ``aufile`` as audio source *hangs the call up when the file ends* ("end of file"):
    size the WAV to the call you want.
  * ctrl_tcp accepts ONE connection and only sends events while it is connected;
    events are ``{"event":true,"type":"CALL_RINGING","class":"call","accountaor":…,
    "direction":"incoming|outgoing","peeruri":…,"id":<call id>,"param":…}``; responses
    ``{"response":true,"ok":bool,"data":"…","token":…}``; both framed as netstrings.
  * sndfile names dumps ``dump-<YYYY-mm-dd-HH-MM-SS>-{enc,dec}.wav``: two calls started
    in the same second overwrite each other.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
import wave
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import require_binary, tail_file
from .netutil import LOOPBACK, PortAllocator

MODULE_DIR = Path("/usr/lib/baresip/modules")
MODULES = ("g711.so", "aufile.so", "aubridge.so", "sndfile.so")  # 'module'
TMP_MODULES = ("uuid.so", "account.so")  # 'module_tmp': used at startup only
APP_MODULES = ("menu.so", "ctrl_tcp.so")  # 'module_app': menu provides the commands
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class BaresipError(RuntimeError):
    """baresip did not do what the test asked; the message carries its log tail."""


@dataclass(frozen=True)
class BaresipEvent:
    """One ctrl_tcp event (CALL_RINGING, CALL_ESTABLISHED, CALL_CLOSED, REGISTER_OK…)."""

    type: str
    raw: dict[str, Any] = field(repr=False)
    at: float = 0.0

    @property
    def param(self) -> str:
        """Event detail (close reason, peer URI, error text…)."""
        return str(self.raw.get("param", ""))

    @property
    def call_id(self) -> str | None:
        """baresip's call id (not the SIP Call-ID)."""
        return self.raw.get("id")

    @property
    def peer(self) -> str | None:
        """Remote URI of the call."""
        return self.raw.get("peeruri")

    @property
    def direction(self) -> str | None:
        """'incoming' or 'outgoing'."""
        return self.raw.get("direction")

    def __str__(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in (("id", self.call_id), ("param", self.param)) if v)
        return f"{self.type} {extra}".strip()


def _netstring(payload: bytes) -> bytes:
    """Frame one netstring: ``<len>:<payload>,``."""
    return str(len(payload)).encode() + b":" + payload + b","


def _split_netstrings(buffer: bytearray) -> list[bytes]:
    """Pop every complete netstring from ``buffer`` (partial data stays)."""
    out: list[bytes] = []
    while True:
        colon = buffer.find(b":")
        if colon < 0:
            return out
        try:
            length = int(buffer[:colon])
        except ValueError as exc:
            raise BaresipError(f"bad netstring header {bytes(buffer[:colon])!r}") from exc
        end = colon + 1 + length
        if len(buffer) < end + 1:
            return out
        if buffer[end:end + 1] != b",":
            raise BaresipError(f"netstring not terminated by ',' near {bytes(buffer[:end + 1])[-40:]!r}")
        out.append(bytes(buffer[colon + 1:end]))
        del buffer[:end + 1]


class Baresip:
    """A headless baresip UA in ``workdir`` (config dir, log, recordings).

    ``registrar`` ("host:port") makes the account register there (``password``,
    ``regint`` seconds); without it the account never registers and is reachable
    directly at :attr:`contact_uri`. ``audio_source``: a WAV path (8 kHz mono s16) or a
    raw baresip ``"module,device"`` string; None plays ``silence_seconds`` of silence.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        user: str = "alice",
        ports: PortAllocator | None = None,
        audio_source: Path | str | None = None,
        silence_seconds: float = 30.0,
        codecs: Sequence[str] = ("PCMU/8000/1",),
        auto_answer: bool = False,
        registrar: str | None = None,
        password: str | None = None,
        regint: int = 60,
        domain: str | None = None,
        display_name: str | None = None,
        rtp_port_count: int = 20,
        record: bool = True,
        verbose: bool = False,
        extra_config: Mapping[str, str] | None = None,
        account_params: Mapping[str, str] | None = None,
        name: str | None = None,
    ) -> None:
        self.binary = require_binary("baresip")
        if not MODULE_DIR.is_dir():
            raise BaresipError(f"{MODULE_DIR} missing: install with `apt-get install -y baresip`")
        self.workdir = Path(workdir)
        self.config_dir = self.workdir / "config"
        self.rec_dir = self.workdir / "rec"
        self.log_path = self.workdir / "baresip.log"
        self.user = user
        self.name = name or user
        ports = ports or PortAllocator(seed=int.from_bytes(os.urandom(4), "little"))
        self.sip_port, _tls_port = ports.pair()
        self.ctrl_port = ports.port()
        self.rtp_range = ports.range(rtp_port_count)
        self.audio_source = audio_source
        self.silence_seconds = silence_seconds
        self.codecs = list(codecs)
        self.auto_answer = auto_answer
        self.registrar = registrar
        self.password = password
        self.regint = regint if registrar else 0
        self.domain = domain or registrar or LOOPBACK
        self.display_name = display_name
        self.record = record
        self.verbose = verbose
        self.extra_config = dict(extra_config or {})
        self.account_params = dict(account_params or {})

        self.events: queue.Queue[BaresipEvent] = queue.Queue()
        self.history: list[BaresipEvent] = []
        self._responses: queue.Queue[dict[str, Any]] = queue.Queue()
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._send_lock = threading.Lock()
        self._token = 0
        self._reader_error: BaseException | None = None

    # --- identity ------------------------------------------------------------------------

    @property
    def aor(self) -> str:
        """Address of record, e.g. ``sip:alice@127.0.0.1:5060``."""
        return f"sip:{self.user}@{self.domain}"

    @property
    def contact_uri(self) -> str:
        """Where this UA can be called directly (no registrar needed)."""
        return f"sip:{self.user}@{LOOPBACK}:{self.sip_port}"

    # --- config --------------------------------------------------------------------------

    def _source_setting(self) -> str:
        """The ``audio_source`` line value; writes a silent WAV when no source is given."""
        source = self.audio_source
        if source is None:
            path = self.workdir / "silence.wav"
            with wave.open(str(path), "wb") as wav:
                wav.setnchannels(1)
                wav.setsampwidth(2)
                wav.setframerate(8000)
                wav.writeframes(b"\x00\x00" * int(8000 * self.silence_seconds))
            return f"aufile,{path}"
        if isinstance(source, Path) or str(source).endswith(".wav"):
            path = Path(source).resolve()
            if not path.is_file():
                raise FileNotFoundError(f"baresip audio source {path} does not exist")
            return f"aufile,{path}"
        return str(source)

    def config_text(self) -> str:
        """The ``config`` file (why each line: see DESIGN.md §2)."""
        settings: dict[str, str] = {
            "poll_method": "epoll",
            "sip_listen": f"{LOOPBACK}:{self.sip_port}",
            "audio_player": "aubridge,nil",
            "audio_source": self._source_setting(),
            "audio_alert": "aubridge,nil",
            "rtp_ports": f"{self.rtp_range[0]}-{self.rtp_range[1]}",
            "module_path": str(MODULE_DIR),
            "ctrl_tcp_listen": f"{LOOPBACK}:{self.ctrl_port}",
        }
        if self.record:
            settings["snd_path"] = str(self.rec_dir)
        settings.update(self.extra_config)
        lines = [f"{k} {v}" for k, v in settings.items()]
        modules = [m for m in MODULES if self.record or m != "sndfile.so"]
        lines += [f"module {m}" for m in modules]
        lines += [f"module_tmp {m}" for m in TMP_MODULES]
        lines += [f"module_app {m}" for m in APP_MODULES]
        return "\n".join(lines) + "\n"

    def account_line(self) -> str:
        """The ``accounts`` line: AOR plus codec, registration and answer-mode params."""
        display = f'"{self.display_name}" ' if self.display_name else ""
        params: dict[str, str] = {"regint": str(self.regint), "audio_codecs": ",".join(self.codecs)}
        if self.password is not None:
            params["auth_user"] = self.user
            params["auth_pass"] = self.password
        if self.registrar and self.domain != self.registrar:
            params["outbound"] = f'"sip:{self.registrar}"'
        if self.auto_answer:
            params["answermode"] = "auto"
        params.update(self.account_params)
        return f"{display}<{self.aor}>;" + ";".join(f"{k}={v}" for k, v in params.items())

    # --- lifecycle -----------------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> Baresip:
        """Write config, spawn baresip, connect ctrl_tcp and start the event reader."""
        if self._proc is not None:
            raise BaresipError(f"baresip '{self.name}' already started")
        self.config_dir.mkdir(parents=True, exist_ok=True)
        if self.record:
            self.rec_dir.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "config").write_text(self.config_text())
        (self.config_dir / "accounts").write_text(self.account_line() + "\n")
        cmd = [self.binary, "-n", LOOPBACK, "-f", str(self.config_dir)] + (["-v"] if self.verbose else [])
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                cmd, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Connect to ctrl_tcp as soon as it listens (events before that are lost)."""
        if self._sock is not None:
            return
        deadline = time.monotonic() + timeout
        while True:
            if self._proc is None or self._proc.poll() is not None:
                raise BaresipError(f"baresip '{self.name}' exited during startup\n" + self.describe())
            try:
                sock = socket.create_connection((LOOPBACK, self.ctrl_port), timeout=1.0)
                break
            except OSError:
                if time.monotonic() >= deadline:
                    raise BaresipError(
                        f"baresip '{self.name}' ctrl_tcp {LOOPBACK}:{self.ctrl_port} not up in {timeout:.0f}s\n"
                        + self.describe()
                    ) from None
                time.sleep(0.02)
        sock.settimeout(None)
        self._sock = sock
        self._reader = threading.Thread(target=self._read_loop, name=f"baresip-{self.name}-ctrl", daemon=True)
        self._reader.start()
        # The listening socket exists before the UA stack is fully up; a command
        # round-trip proves baresip is processing commands.
        self.command("reginfo", timeout=max(1.0, deadline - time.monotonic()))

    def _read_loop(self) -> None:
        """Split the ctrl_tcp stream into events (-> events queue) and responses."""
        sock = self._sock  # stop() clears the attribute while this thread may still be reading
        assert sock is not None
        buffer = bytearray()
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                buffer += chunk
                for payload in _split_netstrings(buffer):
                    message = json.loads(payload)
                    if message.get("event"):
                        event = BaresipEvent(str(message.get("type", "")), message, time.monotonic())
                        self.history.append(event)
                        self.events.put(event)
                    elif message.get("response"):
                        self._responses.put(message)
        except OSError:
            return
        except (ValueError, BaresipError) as exc:
            self._reader_error = exc

    def command(self, command: str, params: str | None = None, timeout: float = 5.0,
                check: bool = True) -> dict[str, Any]:
        """Run a baresip command (dial, hangup, accept, quit, reginfo…); return its response.

        With ``check`` a response with ``ok: false`` raises BaresipError.
        """
        if self._sock is None:
            raise BaresipError(f"baresip '{self.name}' not connected")
        with self._send_lock:
            self._token += 1
            token = f"t{self._token}"
            request: dict[str, str] = {"command": command, "token": token}
            if params is not None:
                request["params"] = params
            self._sock.sendall(_netstring(json.dumps(request).encode()))
        deadline = time.monotonic() + timeout
        while True:
            try:
                response = self._responses.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise BaresipError(
                    f"baresip '{self.name}': no response to {command!r} in {timeout:.1f}s\n" + self.describe()
                ) from None
            if response.get("token") != token:
                continue  # a late answer to an earlier, timed-out command
            if check and not response.get("ok", False):
                raise BaresipError(
                    f"baresip '{self.name}': {command} {params or ''} failed: {response.get('data')!r}\n"
                    + self.describe()
                )
            return response

    def dial(self, uri: str) -> dict[str, Any]:
        """Place a call (``sip:…`` URI, or a bare user completed with the AOR domain)."""
        return self.command("dial", uri)

    def hangup(self) -> dict[str, Any]:
        """Hang up the current call."""
        return self.command("hangup")

    def answer(self) -> dict[str, Any]:
        """Answer the ringing incoming call (when not auto-answering)."""
        return self.command("accept")

    def wait_event(self, event_type: str | Sequence[str], timeout: float = 10.0,
                   predicate: Callable[[BaresipEvent], bool] | None = None,
                   fail_on: Sequence[str] = ()) -> BaresipEvent:
        """Next event of ``event_type`` (consuming earlier ones); raise with context on timeout.

        ``fail_on``: event types that mean the awaited one will never come (e.g.
        CALL_CLOSED while waiting for CALL_ESTABLISHED) and raise immediately.
        """
        wanted = {event_type} if isinstance(event_type, str) else set(event_type)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                event = self.events.get(timeout=max(0.0, remaining))
            except queue.Empty:
                raise BaresipError(
                    f"baresip '{self.name}': no {'/'.join(sorted(wanted))} within {timeout:.1f}s\n" + self.describe()
                ) from None
            if event.type in wanted and (predicate is None or predicate(event)):
                return event
            if event.type in fail_on:
                raise BaresipError(
                    f"baresip '{self.name}': got {event} while waiting for {'/'.join(sorted(wanted))}\n"
                    + self.describe()
                )

    def wait_registered(self, timeout: float = 10.0) -> str:
        """Wait until the account is registered; return the reginfo line.

        Why polling: the first REGISTER_OK usually fires before ctrl_tcp is connected
        (loopback registration takes ~1 ms), so the event alone cannot be relied on.
        REGISTER_FAIL or an ``ERR`` status raises with context.
        """
        deadline = time.monotonic() + timeout
        while True:
            failed = [e for e in self.history if e.type == "REGISTER_FAIL"]
            if failed:
                raise BaresipError(f"baresip '{self.name}': {failed[-1]}\n" + self.describe())
            status, line = self.registration_status()
            if status == "OK":
                return line
            if status == "ERR" or time.monotonic() >= deadline:
                raise BaresipError(
                    f"baresip '{self.name}': not registered ({line.strip() or 'no status'}) "
                    f"after {timeout:.1f}s\n" + self.describe()
                )
            time.sleep(0.1)

    def registration_status(self) -> tuple[str, str]:
        """``(status, line)`` from ``reginfo``: status is OK, ERR or '' (in progress/none)."""
        data = str(self.command("reginfo").get("data", ""))
        for raw_line in data.splitlines():
            line = _ANSI.sub("", raw_line)
            if self.aor in line:
                match = re.search(r"\s(OK|ERR)\b", line)
                return (match.group(1) if match else ""), line.strip()
        return "", ""

    def recordings(self) -> tuple[Path, Path]:
        """``(enc_wav, dec_wav)`` of the latest call: what we sent, what we received."""
        pairs = self.all_recordings()
        if not pairs:
            raise BaresipError(f"baresip '{self.name}': no recordings in {self.rec_dir}\n" + self.describe())
        return pairs[-1]

    def all_recordings(self) -> list[tuple[Path, Path]]:
        """Every ``(enc, dec)`` dump pair, oldest first."""
        if not self.rec_dir.is_dir():
            return []
        pairs = []
        for enc in sorted(self.rec_dir.glob("dump-*-enc.wav"), key=lambda p: (p.stat().st_mtime, p.name)):
            dec = enc.with_name(enc.name.removesuffix("-enc.wav") + "-dec.wav")
            if dec.exists():
                pairs.append((enc, dec))
        return pairs

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def stop(self, timeout: float = 5.0) -> int | None:
        """``quit`` over ctrl_tcp, then SIGTERM twice, then SIGKILL; returns the exit code.

        baresip unregisters on quit and waits for the answer; its first SIGTERM is
        again a graceful stop, the second forces it (so a dead registrar costs
        ``timeout`` + ~1 s, not SIP timer F).
        """
        if self._proc is None:
            return None
        if self._proc.poll() is None and self._sock is not None:
            try:
                self.command("quit", timeout=1.0, check=False)
            except (BaresipError, OSError):
                pass
        steps = ((None, timeout), (signal.SIGTERM, 0.5), (signal.SIGTERM, 2.0), (signal.SIGKILL, 5.0))
        for sig, wait_s in steps:
            if self._proc.poll() is not None:
                break
            if sig is not None:
                self._proc.send_signal(sig)
            try:
                self._proc.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                continue
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._sock.close()
            self._sock = None
        if self._reader is not None:
            self._reader.join(timeout=2.0)
            self._reader = None
        return self._proc.poll()

    def describe(self, lines: int = 30) -> str:
        """Events seen so far plus the log tail, for assertion messages."""
        state = "not started" if self._proc is None else (
            "running" if self._proc.poll() is None else f"exited {self._proc.returncode}")
        events = ", ".join(str(e) for e in self.history[-15:]) or "none"
        parts = [
            f"baresip '{self.name}' ({state}) aor={self.aor} sip={LOOPBACK}:{self.sip_port} "
            f"ctrl={self.ctrl_port} rtp={self.rtp_range[0]}-{self.rtp_range[1]} dir={self.workdir}",
            f"events: {events}",
        ]
        if self._reader_error is not None:
            parts.append(f"ctrl_tcp reader error: {self._reader_error!r}")
        parts += ["--- baresip log (tail) ---", tail_file(self.log_path, lines)]
        return "\n".join(parts)

    def __enter__(self) -> Baresip:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Baresip({self.name!r}, sip={self.sip_port}, ctrl={self.ctrl_port})"

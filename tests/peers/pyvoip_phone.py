"""A second, independent SIP phone for functional tests: pyVoIP 1.6.8 ``VoIPPhone``.

:class:`PyVoipPhone` registers to a server (the softswitch, or the SIPp registrar
scenario), answers incoming calls (optional), plays a tone or WAV into every call and
records what it hears; :meth:`PyVoipPhone.call` places outgoing calls.

Quirks of pyVoIP 1.6.8 (read from its source, keep them in mind when a test fails):
  * It sends *every* SIP message to the configured server:port (it is a registered
    phone, not a peer-to-peer UA) and registers before anything else; ``start()``
    swallows registration errors, so we check the status and raise ourselves.
  * UDP only, no retransmissions, no 407 handling: a server must challenge it with 401
    (not 407), without ``qop`` (its digest ignores qop), on REGISTER and INVITE.
    REGISTER goes to ``sip:<server>`` (no port), Expires 120, re-registers every 115 s.
  * Incoming calls: it sends 180 at once and runs the callback ~1 s later in a
    ``threading.Timer`` thread; we answer there (so answers come after ~1 s).
  * ``VoIPPhone.call()`` blocks until the server sends 100/180/401 for that call and has
    no timeout; we run it in a worker thread and stop the phone if it hangs. Later
    responses are handled by a receive thread that starts 1 s after ``start()``, so a
    call placed at once sees its 200 ~1 s late; the 200 is often retransmitted by then
    and pyVoIP ACKs each copy (new branch each time): servers must absorb extra ACKs.
  * Without ``auto_answer`` pyVoIP itself rejects incoming calls with 486.
  * Outgoing calls understand only 200, 404 and 503 as final answers: any other
    rejection (486, 480, 603…) is neither ACKed nor noticed, the call stays DIALING
    (``wait_answered`` times out). Use SIPp or baresip to test rejections.
  * Audio API is 8-bit *unsigned* linear PCM at 8 kHz (160 bytes per 20 ms); converted
    to/from int16 here. Only PCMU/PCMA; DTMF receive only (RFC 2833). Received audio
    is rebuilt from pyVoIP's per-timestamp packet log, not by polling ``read_audio``.
  * 3+ threads per call (RTP send/receive, callback) and busy-polling: fine for a
    handful of calls, useless for load.
"""

from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import PeerMissingError
from .audio import int16_to_u8, read_wav, u8_to_int16, write_wav
from .netutil import LOOPBACK

MAX_RECORD_SAMPLES = 8000 * 600  # 10 minutes


def _import_pyvoip() -> Any:
    """Import pyVoIP lazily so a missing install fails the test with a clear message."""
    try:
        from pyVoIP import VoIP
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise PeerMissingError("pyVoIP is not installed: `pip install pyVoIP==1.6.8` (extra 'test')") from exc
    return VoIP


def _tone_u8(freq: float, seconds: float, amplitude: float = 0.5) -> bytes:
    """A sine tone as pyVoIP audio bytes."""
    t = np.arange(int(seconds * 8000)) / 8000
    return int16_to_u8(np.round(amplitude * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16))


def audio_to_u8(source: Path | np.ndarray | bytes | None, default_tone_hz: float = 1000.0,
                default_seconds: float = 3.0) -> bytes:
    """Whatever a test wants played (WAV path, int16 array, raw u8 bytes, None=tone) as u8."""
    if source is None:
        return _tone_u8(default_tone_hz, default_seconds)
    if isinstance(source, bytes):
        return source
    if isinstance(source, np.ndarray):
        return int16_to_u8(source)
    rate, samples, channels = read_wav(Path(source))
    if rate != 8000 or channels != 1:
        raise ValueError(f"{source}: pyVoIP plays 8 kHz mono audio, got {rate} Hz x{channels}")
    return int16_to_u8(samples)


class PyVoipCall:
    """One pyVoIP call: plays audio once answered; received audio is kept by pyVoIP."""

    def __init__(self, call: Any, direction: str, play: bytes, hangup_after: float | None) -> None:
        self.call = call
        self.direction = direction
        self.call_id: str = call.call_id
        self._play = play
        self._hangup_after = hangup_after
        self.answered_at: float | None = None
        self.ended_at: float | None = None
        self.error: BaseException | None = None
        self._ended = threading.Event()

    @property
    def state(self) -> str:
        """pyVoIP call state name: DIALING, RINGING, ANSWERED, ENDED."""
        return self.call.state.name

    def run_media(self) -> None:
        """Queue the play-out once, then wait for the end (or hang up after ``hangup_after``)."""
        try:
            self.answered_at = time.monotonic()
            self.call.write_audio(self._play)
            while self.call.state.name == "ANSWERED":
                if self._hangup_after is not None and time.monotonic() - self.answered_at >= self._hangup_after:
                    self.call.hangup()
                    break
                time.sleep(0.02)
        except BaseException as exc:  # recorded for the test thread, which asserts on it
            self.finish(exc)
        else:
            self.finish()

    def finish(self, error: BaseException | None = None) -> None:
        """Mark the call over (with the error that ended it, if any)."""
        if error is not None:
            self.error = error
        self.ended_at = time.monotonic()
        self._ended.set()

    def wait_answered(self, timeout: float = 10.0) -> None:
        """Block until the call is answered (raises on timeout or early end)."""
        deadline = time.monotonic() + timeout
        while self.call.state.name != "ANSWERED":
            if self.call.state.name == "ENDED" or time.monotonic() >= deadline:
                raise AssertionError(f"pyVoIP call {self.call_id} not answered (state {self.state})")
            time.sleep(0.02)

    def wait_ended(self, timeout: float = 30.0) -> None:
        """Block until the remote side (or hangup_after) ended the call."""
        if not self._ended.wait(timeout):
            raise AssertionError(f"pyVoIP call {self.call_id} still {self.state} after {timeout:.1f}s")
        if self.error is not None:
            raise AssertionError(f"pyVoIP call {self.call_id} media loop failed: {self.error!r}") from self.error

    def hangup(self) -> None:
        """Send BYE (only valid while answered)."""
        if self.call.state.name == "ANSWERED":
            self.call.hangup()

    def received_audio(self) -> np.ndarray:
        """Everything received so far as int16, placed by RTP timestamp (gaps = silence).

        Why not poll ``read_audio()``: its reader inserts silence whenever it runs ahead
        of the network, which smears the signal under CPU load. pyVoIP keeps every
        received payload in ``pmin.log`` keyed by RTP timestamp (8-bit samples), so the
        stream is rebuilt from there (pyVoIP 1.6.8 internals, pinned in setup.cfg).
        """
        clients = getattr(self.call, "RTPClients", [])
        if not clients:
            return np.zeros(0, dtype=np.int16)
        manager = clients[0].pmin
        with manager.bufferLock:
            packets = sorted(manager.log.items())
        if not packets:
            return np.zeros(0, dtype=np.int16)
        base = packets[0][0]
        end = max(ts + len(data) for ts, data in packets)
        if end - base > MAX_RECORD_SAMPLES:  # timestamp jump: keep arrival order instead
            return u8_to_int16(b"".join(data for _, data in packets))
        stream = np.full(end - base, 128, dtype=np.uint8)
        for ts, data in packets:
            stream[ts - base:ts - base + len(data)] = np.frombuffer(data, dtype=np.uint8)
        return u8_to_int16(stream.tobytes())

    def save_received(self, path: Path) -> Path:
        """Write the received audio as a WAV (for debugging failed media tests)."""
        return write_wav(path, self.received_audio())


class PyVoipPhone:
    """A registered pyVoIP phone on 127.0.0.1 that answers, plays and records.

    ``play``: what to send in every call (WAV path, int16 array, u8 bytes; None = 3 s of
    1 kHz). ``auto_answer``: answer incoming calls (else reject with 486).
    ``hangup_after``: seconds after answer at which *we* hang up (None = wait for BYE).
    """

    def __init__(
        self,
        server: str,
        port: int,
        username: str,
        password: str,
        *,
        sip_port: int,
        rtp_range: tuple[int, int],
        play: Path | np.ndarray | bytes | None = None,
        auto_answer: bool = True,
        hangup_after: float | None = None,
        register_timeout: float = 5.0,
    ) -> None:
        self._voip = _import_pyvoip()
        self.server = server
        self.port = port
        self.username = username
        self.sip_port = sip_port
        self.rtp_range = rtp_range
        self.play = audio_to_u8(play)
        self.auto_answer = auto_answer
        self.hangup_after = hangup_after
        self.incoming: queue.Queue[PyVoipCall] = queue.Queue()
        self.calls: list[PyVoipCall] = []
        self.phone = self._voip.VoIPPhone(
            server, port, username, password,
            myIP=LOOPBACK,
            callCallback=self._on_incoming if auto_answer else None,
            sipPort=sip_port,
            rtpPortLow=rtp_range[0],
            rtpPortHigh=rtp_range[1],
        )
        self.phone.sip.register_timeout = register_timeout  # default 30 s is too slow for tests

    @property
    def status(self) -> str:
        """pyVoIP PhoneStatus name (INACTIVE, REGISTERING, REGISTERED, FAILED…)."""
        return self.phone.get_status().name

    def start(self) -> PyVoipPhone:
        """Register (blocking); raise if the phone did not end up REGISTERED."""
        self.phone.start()
        if self.status != "REGISTERED":
            status = self.status
            self.stop()
            raise AssertionError(
                f"pyVoIP {self.username} did not register at {self.server}:{self.port} (status {status}); "
                "it needs a 401 challenge without qop, or no challenge"
            )
        return self

    def _on_incoming(self, call: Any) -> None:
        """pyVoIP callback (Timer thread, ~1 s after the INVITE): answer, then run media."""
        handle = PyVoipCall(call, "incoming", self.play, self.hangup_after)
        self.calls.append(handle)
        self.incoming.put(handle)
        try:
            call.answer()
        except Exception as exc:  # surfaced through wait_ended()
            handle.finish(exc)
            return
        handle.run_media()

    def wait_incoming(self, timeout: float = 10.0) -> PyVoipCall:
        """The next incoming call (already being answered)."""
        try:
            return self.incoming.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"pyVoIP {self.username}: no incoming call within {timeout:.1f}s") from None

    def call(self, number: str, timeout: float = 10.0) -> PyVoipCall:
        """Dial ``number`` via the server; media starts once the call is answered."""
        result: dict[str, Any] = {}

        def dial() -> None:
            try:
                result["call"] = self.phone.call(number)
            except BaseException as exc:
                result["error"] = exc

        worker = threading.Thread(target=dial, name=f"pyvoip-dial-{number}", daemon=True)
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            self.stop()  # closes the socket, which unblocks pyVoIP's recv()
            raise AssertionError(f"pyVoIP {self.username}: no 100/180 for call to {number} within {timeout:.1f}s")
        if "error" in result:
            raise AssertionError(f"pyVoIP {self.username}: call to {number} failed: {result['error']!r}")
        handle = PyVoipCall(result["call"], "outgoing", self.play, self.hangup_after)
        self.calls.append(handle)
        threading.Thread(target=self._media_when_answered, args=(handle, timeout * 6),
                         name=f"pyvoip-media-{number}", daemon=True).start()
        return handle

    @staticmethod
    def _media_when_answered(handle: PyVoipCall, timeout: float) -> None:
        """Outgoing calls: start media when pyVoIP marks the call ANSWERED."""
        deadline = time.monotonic() + timeout
        while handle.call.state.name not in ("ANSWERED", "ENDED") and time.monotonic() < deadline:
            time.sleep(0.02)
        if handle.call.state.name == "ANSWERED":
            handle.run_media()
        else:
            handle.finish()

    def stop(self) -> None:
        """Hang up, deregister (bounded by register_timeout) and close sockets."""
        try:
            self.phone.stop()
        except Exception:  # deregistration failures must not hide the test result
            pass

    def __enter__(self) -> PyVoipPhone:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


"""A terminated media session (asyncio): we are the far end of a leg's RTP.

Services, and later the IVR, talk to the caller through this: ``play`` a source (prompt, tone, TTS)
with optional barge-in, hear DTMF from all three transports as one kind of event, detect speech,
``send_dtmf``, and ``tap`` both directions. The protocol work happens in the sans-IO ``RtpStream``;
this class owns the sockets, the latching and the media clock's tick.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..sdp import StreamParams
from .dtmf import DtmfEvent, InbandDetector, feed_many
from .jitter import Frame
from .players import Source
from .rtcp import RtcpError
from .rtp import RtpError
from .stream import FRAME_SAMPLES, RtpStream
from .tap import Tap, TapFrame, TapPoint

if TYPE_CHECKING:
    from .engine import MediaEngine

log = logging.getLogger("softswitch.media")

SILENCE = np.zeros(FRAME_SAMPLES, dtype=np.int16)
SILENCE.flags.writeable = False
DTMF_DEDUPE_S = 0.5  # one key press reported by two transports (RFC 4733 and in-band tones) counts once


@dataclass(frozen=True, slots=True)
class SpeechEvent:
    kind: str  # "speech_start" | "speech_end"


MediaEvent = DtmfEvent | SpeechEvent


@dataclass(slots=True)
class _Playback:
    source: Source
    barge_in: frozenset[str]
    done: asyncio.Future[str]


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, Any], None]) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.on_datagram = on_datagram
        self.closed: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable from a gone peer
        pass

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed is not None and not self.closed.done():
            self.closed.set_result(None)


class MediaSession:
    def __init__(self, engine: MediaEngine, port: int, release: Callable[[int], None]) -> None:
        self.engine = engine
        self.loop = engine.loop
        self.log: Any = log  # the owner may give its call's logger, so lines carry the call id
        self.local_port = port
        self._release = release
        self.rtp = _Socket(self._on_rtp)
        self.rtcp = _Socket(self._on_rtcp)
        self.stream: RtpStream | None = None
        self.params: StreamParams | None = None
        self.echo = False
        self.taps = TapPoint()
        self._record: tuple[list[tuple[int, float, bytes]], int, int] | None = None  # see ``record``
        self._index = 0
        self._dest: tuple[str, int] | None = None
        self._rtcp_dest: tuple[str, int] | None = None
        self._latched: Any = None
        self._rtcp_latched: Any = None
        self._playback: _Playback | None = None
        self._queues: list[asyncio.Queue[MediaEvent]] = []
        self._inband = InbandDetector() if engine.settings.dtmf_inband else None
        self._vad: Any = None
        self._vad_users = 0
        self._last_dtmf: tuple[float, str, str] | None = None
        self.dtmf_log: list[dict[str, Any]] = []
        self.started_at: float | None = None
        self._rtcp_due = 0.0
        self.closed = False
        self.dropped_source = self.dropped_malformed = self.dropped_rtcp = self.dtmf_duplicates = 0

    # ------------------------------------------------------------------ set-up
    def start(self, params: StreamParams) -> None:
        """Begin (or re-negotiate) the stream with what offer/answer settled."""
        if self.closed:
            return
        if self.stream is None:
            self.stream = RtpStream(params, self.engine.cname, self.engine.settings.jitter,
                                    ntp_offset=time.time() - self.loop.time())
            self.started_at = self.loop.time()
            self.engine.clock.add(self)
        else:
            self.stream.configure(params)
        if self.params is not None and (params.remote_host, params.remote_port) != (
                self.params.remote_host, self.params.remote_port):
            self._latched = self._rtcp_latched = None  # media moved: let the new source latch
        self.params = params
        self._route()

    def _route(self) -> None:
        p = self.params
        if p is None or not p.sending:
            self._dest = self._rtcp_dest = None
            return
        self._dest = self._latched or (p.remote_host, p.remote_port)
        self._rtcp_dest = self._rtcp_latched or (p.remote_host, p.remote_rtcp_port)

    # ------------------------------------------------------------------ receive
    def _on_rtp(self, data: bytes, addr: Any) -> None:
        stream = self.stream
        if stream is None:
            return
        if addr != self._latched and self._latched is not None:
            self.dropped_source += 1  # RTP bleed: only the latched source may talk to us
            return
        now = self.loop.time()
        try:
            event = stream.receive_rtp(data, now)
        except (RtpError, ValueError):
            self.dropped_malformed += 1
            return
        if self._latched is None:
            self._latched = addr
            self._route()
        if self._record is not None:
            self._record[0].append((self._record[1], time.monotonic(), data))
        if stream.key_down and self._playback is not None:
            self._barge("dtmf")
        if event is not None:
            self._dtmf(event, now)

    def _on_rtcp(self, data: bytes, addr: Any) -> None:
        if self.stream is None:
            return
        if self._rtcp_latched is not None and addr != self._rtcp_latched:
            self.dropped_rtcp += 1
            return
        try:
            self.stream.receive_rtcp(data, self.loop.time())
        except (RtcpError, ValueError):
            self.dropped_rtcp += 1
            return
        if self._rtcp_latched is None:
            self._rtcp_latched = addr
            self._route()

    def info_dtmf(self, event: DtmfEvent) -> None:
        """A digit that arrived as SIP INFO on this leg's dialog."""
        self._barge("dtmf")
        self._dtmf(event, self.loop.time())

    # ------------------------------------------------------------------ the 20 ms tick
    def tick(self, now: float) -> None:
        frame = self._rx(now)
        if frame is not None:
            self._after_rx(now, frame, self._inband.feed(frame.pcm) if self._inband is not None else None)

    @staticmethod
    def tick_many(sessions: list[MediaSession], now: float) -> None:
        """One clock tick for many sessions: in-band DTMF's first stage runs once for all of them."""
        frames: list[Frame | None] = []
        for session in sessions:
            try:
                frames.append(session._rx(now))
            except Exception:  # noqa: BLE001 - detach the broken one, tick the others
                frames.append(None)
                session._broken()
        events: list[DtmfEvent | None] = [None] * len(sessions)
        which = [i for i, (s, f) in enumerate(zip(sessions, frames)) if f is not None and s._inband is not None]
        if which:
            found = feed_many([sessions[i]._inband for i in which], [frames[i].pcm for i in which])  # type: ignore
            for i, event in zip(which, found):
                events[i] = event
        for session, frame, event in zip(sessions, frames, events):
            if frame is None:
                continue
            try:
                session._after_rx(now, frame, event)
            except Exception:  # noqa: BLE001 - one broken stream must not stop everyone's audio
                session._broken()

    def skip(self, frames: int, now: float) -> None:
        """The clock skipped ``frames`` ticks: shed the delay that leaves in the jitter buffer, and let our
        RTP clock run on (the far end sees a gap, not a stream that fell behind)."""
        self._index += frames   # tap subscribers see the skipped stretch as missing frames
        stream = self.stream
        if stream is None or self.params is None:
            return
        if self.params.receiving:
            stream.jitter.catch_up(frames)
        stream.sender.advance(FRAME_SAMPLES * frames)

    def _broken(self) -> None:
        self.engine.clock.errors += 1
        self.engine.clock.remove(self)
        log.exception("media tick failed; session on port %d detached", self.local_port)

    def _rx(self, now: float) -> Frame | None:
        """The next 20 ms of what the party says (None: not started)."""
        if self.stream is None or self.params is None:
            return None
        return self.stream.pop(now) if self.params.receiving else Frame(SILENCE, None, "silence")

    def _after_rx(self, now: float, frame: Frame, event: DtmfEvent | None) -> None:
        stream = self.stream
        assert stream is not None
        index = self._index
        self._index += 1
        rx = frame.pcm
        inband = self._inband
        if inband is not None:
            if self._playback is not None and inband.active_digit is not None:
                self._barge("dtmf")
            if event is not None:
                self._dtmf(event, now)
        if self._vad is not None:
            change = self._vad.feed(rx)
            if change is not None:
                self._emit(SpeechEvent(change))
                if change == "speech_start":
                    self._barge("speech")
        if index % 25 == 0 and frame.rtp_ts is not None:
            late = stream.rfc4733.expire(frame.rtp_ts)
            if late is not None:
                self._dtmf(late, now)
        if self.echo:
            tx = rx
        elif self._playback is not None:
            tx = self._playback.source.read()
            if tx is None:
                self._end_playback("finished")
                tx = SILENCE
        else:
            tx = SILENCE
        data = stream.send_frame(tx)
        if data is not None:
            if self._dest is not None:
                self.rtp.transport.sendto(data, self._dest)  # type: ignore[union-attr]
            if self._record is not None:
                self._record[0].append((self._record[2], time.monotonic(), data))
        if self.taps.taps:
            self.taps.publish(TapFrame("rx", index, frame.rtp_ts, rx, frame.kind),
                              TapFrame("tx", index, None, tx, "audio" if tx is not SILENCE else "silence"))
        if now >= self._rtcp_due:
            report = stream.rtcp_due(now)
            self._rtcp_due = stream.rtcp.next_report_due(now)
            if report is not None and self._rtcp_dest is not None:
                self.rtcp.transport.sendto(report, self._rtcp_dest)  # type: ignore[union-attr]

    # ------------------------------------------------------------------ events
    def events(self) -> asyncio.Queue[MediaEvent]:
        """Subscribe to DTMF and speech events (call ``unsubscribe`` when done)."""
        queue: asyncio.Queue[MediaEvent] = asyncio.Queue()
        self._queues.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[MediaEvent]) -> None:
        if queue in self._queues:
            self._queues.remove(queue)

    def _emit(self, event: MediaEvent) -> None:
        for queue in self._queues:
            queue.put_nowait(event)

    def _dtmf(self, event: DtmfEvent, now: float) -> None:
        last = self._last_dtmf
        if last is not None and last[1] == event.digit and last[2] != event.source and now - last[0] < DTMF_DEDUPE_S:
            self.dtmf_duplicates += 1
            return
        self._last_dtmf = (now, event.digit, event.source)
        at = round(now - (self.started_at or now), 3)
        self.dtmf_log.append({"digit": event.digit, "source": event.source, "duration_ms": event.duration_ms,
                              "at": at})
        self.log.info("dtmf %s (%s, %d ms) on port %d", event.digit, event.source, event.duration_ms,
                      self.local_port)
        self._barge("dtmf")
        self._emit(event)

    def detect_speech(self, on: bool = True) -> None:
        """Run voice activity detection on what the party says (costs CPU: only while someone listens)."""
        self._vad_users += 1 if on else -1
        if self._vad_users > 0 and self._vad is None:
            from .vad import SpeechDetector
            self._vad = SpeechDetector()
        elif self._vad_users <= 0:
            self._vad_users = 0
            self._vad = None

    # ------------------------------------------------------------------ playback and sending
    async def play(self, source: Source, barge_in: Iterable[str] = ()) -> str:
        """Play until the source ends ("finished"), a barge-in event cuts it ("dtmf"/"speech"),
        another ``play``/``stop_playback`` replaces it ("stopped"), or the session closes ("closed")."""
        if self.closed:
            return "closed"
        self._end_playback("stopped")
        kinds = frozenset(barge_in)
        playback = _Playback(source, kinds, self.loop.create_future())
        self._playback = playback
        speech = "speech" in kinds
        if speech:
            self.detect_speech(True)
        try:
            return await playback.done
        finally:
            if speech:
                self.detect_speech(False)

    def stop_playback(self) -> None:
        self._end_playback("stopped")

    def _barge(self, kind: str) -> None:
        if self._playback is not None and kind in self._playback.barge_in:
            self._end_playback(kind)

    def _end_playback(self, reason: str) -> None:
        playback, self._playback = self._playback, None
        if playback is not None and not playback.done.done():
            playback.done.set_result(reason)

    def send_dtmf(self, digits: str, duration_ms: int = 100) -> None:
        """Queue key presses as RFC 4733 events (ValueError: not negotiated, or not a DTMF digit)."""
        if self.stream is None:
            raise ValueError("media not started")
        for digit in digits:
            self.stream.queue_dtmf(digit, duration_ms)

    def record(self, intake: list[tuple[int, float, bytes]], said: int, heard: int) -> None:
        """Hand a recorder every RTP packet of this leg: what the party sends as stream ``said``, what we send
        it as ``heard`` (``(stream, monotonic arrival, packet)`` appended to ``intake``)."""
        self._record = (intake, said, heard)

    def unrecord(self) -> None:
        self._record = None

    def tap(self, maxsize: int = 500, wake_batch: int = 1) -> Tap:
        """Subscribe to both directions: "rx" (the party speaking) and "tx" (what we play to it)."""
        return self.taps.attach(maxsize, wake_batch)

    # ------------------------------------------------------------------ teardown
    def stats(self) -> dict:
        out: dict[str, Any] = self.stream.stats() if self.stream is not None else {}
        if self.stream is not None:  # the relay's names, so every CDR leg reads the same way
            out["packets_in"], out["packets_out"] = self.stream.received, self.stream.sender.packets_sent
        out.update({"latched_to": _format(self._latched), "dropped_source": self.dropped_source,
                    "dropped_malformed": self.dropped_malformed, "dropped_rtcp": self.dropped_rtcp,
                    "dtmf": list(self.dtmf_log), "dtmf_duplicates": self.dtmf_duplicates})
        return out

    def hand_over(self) -> tuple[list[Any], list[Any], StreamParams | None]:
        """Stop terminating media but keep the sockets open for a relay (``MediaRelay.join``):
        (RTP and RTCP transports, their latched sources, the stream parameters)."""
        if self.closed or self.rtp.transport is None or self.rtcp.transport is None:
            raise RuntimeError("media session already closed")
        self.closed = True
        self.engine.clock.remove(self)
        self.engine.session_closed(self)
        self._end_playback("closed")
        self.taps.close()
        self._record = None   # the relay takes over (CallRecording.attach)
        return [self.rtp.transport, self.rtcp.transport], [self._latched, self._rtcp_latched], self.params

    def close(self) -> None:
        """Stop media: RTCP BYE to the peer, sockets closed, playback and taps ended."""
        if self.closed:
            return
        self.closed = True
        self.engine.clock.remove(self)
        self.engine.session_closed(self)
        self._end_playback("closed")
        self.taps.close()
        self._record = None
        if self.stream is not None and self._rtcp_dest is not None and self.rtcp.transport is not None:
            try:
                self.rtcp.transport.sendto(self.stream.rtcp_bye(self.loop.time()), self._rtcp_dest)
            except Exception:  # noqa: BLE001 - teardown must finish
                pass
        remaining = [s for s in (self.rtp, self.rtcp) if s.transport is not None]
        if not remaining:
            self._release(self.local_port)
            return
        pending = len(remaining)

        def lost(_fut: Any) -> None:
            nonlocal pending
            pending -= 1
            if pending == 0:
                self._release(self.local_port)
        for sock in remaining:
            sock.closed = self.loop.create_future()
            sock.closed.add_done_callback(lost)
            sock.transport.close()  # type: ignore[union-attr]


def _format(addr: Any) -> str | None:
    if addr is None:
        return None
    host = f"[{addr[0]}]" if ":" in addr[0] else addr[0]
    return f"{host}:{addr[1]}"

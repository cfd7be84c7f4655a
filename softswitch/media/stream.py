"""The sans-IO core of one terminated RTP stream: datagrams and a clock in, frames/events/datagrams out.

It knows RTP, RTCP, G.711, the jitter buffer and RFC 4733, and nothing of sockets or tasks: the
asyncio ``MediaSession`` (and a tapped relay side) owns those and calls in. Bad packets raise
``RtpError``/``RtcpError`` for the caller to count and drop.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from .dtmf import DtmfEvent, Rfc4733Receiver, Rfc4733Sender
from .g711 import G711Codec, codec_for
from .jitter import Frame, JitterBuffer
from .rtcp import RtcpSession
from .rtp import RtpSender, parse_rtp
from ..sdp import StreamParams

FRAME_SAMPLES = 160  # 20 ms at 8 kHz: the media clock's step
CN_PT = 13           # comfort noise (RFC 3389): a silence marker, nothing to play


@dataclass(slots=True)
class JitterSettings:
    depth_ms: int = 60
    adaptive: bool = True
    min_depth_ms: int = 20
    max_depth_ms: int = 200


class RtpStream:
    def __init__(self, params: StreamParams, cname: str, jitter: JitterSettings | None = None,
                 rng: random.Random | None = None, ntp_offset: float = 0.0) -> None:
        self.rng = rng or random.Random()
        self.cname = cname
        self.jitter_settings = jitter or JitterSettings()
        self.sender = RtpSender(params.pt, ssrc=self.rng.getrandbits(32), seq=self.rng.getrandbits(16),
                                ts=self.rng.getrandbits(32))
        # ntp_offset turns the owner's clock into Unix time for SR timestamps (time.time() - loop.time())
        self.rtcp = RtcpSession(self.sender.ssrc, cname, rng=self.rng, ntp_offset=ntp_offset)
        self.rfc4733 = Rfc4733Receiver()
        self.jitter = self._new_jitter()
        self.params = params
        self._codec: G711Codec = codec_for(params.codec)  # type: ignore[assignment]
        self._decoders: dict[int, G711Codec] = {}
        self._dtmf_out: list[tuple[bytes, bool, int]] = []
        self._dtmf_ts = 0
        self._talkspurt = True
        self._sent_since_report = False
        self._pending: list[np.ndarray] = []
        self.configure(params)
        self.received = self.dropped_pt = self.cn_packets = self.dtmf_packets = 0
        self.key_down = False  # an RFC 4733 key press is in progress (barge-in before its end)

    def _new_jitter(self) -> JitterBuffer:
        s = self.jitter_settings
        return JitterBuffer(FRAME_SAMPLES, 8000, s.depth_ms, s.adaptive, s.min_depth_ms, s.max_depth_ms)

    def configure(self, params: StreamParams) -> None:
        """Apply a (re-)negotiation: codec, payload types, direction. The RTP clock continues."""
        codec = codec_for(params.codec)
        if codec is None:
            raise ValueError(f"cannot terminate codec {params.codec}")
        self.params = params
        self._codec = codec
        self.sender.pt = params.pt
        decoders = {params.pt: codec}
        for pt, name in (params.receive_pts or {}).items():
            other = codec_for(name)
            if other is not None:
                decoders[pt] = other
        self._decoders = decoders

    # ------------------------------------------------------------------ receive
    def receive_rtp(self, data: bytes, arrival: float) -> DtmfEvent | None:
        """One datagram from the peer. Audio goes to the jitter buffer; a finished key press comes back."""
        pkt = parse_rtp(data)
        self.received += 1
        if pkt.pt == self.params.te_pt:
            self.dtmf_packets += 1
            self.rtcp.on_rtp_received(pkt.ssrc, pkt.seq, pkt.ts, arrival)
            event = self.rfc4733.feed(pkt.payload, pkt.ts, pkt.marker)
            self.key_down = self.rfc4733.active_digit is not None
            return event
        codec = self._decoders.get(pkt.pt)
        if codec is None:
            if pkt.pt == CN_PT:
                self.cn_packets += 1
            else:
                self.dropped_pt += 1
            return None
        self.rtcp.on_rtp_received(pkt.ssrc, pkt.seq, pkt.ts, arrival)
        if pkt.payload:
            self.jitter.push(pkt.seq, pkt.ts, pkt.ssrc, pkt.marker, codec.decode(pkt.payload), arrival)
        return None

    def receive_rtcp(self, data: bytes, now: float) -> None:
        self.rtcp.on_rtcp(data, now)

    def pop(self, now: float) -> Frame:
        """The next 20 ms of what the peer said (concealed or silent where nothing usable arrived)."""
        return self.jitter.pop(now)

    # ------------------------------------------------------------------ send
    def send_frame(self, pcm: np.ndarray) -> bytes | None:
        """RTP for 20 ms of our audio; while a DTMF event is being sent it replaces the audio."""
        if self._dtmf_out:
            return self._next_dtmf_packet()
        if not self.params.sending:
            self.sender.advance(FRAME_SAMPLES)
            return None
        frames = self.params.ptime // 20
        if frames > 1:  # a=ptime:40/60: gather whole frames into one packet
            self._pending.append(pcm)
            if len(self._pending) < frames:
                return None
            pcm = np.concatenate(self._pending)
            self._pending = []
        marker = self._talkspurt
        self._talkspurt = False
        self._sent_since_report = True
        return self.sender.packet(self._codec.encode(pcm), len(pcm), marker)

    def queue_dtmf(self, digit: str, duration_ms: int = 100) -> None:
        """Send a key press as RFC 4733 events (ValueError without a negotiated telephone-event)."""
        if self.params.te_pt is None:
            raise ValueError("the peer did not negotiate telephone-event")
        if self._pending:  # audio gathered for a longer ptime is dropped, its time passes under the event
            self.sender.advance(FRAME_SAMPLES * len(self._pending))
            self._pending = []
        self._dtmf_out.extend(Rfc4733Sender().events(digit, duration_ms, ptime_ms=20))

    @property
    def sending_dtmf(self) -> bool:
        return bool(self._dtmf_out)

    def _next_dtmf_packet(self) -> bytes | None:
        payload, marker, _duration = self._dtmf_out.pop(0)
        if marker:
            self._dtmf_ts = self.sender.last_ts
        end = bool(payload[1] & 0x80)
        data = None
        if self.params.sending:
            data = self.sender.packet(payload, 0, marker, pt=self.params.te_pt, ts_override=self._dtmf_ts)
            self._sent_since_report = True
        if end and (not self._dtmf_out or self._dtmf_out[0][1]):
            self._talkspurt = True
        self.sender.advance(FRAME_SAMPLES)  # the audio clock keeps running under the event
        return data

    # ------------------------------------------------------------------ RTCP
    def rtcp_due(self, now: float) -> bytes | None:
        if now < self.rtcp.next_report_due(now):
            return None
        sending = self._sent_since_report
        self._sent_since_report = False
        self.rtcp.on_rtp_sent(self.sender.packets_sent, self.sender.octets_sent, self.sender.last_ts)
        return self.rtcp.report(now, sending)

    def rtcp_bye(self, now: float) -> bytes:
        self.rtcp.on_rtp_sent(self.sender.packets_sent, self.sender.octets_sent, self.sender.last_ts)
        return self.rtcp.bye(now)

    def stats(self) -> dict:
        self.rtcp.on_rtp_sent(self.sender.packets_sent, self.sender.octets_sent, self.sender.last_ts)
        return {**self.rtcp.stats(), "codec": self.params.codec, "dtmf_packets": self.dtmf_packets,
                "cn_packets": self.cn_packets, "dropped_payload_type": self.dropped_pt,
                "jitter_buffer": self.jitter.stats()}

"""RTP (RFC 3550) packets, the sending clock and the receiver statistics behind RTCP reports.

Sans-IO: bytes and times in, bytes and numbers out. Everything here runs per packet (500+ calls a
core, 50 packets/s each way), so parsing is one precompiled ``struct`` unpack plus slicing, and the
per-packet bookkeeping is plain integer arithmetic on ``__slots__`` objects.
"""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass

from .rtcp import ReportBlock

MAX_PAYLOAD = 1500  # more than any voice frame, and more than fits an Ethernet MTU: someone's garbage

# RFC 3550 Appendix A.1 tuning.
MAX_DROPOUT = 3000   # a forward jump larger than this is suspect (about a minute at 50 packets/s)
MAX_MISORDER = 100   # a backward step up to this is a late packet, beyond it a restart
MIN_SEQUENTIAL = 2   # sequential packets needed before a new source is believed

_SEQ_MOD = 1 << 16
_HEADER = struct.Struct("!BBHII")
_EXT_HEADER = struct.Struct("!HH")
_CSRC = tuple(struct.Struct(f"!{n}I") for n in range(16))
_DUP_WINDOW_MASK = (1 << 128) - 1  # MAX_MISORDER < 128: every acceptable late packet has a bit


class RtpError(ValueError):
    """A datagram that is not a usable RTP packet; the caller counts and drops it."""


@dataclass(slots=True)
class RtpPacket:
    pt: int
    seq: int
    ts: int
    ssrc: int
    marker: bool
    payload: bytes
    csrcs: tuple[int, ...] = ()
    extension: tuple[int, bytes] | None = None  # (profile-defined 16 bits, extension body)


def parse_rtp(data: bytes) -> RtpPacket:
    """Decode one RTP datagram, rejecting anything a receiver should not act on.

    RTCP that lands on the RTP port (a peer muxing without negotiating it, or a port mix-up) is
    recognised by its packet type in the second octet: RFC 5761 §4 reserves 192-223 there (RTP
    payload types 64-95 with the marker bit) so the two can be told apart.
    """
    n = len(data)
    if n < 12:
        raise RtpError("short packet")
    b0, b1, seq, ts, ssrc = _HEADER.unpack_from(data)
    if b0 & 0xC0 != 0x80:
        raise RtpError("not version 2")
    if 192 <= b1 <= 223:
        raise RtpError("rtcp on rtp port")
    offset = 12
    csrcs: tuple[int, ...] = ()
    cc = b0 & 0x0F
    if cc:
        offset += 4 * cc
        if offset > n:
            raise RtpError("csrc list past the end")
        csrcs = _CSRC[cc].unpack_from(data, 12)
    extension = None
    if b0 & 0x10:
        if offset + 4 > n:
            raise RtpError("header extension past the end")
        profile, words = _EXT_HEADER.unpack_from(data, offset)
        start = offset + 4
        offset = start + 4 * words
        if offset > n:
            raise RtpError("header extension past the end")
        extension = (profile, bytes(data[start:offset]))
    end = n
    if b0 & 0x20:
        pad = data[n - 1]  # the count includes itself, so 0 is impossible
        if pad == 0 or pad > n - offset:
            raise RtpError("bad padding")
        end -= pad
    if end - offset > MAX_PAYLOAD:
        raise RtpError("absurd payload size")
    return RtpPacket(b1 & 0x7F, seq, ts, ssrc, b1 > 0x7F, data[offset:end], csrcs, extension)


def build_rtp(pt: int, seq: int, ts: int, ssrc: int, payload: bytes, marker: bool = False) -> bytes:
    """A plain RTP packet (no CSRC, extension or padding). seq/ts/ssrc wrap to their field sizes."""
    if not 0 <= pt <= 127:
        raise ValueError(f"payload type {pt} out of range")  # it would silently set the marker
    return _HEADER.pack(0x80, pt | 0x80 if marker else pt, seq & 0xFFFF, ts & 0xFFFFFFFF,
                        ssrc & 0xFFFFFFFF) + payload


class RtpSender:
    """Numbering and timing of one outgoing RTP stream.

    ``ts`` is the sending clock: the timestamp the next packet carries. ``packet()`` moves it on by
    the samples the packet holds and ``advance()`` by time that passed without a packet (silence
    suppression, hold), so the receiver sees media time, not packet count (RFC 3550 §5.1).
    """

    __slots__ = ("pt", "ssrc", "seq", "ts", "packets_sent", "octets_sent")

    def __init__(self, pt: int, ssrc: int | None = None, seq: int | None = None, ts: int | None = None) -> None:
        # Random starts (RFC 3550 §5.1) make known-plaintext attacks on SRTP harder and keep a
        # restarted sender from looking like a continuation of its old stream.
        self.pt = pt
        self.ssrc = secrets.randbits(32) if ssrc is None else ssrc & 0xFFFFFFFF
        self.seq = secrets.randbits(16) if seq is None else seq & 0xFFFF
        self.ts = secrets.randbits(32) if ts is None else ts & 0xFFFFFFFF
        self.packets_sent = 0
        self.octets_sent = 0  # payload octets only: what an SR's sender octet count wants

    def packet(self, payload: bytes, samples: int, marker: bool = False, pt: int | None = None,
               ts_override: int | None = None) -> bytes:
        """The next packet, then seq += 1 and ts += samples.

        ``ts_override`` stamps this packet with another timestamp while the clock still moves by
        ``samples``: RFC 4733 sends every packet of one event (and its end retransmissions) with
        the event's start time, so the caller passes that start as the override and ``samples=0``
        (advancing the clock with ``advance()`` as the audio time under the event passes).
        """
        seq = self.seq
        data = _HEADER.pack(0x80, (self.pt if pt is None else pt) | (0x80 if marker else 0), seq,
                            self.ts if ts_override is None else ts_override & 0xFFFFFFFF, self.ssrc) + payload
        self.seq = (seq + 1) & 0xFFFF
        self.ts = (self.ts + samples) & 0xFFFFFFFF
        self.packets_sent += 1
        self.octets_sent += len(payload)
        return data

    def advance(self, samples: int) -> None:
        """Let media time pass without sending (a gap the receiver sees in the timestamps)."""
        self.ts = (self.ts + samples) & 0xFFFFFFFF

    @property
    def last_ts(self) -> int:
        """Where the RTP clock stands now (same as ``ts``): the start of an RFC 4733 event begun
        now, and the RTP time that goes with "now" in an SR. The previous packet's timestamp
        would be a frame (or a whole pause) in the past."""
        return self.ts


class ReceiverStats:
    """One remote source as seen by us: RFC 3550 A.1 sequence validation, A.3 loss, A.8 jitter.

    ``update()`` returns False for packets A.1 says not to trust yet (probation of a new source, a
    big jump until the next packet confirms a restart). ``received`` counts duplicates too, as the
    RFC does, so ``lost`` can go negative; ``duplicates`` says how many were seen (within the last
    128 sequence numbers). After a confirmed restart (resync) the RFC counters start over; the
    ``carried_*`` fields keep what came before for call totals.
    """

    __slots__ = ("ssrc", "clock_rate", "max_seq", "cycles", "base_seq", "bad_seq", "probation",
                 "_received", "expected_prior", "received_prior", "_valid", "_started", "_jitter",
                 "_last_arrival", "_last_ts", "_window", "duplicates", "carried_received",
                 "carried_expected")

    def __init__(self, ssrc: int = 0, clock_rate: int = 8000) -> None:
        self.clock_rate = clock_rate
        self.reset(ssrc)

    def reset(self, ssrc: int) -> None:
        """Forget everything: a new source starts on probation."""
        self.ssrc = ssrc
        self.max_seq = self.cycles = self.base_seq = 0
        self.bad_seq = _SEQ_MOD + 1  # can never equal a 16-bit seq
        self.probation = MIN_SEQUENTIAL
        self._received = self.expected_prior = self.received_prior = 0
        self._valid = self._started = False
        self._jitter = 0.0
        self._last_arrival: float | None = None
        self._last_ts = 0
        self._window = 0
        self.duplicates = self.carried_received = self.carried_expected = 0

    def _init_seq(self, seq: int) -> None:
        if self._valid:  # a restart of a source we counted: keep its numbers for the call totals
            self.carried_received += self._received
            self.carried_expected += self.expected
        self.base_seq = self.max_seq = seq
        self.bad_seq = _SEQ_MOD + 1
        self.cycles = 0
        self._received = self.expected_prior = self.received_prior = 0
        self._window = 1  # bit k set: max_seq - k was received
        self._last_arrival = None  # transit of the old numbering says nothing about the new
        self._valid = True

    def update(self, seq: int, ts: int, arrival: float) -> bool:
        """Account one packet (``arrival`` in seconds, any clock that is steady for this stream)."""
        if not self._started:
            self._started = True
            self.max_seq = (seq - 1) & 0xFFFF
            self.probation = MIN_SEQUENTIAL
        udelta = (seq - self.max_seq) & 0xFFFF
        if self.probation:
            # Only a run of MIN_SEQUENTIAL consecutive packets makes a source valid.
            if udelta == 1:
                self.probation -= 1
                self.max_seq = seq
                if self.probation == 0:
                    self._init_seq(seq)
                    self._received = 1
                    self._jitter_update(ts, arrival)
                    return True
            else:
                self.probation = MIN_SEQUENTIAL - 1
                self.max_seq = seq
            return False
        if udelta < MAX_DROPOUT:
            if seq < self.max_seq:
                self.cycles += _SEQ_MOD  # wrapped
            self.max_seq = seq
            if udelta:
                self._window = ((self._window << udelta) | 1) & _DUP_WINDOW_MASK
            else:
                self.duplicates += 1
        elif udelta <= _SEQ_MOD - MAX_MISORDER:
            # A big jump: either garbage or the sender restarted its numbering. Two packets in
            # sequence across the jump mean a restart; resync as if the source were new.
            if seq != self.bad_seq:
                self.bad_seq = (seq + 1) & 0xFFFF
                return False
            self._init_seq(seq)
        else:  # late (reordered) or duplicate, within MAX_MISORDER behind the highest
            bit = 1 << (_SEQ_MOD - udelta)
            if self._window & bit:
                self.duplicates += 1
            else:
                self._window |= bit
        self._received += 1
        self._jitter_update(ts, arrival)
        return True

    def _jitter_update(self, ts: int, arrival: float) -> None:
        # A.8: D is the change in transit time (arrival - ts) between consecutive packets, in
        # timestamp units; J moves 1/16 of the way to |D|. Using differences keeps the 32-bit
        # timestamp wrap and the arrival clock's epoch out of the arithmetic.
        last = self._last_arrival
        if last is not None:
            dts = ((ts - self._last_ts + 0x80000000) & 0xFFFFFFFF) - 0x80000000
            d = (arrival - last) * self.clock_rate - dts
            if d < 0:
                d = -d
            self._jitter += (d - self._jitter) / 16.0
        self._last_arrival = arrival
        self._last_ts = ts

    @property
    def valid(self) -> bool:
        """True once the source passed probation."""
        return self._valid

    @property
    def received(self) -> int:
        return self._received

    @property
    def extended_max_seq(self) -> int:
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        return self.cycles + self.max_seq - self.base_seq + 1 if self._valid else 0

    @property
    def lost(self) -> int:
        """Cumulative (RFC 3550 A.3): negative when duplicates outnumber losses."""
        return self.expected - self._received

    @property
    def jitter(self) -> float:
        """Interarrival jitter in timestamp units (the report block carries its integer part)."""
        return self._jitter

    @property
    def jitter_ms(self) -> float:
        return self._jitter * 1000.0 / self.clock_rate

    def fraction_lost_interval(self) -> int:
        """Loss since the last report block, 8-bit fixed point (A.3), without closing the interval."""
        expected_interval = self.expected - self.expected_prior
        lost_interval = expected_interval - (self._received - self.received_prior)
        if expected_interval <= 0 or lost_interval <= 0:
            return 0
        return min(255, (lost_interval << 8) // expected_interval)

    def make_report_block(self, ssrc_of_source: int, lsr: int, dlsr: int) -> ReportBlock:
        """The RFC 3550 §6.4.1 block about this source; starts the next fraction-lost interval."""
        fraction = self.fraction_lost_interval()
        self.expected_prior = self.expected
        self.received_prior = self._received
        lost = max(-0x800000, min(0x7FFFFF, self.lost))  # signed 24-bit on the wire
        return ReportBlock(ssrc_of_source & 0xFFFFFFFF, fraction, lost, self.extended_max_seq & 0xFFFFFFFF,
                           int(self._jitter) & 0xFFFFFFFF, lsr & 0xFFFFFFFF, dlsr & 0xFFFFFFFF)

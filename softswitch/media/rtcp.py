"""RTCP (RFC 3550 §6): packet parsing and building, NTP time, and a sans-IO session per stream.

A compound RTCP packet is just the concatenation of ``build_*`` results, but RFC 3550 §6.1 says
what a valid one holds: it MUST start with an SR or RR (an empty RR if there is nothing to
report) and MUST carry an SDES with our CNAME; a BYE goes last. ``RtcpSession.report()`` and
``bye()`` build exactly that. ``parse_rtcp`` is more lenient than §6.1 (it accepts any order and
reduced-size RTCP) because a peer's odd but readable packet still tells us something.

Everything from the wire is untrusted: ``parse_rtcp`` raises only ``RtcpError``, whatever it is
fed, so the caller can count and drop garbage with one ``except``.
"""

from __future__ import annotations

import math
import random
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence, Union

if TYPE_CHECKING:  # rtp.py imports ReportBlock from here; the session imports ReceiverStats lazily
    from .rtp import ReceiverStats

SR, RR, SDES, BYE, APP = 200, 201, 202, 203, 204
CNAME = 1  # SDES item type

NTP_UNIX_OFFSET = 2208988800  # seconds from 1900-01-01 (NTP era 0) to 1970-01-01
MIN_INTERVAL = 5.0            # RFC 3550 §6.2 minimum report interval, seconds
MAX_SOURCES = 4               # remote SSRCs a session tracks at once (a call has one, rarely two)

_HDR = struct.Struct("!BBH")
_U32 = struct.Struct("!I")
_U32S = tuple(struct.Struct(f"!{n}I") for n in range(32))  # BYE SSRC lists (the count is 5 bits)
_SENDER_INFO = struct.Struct("!IQIII")  # SSRC, NTP, RTP ts, packet count, octet count
_BLOCK = struct.Struct("!IIIIII")       # SSRC, fraction<<24 | lost, highest seq, jitter, LSR, DLSR
_M32 = 0xFFFFFFFF


class RtcpError(ValueError):
    """Not a usable RTCP packet; the caller counts and drops it."""


@dataclass(slots=True)
class ReportBlock:
    ssrc: int
    fraction_lost: int     # 0-255: loss in the last interval, 8-bit fixed point
    cumulative_lost: int   # signed 24-bit
    highest_seq: int       # extended (cycles << 16 | seq)
    jitter: int            # timestamp units
    lsr: int               # middle 32 bits of the last SR's NTP time, 0 if none
    dlsr: int              # delay since that SR, 1/65536 s


@dataclass(slots=True)
class SenderReport:
    ssrc: int
    ntp: int               # 64-bit NTP timestamp
    rtp_ts: int
    packet_count: int
    octet_count: int
    reports: list[ReportBlock] = field(default_factory=list)


@dataclass(slots=True)
class ReceiverReport:
    ssrc: int
    reports: list[ReportBlock] = field(default_factory=list)


@dataclass(slots=True)
class Sdes:
    chunks: list[tuple[int, str]]  # (SSRC, CNAME); "" for a chunk without one


@dataclass(slots=True)
class Bye:
    ssrcs: list[int]
    reason: str | None = None


@dataclass(slots=True)
class UnknownRtcp:
    """A packet type we do not interpret (APP, XR, feedback...): skipped, not an error."""
    pt: int
    data: bytes  # the whole packet, header included, so subtype/count are not lost


RtcpPacket = Union[SenderReport, ReceiverReport, Sdes, Bye, UnknownRtcp]


# ------------------------------------------------------------------ NTP time

def ntp_from_unix(t: float) -> int:
    """64-bit NTP timestamp (32.32 fixed point since 1900) for a Unix time; wraps with the era."""
    secs = math.floor(t)
    frac = int((t - secs) * 4294967296.0)
    return (((secs + NTP_UNIX_OFFSET) & _M32) << 32) | (frac & _M32)


def ntp_middle32(ntp: int) -> int:
    """The 16.16 middle of an NTP timestamp: what LSR echoes and RTT is computed in."""
    return (ntp >> 16) & _M32


def ntp32_from_unix(t: float) -> int:
    return ntp_middle32(ntp_from_unix(t))


# ------------------------------------------------------------------ parsing

def parse_rtcp(data: bytes) -> list[RtcpPacket]:
    """Every packet of a compound RTCP datagram, in order."""
    n = len(data)
    if n < 8:
        raise RtcpError("short packet")
    out: list[RtcpPacket] = []
    offset = 0
    while offset < n:
        if n - offset < 4:
            raise RtcpError("truncated header")
        b0, pt, words = _HDR.unpack_from(data, offset)
        if b0 & 0xC0 != 0x80:
            raise RtcpError("not version 2")
        if not 192 <= pt <= 223:  # RFC 5761 §4: anything else is RTP (or noise)
            raise RtcpError("not rtcp")
        start = offset + 4
        end = start + 4 * words
        if end > n:
            raise RtcpError("length past the end")
        body_end = end
        if b0 & 0x20:
            pad = data[end - 1] if words else 0
            if pad == 0 or pad > 4 * words:
                raise RtcpError("bad padding")
            body_end -= pad
        count = b0 & 0x1F
        if pt == SR:
            out.append(_parse_sr(data, start, body_end, count))
        elif pt == RR:
            out.append(_parse_rr(data, start, body_end, count))
        elif pt == SDES:
            out.append(_parse_sdes(data, start, body_end, count))
        elif pt == BYE:
            out.append(_parse_bye(data, start, body_end, count))
        else:
            out.append(UnknownRtcp(pt, bytes(data[offset:end])))
        offset = end
    return out


def _blocks(data: bytes, pos: int, count: int) -> list[ReportBlock]:
    blocks = []
    for _ in range(count):
        ssrc, word, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(data, pos)
        lost = word & 0xFFFFFF
        if lost & 0x800000:
            lost -= 0x1000000
        blocks.append(ReportBlock(ssrc, word >> 24, lost, highest, jitter, lsr, dlsr))
        pos += 24
    return blocks


def _parse_sr(data: bytes, start: int, end: int, count: int) -> SenderReport:
    if end - start < 24 + 24 * count:  # more is allowed: profile-specific extensions
        raise RtcpError("report count inconsistent with length")
    ssrc, ntp, rtp_ts, packets, octets = _SENDER_INFO.unpack_from(data, start)
    return SenderReport(ssrc, ntp, rtp_ts, packets, octets, _blocks(data, start + 24, count))


def _parse_rr(data: bytes, start: int, end: int, count: int) -> ReceiverReport:
    if end - start < 4 + 24 * count:
        raise RtcpError("report count inconsistent with length")
    return ReceiverReport(_U32.unpack_from(data, start)[0], _blocks(data, start + 4, count))


def _parse_sdes(data: bytes, start: int, end: int, count: int) -> Sdes:
    chunks = []
    pos = start
    for _ in range(count):
        if pos + 4 > end:
            raise RtcpError("sdes chunk overruns")
        ssrc = _U32.unpack_from(data, pos)[0]
        pos += 4
        cname = None
        while True:
            if pos >= end:
                raise RtcpError("sdes chunk overruns")
            item = data[pos]
            if item == 0:  # end of items; null padding to the next 32-bit boundary
                pos = start + ((pos + 1 - start + 3) & ~3)
                if pos > end:
                    raise RtcpError("sdes chunk overruns")
                break
            if pos + 2 > end or pos + 2 + data[pos + 1] > end:
                raise RtcpError("sdes item overruns")
            length = data[pos + 1]
            if item == CNAME and cname is None:
                cname = bytes(data[pos + 2:pos + 2 + length]).decode("utf-8", "replace")
            pos += 2 + length
        chunks.append((ssrc, cname or ""))
    return Sdes(chunks)


def _parse_bye(data: bytes, start: int, end: int, count: int) -> Bye:
    pos = start + 4 * count
    if pos > end:
        raise RtcpError("bye count inconsistent with length")
    ssrcs = list(_U32S[count].unpack_from(data, start))
    reason = None
    if pos < end:
        length = data[pos]
        if pos + 1 + length > end:
            raise RtcpError("bye reason overruns")
        reason = bytes(data[pos + 1:pos + 1 + length]).decode("utf-8", "replace")
    return Bye(ssrcs, reason)


# ------------------------------------------------------------------ building

def _header(count: int, pt: int, body: bytes) -> bytes:
    return _HDR.pack(0x80 | count, pt, len(body) // 4)  # length: 32-bit words minus one


def _pack_blocks(reports: Sequence[ReportBlock]) -> bytes:
    if len(reports) > 31:
        raise ValueError("at most 31 report blocks fit one SR/RR")
    return b"".join(
        _BLOCK.pack(r.ssrc & _M32,
                    (max(0, min(255, r.fraction_lost)) << 24)
                    | (max(-0x800000, min(0x7FFFFF, r.cumulative_lost)) & 0xFFFFFF),
                    r.highest_seq & _M32, r.jitter & _M32, r.lsr & _M32, r.dlsr & _M32)
        for r in reports)


def build_sr(ssrc: int, ntp: int, rtp_ts: int, packet_count: int, octet_count: int,
             reports: Sequence[ReportBlock] = ()) -> bytes:
    body = _SENDER_INFO.pack(ssrc & _M32, ntp & 0xFFFFFFFFFFFFFFFF, rtp_ts & _M32, packet_count & _M32,
                             octet_count & _M32) + _pack_blocks(reports)
    return _header(len(reports), SR, body) + body


def build_rr(ssrc: int, reports: Sequence[ReportBlock] = ()) -> bytes:
    body = _U32.pack(ssrc & _M32) + _pack_blocks(reports)
    return _header(len(reports), RR, body) + body


def build_sdes(ssrc: int, cname: str) -> bytes:
    """One chunk with a CNAME item, null-terminated and padded to 32 bits (RFC 3550 §6.5)."""
    text = cname.encode("utf-8")
    if len(text) > 255:
        raise ValueError("cname longer than 255 octets")
    chunk = _U32.pack(ssrc & _M32) + bytes((CNAME, len(text))) + text
    chunk += b"\x00" * (4 - len(chunk) % 4)  # at least one null: the end-of-items marker
    return _header(1, SDES, chunk) + chunk


def build_bye(ssrc: int, reason: str | None = None) -> bytes:
    body = _U32.pack(ssrc & _M32)
    if reason is not None:
        text = reason.encode("utf-8")[:255]
        body += bytes((len(text),)) + text
        body += b"\x00" * (-len(body) % 4)
    return _header(1, BYE, body) + body


# ------------------------------------------------------------------ session

class RtcpSession:
    """The RTCP side of one media stream: what we tell the peer and what it tells us.

    The owner feeds it (``on_rtp_sent`` with the sender's counters before a report,
    ``on_rtp_received`` per packet, ``on_rtcp`` per datagram) and asks ``next_report_due`` /
    ``report`` when to send and what. Times are seconds on the owner's clock; ``ntp_offset`` is
    added to them to get Unix time for the NTP fields (pass ``time.time() - loop.time()`` for a
    true wallclock; RTT and DLSR only need the clock to be steady, which it is either way).
    """

    def __init__(self, ssrc: int, cname: str, clock_rate: int = 8000, *, rng: random.Random | None = None,
                 ntp_offset: float = 0.0, min_interval: float = MIN_INTERVAL) -> None:
        self.ssrc = ssrc & _M32
        self.cname = cname
        self.clock_rate = clock_rate
        self.ntp_offset = ntp_offset
        self.min_interval = min_interval
        self._rng = rng if rng is not None else random.Random()  # own instance: no global state
        self._sdes = build_sdes(self.ssrc, cname)
        # receiving
        self.receiver: ReceiverStats | None = None  # the source the last RTP packet came from
        self._sources: dict[int, ReceiverStats] = {}
        self._heard: set[int] = set()                 # sources heard since the last report
        self._evicted_received = self._evicted_expected = 0
        self._sr_seen: dict[int, tuple[int, float]] = {}  # remote SSRC -> (LSR, when its SR arrived)
        # sending
        self.packets_sent = self.octets_sent = 0
        self._rtp_ts = 0
        self._rtp_ts_at: float | None = None
        self._packets_at_report = 0
        self._our_lsrs: list[int] = []  # middle 32 bits of our recent SRs: what a peer may echo
        # what the peer says about our stream
        self.rtt_ms: float | None = None
        self.remote_fraction_lost: float | None = None
        self.remote_packets_lost: int | None = None
        self.remote_jitter_ms: float | None = None
        self.remote_bye = False
        self.rtcp_received = self.rtcp_sent = 0
        self._next_due: float | None = None

    # -------------------------------------------------------------- inputs
    def on_rtp_sent(self, packets_sent: int, octets_sent: int, last_rtp_ts: int, at: float | None = None) -> None:
        """The sender's counters and RTP clock. With ``at`` (the time ``last_rtp_ts`` belongs to)
        an SR's RTP timestamp is extrapolated to the report time, as §6.4.1 wants; without it
        ``last_rtp_ts`` is taken to be "now" (``RtpSender.last_ts`` is, for a clocked sender)."""
        self.packets_sent = packets_sent
        self.octets_sent = octets_sent
        self._rtp_ts = last_rtp_ts & _M32
        self._rtp_ts_at = at

    def on_rtp_received(self, ssrc: int, seq: int, ts: int, arrival: float) -> bool:
        """Account one RTP packet; False when RFC 3550 A.1 says not to trust it (yet)."""
        stats = self.receiver
        if stats is None or stats.ssrc != ssrc:
            stats = self._source(ssrc)
        self._heard.add(ssrc)
        return stats.update(seq, ts, arrival)

    def _source(self, ssrc: int) -> ReceiverStats:
        stats = self._sources.get(ssrc)
        if stats is None:
            from .rtp import ReceiverStats  # rtp.py imports this module at load time
            if len(self._sources) >= MAX_SOURCES:  # a peer cycling SSRCs must not grow memory
                old = self._sources.pop(next(iter(self._sources)))
                self._evicted_received += old.received + old.carried_received
                self._evicted_expected += old.expected + old.carried_expected
                self._heard.discard(old.ssrc)
            stats = self._sources[ssrc] = ReceiverStats(ssrc, self.clock_rate)
        self.receiver = stats
        return stats

    def on_rtcp(self, data: bytes, now: float) -> list[RtcpPacket]:
        """Take in a compound packet from the peer (RtcpError on garbage); returns what it held."""
        packets = parse_rtcp(data)
        self.rtcp_received += 1
        for packet in packets:
            if isinstance(packet, SenderReport):
                if packet.ssrc != self.ssrc:
                    seen = self._sr_seen
                    seen.pop(packet.ssrc, None)
                    seen[packet.ssrc] = (ntp_middle32(packet.ntp), now)
                    if len(seen) > MAX_SOURCES:
                        del seen[next(iter(seen))]
                self._on_blocks(packet.reports, now)
            elif isinstance(packet, ReceiverReport):
                self._on_blocks(packet.reports, now)
            elif isinstance(packet, Bye):
                if any(s != self.ssrc for s in packet.ssrcs):
                    self.remote_bye = True
        return packets

    def _on_blocks(self, blocks: list[ReportBlock], now: float) -> None:
        for block in blocks:
            if block.ssrc != self.ssrc:
                continue  # about someone else (a conference, or our SSRC before a change)
            self.remote_fraction_lost = block.fraction_lost / 256.0
            self.remote_packets_lost = block.cumulative_lost
            self.remote_jitter_ms = block.jitter * 1000.0 / self.clock_rate
            # RTT (§6.4.1): A - LSR - DLSR. LSR 0 means the peer has no SR of ours yet, and an
            # LSR we never sent is a confused peer whose arithmetic would only add noise.
            if block.lsr and block.lsr in self._our_lsrs:
                rtt = (ntp32_from_unix(now + self.ntp_offset) - block.lsr - block.dlsr) & _M32
                if rtt >= 0x80000000:
                    rtt -= 0x100000000
                if rtt >= -66:  # up to 1 ms below zero is the rounding of DLSR: call it 0
                    self.rtt_ms = max(0, rtt) * 1000.0 / 65536.0

    # -------------------------------------------------------------- reports
    def _interval(self, initial: bool) -> float:
        # §6.2/§6.3: with two members and voice bandwidths the bandwidth-derived interval is far
        # under the 5 s minimum, so the minimum is the interval; halved for the first report,
        # and randomised over [0.5, 1.5] so that endpoints started together do not synchronise.
        base = self.min_interval / 2 if initial else self.min_interval
        return base * self._rng.uniform(0.5, 1.5)

    def next_report_due(self, now: float) -> float:
        """When the next report is due (the first call starts the schedule at ``now``)."""
        if self._next_due is None:
            self._next_due = now + self._interval(initial=True)
        return self._next_due

    def report(self, now: float, sending: bool | None = None) -> bytes:
        """A compound SR-or-RR + SDES CNAME, and the next one scheduled.

        SR when we sent RTP since the last report (``sending``, or when None, whether the sent
        packet count moved), else RR. Report blocks cover sources heard since the last report.
        """
        if sending is None:
            sending = self.packets_sent != self._packets_at_report
        blocks = []
        for ssrc in self._heard:
            stats = self._sources.get(ssrc)
            if stats is None or not stats.valid:
                continue
            lsr, at = self._sr_seen.get(ssrc, (0, now))
            dlsr = int(max(0.0, now - at) * 65536) if lsr else 0
            blocks.append(stats.make_report_block(ssrc, lsr, dlsr))
            if len(blocks) == 31:
                break
        self._heard.clear()
        if sending:
            ntp = ntp_from_unix(now + self.ntp_offset)
            rtp_ts = self._rtp_ts
            if self._rtp_ts_at is not None:
                rtp_ts = (rtp_ts + round((now - self._rtp_ts_at) * self.clock_rate)) & _M32
            head = build_sr(self.ssrc, ntp, rtp_ts, self.packets_sent, self.octets_sent, blocks)
            self._our_lsrs.append(ntp_middle32(ntp))
            del self._our_lsrs[:-8]
        else:
            head = build_rr(self.ssrc, blocks)
        self._packets_at_report = self.packets_sent
        self._next_due = now + self._interval(initial=False)
        self.rtcp_sent += 1
        return head + self._sdes

    def bye(self, now: float, reason: str | None = None, sending: bool | None = None) -> bytes:
        """The last word: SR/RR + SDES + BYE in one compound packet (BYE last, §6.1)."""
        return self.report(now, sending) + build_bye(self.ssrc, reason)

    # -------------------------------------------------------------- CDR
    def stats(self) -> dict:
        """Totals for the CDR. ``fraction_lost`` is over the whole call (ours), the ``remote_*``
        values are the peer's last report about our stream (its interval, its view)."""
        sources = list(self._sources.values())
        received = self._evicted_received + sum(s.received + s.carried_received for s in sources)
        expected = self._evicted_expected + sum(s.expected + s.carried_expected for s in sources)
        lost = max(0, expected - received)
        main = max(sources, key=lambda s: s.received, default=None)
        return {
            "packets_sent": self.packets_sent,
            "octets_sent": self.octets_sent,
            "packets_received": received,
            "packets_lost": lost,
            "fraction_lost": round(lost / expected, 4) if expected else 0.0,
            "jitter_ms": round(main.jitter_ms, 2) if main is not None else 0.0,
            "rtt_ms": None if self.rtt_ms is None else round(self.rtt_ms, 2),
            "remote_fraction_lost": (None if self.remote_fraction_lost is None
                                     else round(self.remote_fraction_lost, 4)),
            "remote_packets_lost": self.remote_packets_lost,
            "remote_jitter_ms": None if self.remote_jitter_ms is None else round(self.remote_jitter_ms, 2),
            "rtcp_received": self.rtcp_received,
            "rtcp_sent": self.rtcp_sent,
        }

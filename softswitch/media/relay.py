"""RTP/RTCP relay for media anchoring in the B2BUA (asyncio).

Each side of a call owns an RTP socket and the RTCP socket one port above. What side a's peer sends
to a's sockets goes out of b's sockets to b's peer, and back. A side *latches* to the source of the
first plausible packet (symmetric RTP: behind NAT it differs from the SDP address); afterwards other
sources are dropped and counted (RTP-bleed protection). `datagram_received` is the hot path
(DESIGN.md §4: ~5 µs/packet with uvloop): no parsing, no allocation beyond the counters.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from time import monotonic as _monotonic
from collections.abc import Callable
from typing import Any

from ..sdp import StreamParams
from .clock import MediaClock
from .ports import PortAllocator, bind_pair
from .rtcp import RtcpError, SenderReport, parse_rtcp
from .stream import RtpStream
from .tap import Tap, TapFrame, TapPoint

_RTP_MIN = 12  # fixed RTP header (RFC 3550 §5.1)
_RTCP_MIN = 8  # RTCP header + SSRC (RFC 3550 §6.4)
Address = tuple[Any, ...]  # (host, port) or (host, port, flowinfo, scope_id), as the socket reports it


def _format(addr: Address | None) -> str | None:
    if addr is None:
        return None
    host = f"[{addr[0]}]" if ":" in addr[0] else addr[0]
    return f"{host}:{addr[1]}"


class _Endpoint(asyncio.DatagramProtocol):
    """One socket of a side. ``peer`` is the endpoint whose socket faces the other party (itself for echo)."""

    __slots__ = ("transport", "peer", "on_lost", "min_len", "remote", "hold", "latched", "dest", "feed", "transform",
                 "record", "record_id", "packets_in", "bytes_in", "packets_out", "bytes_out",
                 "dropped_source", "dropped_malformed", "dropped_unroutable")

    def __init__(self, min_len: int) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.peer: _Endpoint = self
        self.on_lost: Callable[[], None] | None = None
        self.min_len = min_len
        self.remote: Address | None = None  # from the SDP
        self.hold = False
        self.latched: Address | None = None
        self.dest: Address | None = None  # where packets for this endpoint's party go; None = nowhere
        self.feed: Callable[[bytes], None] | None = None  # a tap's decoder, or RTCP report parsing
        self.transform: Callable[[bytes], bytes] | None = None  # transcoding between the legs' codecs
        self.record: list[tuple[int, float, bytes]] | None = None  # a recorder's intake: (record_id, arrival, packet)
        self.record_id = 0
        self.packets_in = self.bytes_in = self.packets_out = self.bytes_out = 0
        self.dropped_source = self.dropped_malformed = self.dropped_unroutable = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.on_lost is not None:
            self.on_lost()

    def datagram_received(self, data: bytes, addr: Address) -> None:
        try:
            if addr != self.latched:
                if self.latched is not None:
                    self.dropped_source += 1
                    return
                if len(data) < self.min_len or data[0] >> 6 != 2:
                    self.dropped_malformed += 1
                    return
                self.latched = addr
                self._route()
            self.packets_in += 1
            self.bytes_in += len(data)
            if self.feed is not None:
                self.feed(data)
            if self.record is not None:
                self.record.append((self.record_id, _monotonic(), data))
            if self.transform is not None:
                data = self.transform(data)
            peer = self.peer
            if peer.dest is None:
                self.dropped_unroutable += 1
                return
            peer.transport.sendto(data, peer.dest)  # type: ignore[union-attr]
            peer.packets_out += 1
            peer.bytes_out += len(data)
        except Exception:  # noqa: BLE001 - a bad packet must never break the loop's reader
            self.dropped_malformed += 1

    def set_remote(self, addr: Address, hold: bool) -> None:
        if self.remote is not None and addr != self.remote:
            self.latched = None  # re-INVITE moved the media: let the new source latch
        self.remote, self.hold = addr, hold
        self._route()

    def _route(self) -> None:
        self.dest = None if self.hold else self.latched or self.remote

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def stats(self) -> dict[str, int | str | None]:
        return {
            "packets_in": self.packets_in, "bytes_in": self.bytes_in,
            "packets_out": self.packets_out, "bytes_out": self.bytes_out,
            "dropped_source": self.dropped_source, "dropped_malformed": self.dropped_malformed,
            "dropped_unroutable": self.dropped_unroutable, "latched_to": _format(self.latched),
        }


class RelaySide:
    """The relay's face towards one party: an RTP socket on ``local_port`` and RTCP on ``local_port + 1``."""

    def __init__(self, local_port: int, family: socket.AddressFamily, rtp: _Endpoint, rtcp: _Endpoint,
                 release: Callable[[int], None], now: Callable[[], float]) -> None:
        self.local_port = local_port
        self._now = now
        self.reports = RelayReports(now)
        rtcp.feed = self.reports.feed
        self._family = family
        self._rtp, self._rtcp = rtp, rtcp
        self._release = release
        self._open = 2
        self._closed = False
        rtp.on_lost = rtcp.on_lost = self._lost

    @property
    def latched_to(self) -> str | None:
        return _format(self._rtp.latched)

    def set_remote(self, host: str, port: int, rtcp_port: int | None = None) -> None:
        """Where the party's SDP says to send (until it latches). Port 0 or 0.0.0.0 = hold: send nothing.

        ``host`` must be an IP literal of the relay's family: resolving names is the caller's job,
        and a bad address must fail here, not in the packet path.
        """
        ip = ipaddress.ip_address(host)
        if (ip.version == 6) != (self._family == socket.AF_INET6):
            raise ValueError(f"{host} is not reachable from a relay bound to IPv{4 if ip.version == 6 else 6}")
        hold = port == 0 or ip.is_unspecified
        self._rtp.set_remote((ip.compressed, port), hold)
        self._rtcp.set_remote((ip.compressed, port + 1 if rtcp_port is None else rtcp_port), hold)

    def stats(self) -> dict:
        """RTP counters, and the same for RTCP under "rtcp" (JSON-friendly), with the party's own
        RTCP reports (loss and jitter of what it receives from us, RTT between us and it)."""
        return {**self._rtp.stats(), "rtcp": {**self._rtcp.stats(), **self.reports.stats()}}

    def transcode(self, pt_map: dict[int, tuple[int, bytes | None]] | None) -> None:
        """Rewrite what this side's party sends before it reaches the other party:
        payload type ``pt`` becomes ``pt_map[pt][0]``, its payload translated through ``pt_map[pt][1]``."""
        self._rtp.transform = transcoder(pt_map) if pt_map else None

    def _decode_to(self, stream: RtpStream | None) -> None:
        if stream is None:
            self._rtp.feed = None
            return

        def feed(data: bytes, stream: RtpStream = stream, loop_time: Callable[[], float] = self._now) -> None:
            try:
                stream.receive_rtp(data, loop_time())
            except Exception:  # noqa: BLE001 - a tap must never cost the relayed packet
                pass
        self._rtp.feed = feed

    def _link(self, other: RelaySide) -> None:
        self._rtp.peer, self._rtcp.peer = other._rtp, other._rtcp
        self.reports.peer = other.reports

    def close(self) -> None:
        """Close both sockets; the port returns to the allocator once they are really closed."""
        if not self._closed:
            self._closed = True
            self._rtp.close()
            self._rtcp.close()

    def _lost(self) -> None:
        self._open -= 1
        if self._open == 0:
            self._release(self.local_port)


class RelayCall:
    """Two linked sides: ``a`` faces the caller's leg, ``b`` the callee's.

    Packets are forwarded untouched (or transcoded by byte translation) on the hot path; a recording
    only appends each one to the recorder's intake (``record``). Taps are the exception: while one is attached, each side's packets are also decoded into a jitter buffer
    and the media clock draws one frame per side per tick, so both directions share one timeline.
    """

    def __init__(self, a: RelaySide, b: RelaySide, on_close: Callable[[RelayCall], None],
                 clock: MediaClock | None = None) -> None:
        self.a, self.b = a, b
        self._on_close = on_close
        self._clock = clock
        a._link(b)
        b._link(a)
        self.tap_points: dict[str, TapPoint] = {}
        self._streams: dict[str, RtpStream] = {}
        self._index = 0

    def tap(self, leg: str = "a", maxsize: int = 500, wake_batch: int = 1) -> Tap:
        """Frames of the call as ``leg``'s party has it: "rx" what it says, "tx" what it hears."""
        if leg not in ("a", "b"):
            raise ValueError(f"no leg {leg!r} (a or b)")
        if self._clock is None:
            raise RuntimeError("this relay has no media clock to tap with")
        if not self._streams:
            for name, side in (("a", self.a), ("b", self.b)):
                params = StreamParams("0.0.0.0", 0, 0, "PCMU", 0, None, 20, "recvonly",
                                      {0: "PCMU", 8: "PCMA"})
                self._streams[name] = RtpStream(params, "tap")
                side._decode_to(self._streams[name])
            self._clock.add(self)
        point = self.tap_points.setdefault(leg, TapPoint())
        return point.attach(maxsize, wake_batch)

    def record(self, intake: list[tuple[int, float, bytes]], said: int, heard: int, leg: str = "a") -> None:
        """Hand every RTP packet to a recorder's intake as it is relayed, untouched: what ``leg``'s party sends
        as stream ``said``, what the other party sends (what ``leg``'s party hears) as ``heard``."""
        if leg not in ("a", "b"):
            raise ValueError(f"no leg {leg!r} (a or b)")
        mine, other = (self.a, self.b) if leg == "a" else (self.b, self.a)
        mine._rtp.record, mine._rtp.record_id = intake, said
        other._rtp.record, other._rtp.record_id = intake, heard

    def unrecord(self) -> None:
        self.a._rtp.record = self.b._rtp.record = None

    def tick(self, now: float) -> None:
        index = self._index
        self._index += 1
        fa, fb = self._streams["a"].pop(now), self._streams["b"].pop(now)
        for leg, point in self.tap_points.items():
            if not point.taps:
                continue
            said, heard = (fa, fb) if leg == "a" else (fb, fa)
            point.publish(TapFrame("rx", index, said.rtp_ts, said.pcm, said.kind),
                          TapFrame("tx", index, heard.rtp_ts, heard.pcm, heard.kind))

    def skip(self, frames: int, now: float) -> None:
        """The clock skipped ticks: the taps' jitter buffers drop that much audio too, and the frame index
        moves on, so a subscriber (the recorder) sees the gap and keeps its timeline whole."""
        self._index += frames
        for stream in self._streams.values():
            stream.jitter.catch_up(frames)

    def stats(self) -> dict:
        return {"a": self.a.stats(), "b": self.b.stats()}

    def close(self) -> None:
        if self._clock is not None:
            self._clock.remove(self)
        for point in self.tap_points.values():
            point.close()
        self.a.close()
        self.b.close()
        self._on_close(self)


class RelayEcho:
    """One side whose received RTP/RTCP goes back to the latched source (the echo service)."""

    def __init__(self, side: RelaySide, on_close: Callable[[RelayEcho], None]) -> None:
        self.side = side
        self._on_close = on_close

    def stats(self) -> dict:
        return self.side.stats()

    def close(self) -> None:
        self.side.close()
        self._on_close(self)


class MediaRelay:
    """Creates relays on ``ip`` with ports from ``allocator``; owns them until they (or it) close."""

    def __init__(self, loop: asyncio.AbstractEventLoop, ip: str, allocator: PortAllocator,
                 clock: MediaClock | None = None) -> None:
        self._loop = loop
        self._clock = clock
        self.ip = ip
        self._allocator = allocator
        self._family = socket.AF_INET6 if ipaddress.ip_address(ip).version == 6 else socket.AF_INET
        self._live: set[RelayCall | RelayEcho] = set()

    async def create_call(self) -> RelayCall:
        a = await self.side()
        try:
            b = await self.side()
        except BaseException:
            a.close()
            raise
        call = RelayCall(a, b, self._live.discard, self._clock)
        self._live.add(call)
        return call

    async def create_echo(self) -> RelayEcho:
        echo = RelayEcho(await self.side(), self._live.discard)
        self._live.add(echo)
        return echo

    def close(self) -> None:
        for relay in list(self._live):
            relay.close()

    def join(self, session: Any, b: RelaySide) -> RelayCall:
        """Bridge a terminated session's party to ``b``: the session's sockets become side a.

        The caller keeps sending to the same address and port, so an IVR call is handed to a person
        without a re-INVITE; from now on its packets are forwarded, not decoded.
        """
        transports, latched, params = session.hand_over()
        rtp, rtcp = _Endpoint(_RTP_MIN), _Endpoint(_RTCP_MIN)
        for endpoint, transport, addr in zip((rtp, rtcp), transports, latched):
            transport.set_protocol(endpoint)
            endpoint.transport = transport
            endpoint.latched = addr
        a = RelaySide(session.local_port, self._family, rtp, rtcp, self._allocator.release, self._loop.time)
        if params is not None:
            a.set_remote(params.remote_host, params.remote_port if params.sending else 0, params.remote_rtcp_port)
        call = RelayCall(a, b, self._live.discard, self._clock)
        self._live.add(call)
        return call

    async def side(self) -> RelaySide:
        """One side (RTP + RTCP socket pair); alone, it is the callee-facing half that ``join`` completes."""
        port, socks = bind_pair(self.ip, self._family, self._allocator)
        rtp, rtcp = _Endpoint(_RTP_MIN), _Endpoint(_RTCP_MIN)
        try:
            for endpoint, sock in zip((rtp, rtcp), socks):
                await self._loop.create_datagram_endpoint(lambda e=endpoint: e, sock=sock)
        except BaseException:
            for endpoint, sock in zip((rtp, rtcp), socks):
                if endpoint.transport is not None:
                    endpoint.close()
                else:
                    sock.close()
            self._allocator.release(port)
            raise
        return RelaySide(port, self._family, rtp, rtcp, self._allocator.release, self._loop.time)


def transcoder(pt_map: dict[int, tuple[int, bytes | None]]) -> Callable[[bytes], bytes]:
    """A packet rewriter for the relay: new payload type, payload through a 256-byte table.

    G.711 μ-law <-> A-law is a byte-to-byte mapping, so transcoding costs one ``bytes.translate``
    and keeps sequence numbers, timestamps and SSRC intact. Padding is stripped (it would be
    translated otherwise); types not in the map pass unchanged.
    """
    def transform(data: bytes) -> bytes:
        b0, b1 = data[0], data[1]
        entry = pt_map.get(b1 & 0x7F)
        if entry is None:
            return data
        new_pt, table = entry
        header = 12 + 4 * (b0 & 0x0F)
        if b0 & 0x10 and len(data) >= header + 4:
            header += 4 + 4 * int.from_bytes(data[header + 2:header + 4], "big")
        end = len(data) - (data[-1] if b0 & 0x20 else 0)
        if header > end:
            return data  # malformed: the receiver will drop it
        payload = data[header:end]
        if table is not None:
            payload = payload.translate(table)
        return bytes((b0 & 0xDF, (b1 & 0x80) | new_pt)) + data[2:header] + payload
    return transform


class RelayReports:
    """What a party's own RTCP says about the media it receives (RFC 3550 §6.4), parsed in passing.

    It also gives the round trip between the relay and the party: the party's report block echoes
    the last SR it received (LSR, forwarded by us from the other side, arrival noted in ``peer``)
    and how long it held it (DLSR); RTT = now - when we forwarded that SR - DLSR.
    """

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self.peer: RelayReports | None = None
        self.forwarded_sr: dict[int, float] = {}  # LSR (middle 32 bits of the SR's NTP) -> when we saw it
        self.reports = self.garbage = 0
        self.fraction_lost: float | None = None
        self.packets_lost: int | None = None
        self.jitter_ms: float | None = None
        self.rtt_ms: float | None = None

    def feed(self, data: bytes) -> None:
        try:
            packets = parse_rtcp(data)
        except (RtcpError, ValueError):
            self.garbage += 1
            return
        now = self._now()
        for packet in packets:
            if isinstance(packet, SenderReport) and self.peer is not None:
                forwarded = self.peer.forwarded_sr
                forwarded[(packet.ntp >> 16) & 0xFFFFFFFF] = now
                if len(forwarded) > 16:
                    del forwarded[next(iter(forwarded))]
            blocks = getattr(packet, "reports", None)
            if not blocks:
                continue
            self.reports += 1
            block = blocks[0]
            self.fraction_lost = round(block.fraction_lost / 256, 4)
            self.packets_lost = block.cumulative_lost
            self.jitter_ms = round(block.jitter / 8.0, 2)  # G.711 timestamp units (8 kHz) -> ms
            sent = self.forwarded_sr.get(block.lsr)
            if block.lsr and sent is not None:
                self.rtt_ms = round(max(0.0, (now - sent) * 1000 - block.dlsr / 65.536), 2)

    def stats(self) -> dict:
        return {"reports": self.reports, "garbage": self.garbage, "party_fraction_lost": self.fraction_lost,
                "party_packets_lost": self.packets_lost, "party_jitter_ms": self.jitter_ms,
                "rtt_ms": self.rtt_ms}

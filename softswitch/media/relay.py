"""RTP/RTCP relay for media anchoring in the B2BUA (asyncio).

Each side of a call owns an RTP socket and the RTCP socket one port above. What side a's peer sends
to a's sockets goes out of b's sockets to b's peer, and back. A side *latches* to the source of the
first plausible packet (symmetric RTP: behind NAT it differs from the SDP address); afterwards other
sources are dropped and counted (RTP-bleed protection). `datagram_received` is the hot path
(DESIGN.md §4: ~5 µs/packet with uvloop): no parsing, no allocation beyond the counters.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
from collections.abc import Callable
from typing import Any

from .ports import PortAllocator, PortsExhausted

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

    __slots__ = ("transport", "peer", "on_lost", "min_len", "remote", "hold", "latched", "dest",
                 "packets_in", "bytes_in", "packets_out", "bytes_out",
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
                 release: Callable[[int], None]) -> None:
        self.local_port = local_port
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
        """RTP counters, and the same for RTCP under "rtcp" (JSON-friendly)."""
        return {**self._rtp.stats(), "rtcp": self._rtcp.stats()}

    def _link(self, other: RelaySide) -> None:
        self._rtp.peer, self._rtcp.peer = other._rtp, other._rtcp

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
    """Two linked sides: ``a`` faces the caller's leg, ``b`` the callee's."""

    def __init__(self, a: RelaySide, b: RelaySide, on_close: Callable[[RelayCall], None]) -> None:
        self.a, self.b = a, b
        self._on_close = on_close
        a._link(b)
        b._link(a)

    def stats(self) -> dict:
        return {"a": self.a.stats(), "b": self.b.stats()}

    def close(self) -> None:
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

    def __init__(self, loop: asyncio.AbstractEventLoop, ip: str, allocator: PortAllocator) -> None:
        self._loop = loop
        self.ip = ip
        self._allocator = allocator
        self._family = socket.AF_INET6 if ipaddress.ip_address(ip).version == 6 else socket.AF_INET
        self._live: set[RelayCall | RelayEcho] = set()

    async def create_call(self) -> RelayCall:
        a = await self._side()
        try:
            b = await self._side()
        except BaseException:
            a.close()
            raise
        call = RelayCall(a, b, self._live.discard)
        self._live.add(call)
        return call

    async def create_echo(self) -> RelayEcho:
        echo = RelayEcho(await self._side(), self._live.discard)
        self._live.add(echo)
        return echo

    def close(self) -> None:
        for relay in list(self._live):
            relay.close()

    async def _side(self) -> RelaySide:
        port, socks = self._bind()
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
        return RelaySide(port, self._family, rtp, rtcp, self._allocator.release)

    def _bind(self) -> tuple[int, list[socket.socket]]:
        """Bind an RTP/RTCP socket pair; ports another process holds are skipped (EADDRINUSE)."""
        for _ in range(self._allocator.capacity):
            port = self._allocator.allocate()
            socks: list[socket.socket] = []
            try:
                for p in (port, port + 1):
                    socks.append(socket.socket(self._family, socket.SOCK_DGRAM))
                    socks[-1].setblocking(False)
                    socks[-1].bind((self.ip, p))
                return port, socks
            except OSError as exc:
                for sock in socks:
                    sock.close()
                self._allocator.release(port)
                if exc.errno != errno.EADDRINUSE:
                    raise
        raise PortsExhausted(f"every free RTP port pair on {self.ip} is bound by another process")

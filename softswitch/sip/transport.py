"""asyncio SIP transports: UDP and TCP listeners, outgoing TCP connections.

The only job here is moving bytes: datagrams and framed stream messages go up to ``on_message``
as ``(bytes, Addr)``; ``send(data, Addr)`` goes down. TLS will be one more ``Listener`` kind
with the same two calls (``ssl=`` on the TCP server/connection).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass
from typing import Callable

from .addr import Addr
from .framing import PING, FramingError, StreamFramer

log = logging.getLogger("softswitch.sip.transport")

OnMessage = Callable[[bytes, Addr], None]
OnError = Callable[[Addr, Exception], None]


@dataclass
class Listener:
    transport: str
    host: str
    port: int
    server: object  # asyncio transport (UDP) or Server (TCP)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, owner: "Transports", host: str) -> None:
        self.owner = owner
        self.host = host
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:  # type: ignore[override]
        self.owner.on_message(data, Addr("udp", addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        log.debug("udp error: %s", exc)


class _Stream(asyncio.Protocol):
    """One TCP connection, inbound or outbound; frames by Content-Length."""

    def __init__(self, owner: "Transports", remote: Addr | None = None) -> None:
        self.owner = owner
        self.framer = StreamFramer(owner.max_size)
        self.transport: asyncio.Transport | None = None
        self.remote = remote
        self.pending: list[bytes] = []

    def connection_made(self, transport) -> None:  # type: ignore[override]
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.remote = Addr("tcp", peer[0], peer[1])
        self.owner.connections[(self.remote.host, self.remote.port)] = self
        for data in self.pending:
            transport.write(data)
        self.pending.clear()

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.framer.feed(data)
        except FramingError as exc:
            log.warning("closing tcp %s: %s", self.remote, exc)
            self.owner.counters["framing_errors"] += 1
            if self.transport:
                self.transport.close()
            return
        for frame in frames:
            if frame is PING:
                if self.transport:
                    self.transport.write(b"\r\n")  # RFC 5626 pong
            else:
                self.owner.on_message(frame, self.remote)  # type: ignore[arg-type]

    def connection_lost(self, exc) -> None:  # type: ignore[override]
        if self.remote is not None:
            key = (self.remote.host, self.remote.port)
            if self.owner.connections.get(key) is self:
                del self.owner.connections[key]


class Transports:
    """All sockets of one SIP stack."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_message: OnMessage, on_error: OnError,
                 max_size: int = 65535) -> None:
        self.loop = loop
        self.on_message = on_message
        self.on_error = on_error
        self.max_size = max_size
        self.listeners: list[Listener] = []
        self.connections: dict[tuple[str, int], _Stream] = {}
        self.counters = {"framing_errors": 0, "oversize": 0}
        self._udp: dict[int, _Udp] = {}  # address family -> protocol used for sending

    async def listen(self, transport: str, host: str, port: int) -> Listener:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        if transport == "udp":
            dgram, proto = await self.loop.create_datagram_endpoint(
                lambda: _Udp(self, host), local_addr=(host, port), family=family)
            sock = dgram.get_extra_info("socket")
            for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, opt, 4 * 1024 * 1024)
                except OSError:
                    pass
            self._udp.setdefault(family, proto)
            server: object = dgram
        elif transport == "tcp":
            server = await self.loop.create_server(lambda: _Stream(self), host, port, family=family,
                                                   reuse_address=True)
        else:
            raise ValueError(f"unsupported transport {transport!r}")
        listener = Listener(transport, host, port, server)
        self.listeners.append(listener)
        return listener

    def local(self, transport: str) -> Listener:
        """The listener whose address goes into Via/Contact for this transport."""
        for listener in self.listeners:
            if listener.transport == transport:
                return listener
        return self.listeners[0]

    def send(self, data: bytes, dest: Addr) -> None:
        if dest.transport == "udp":
            family = socket.AF_INET6 if ":" in dest.host else socket.AF_INET
            proto = self._udp.get(family)
            if proto is None or proto.transport is None:
                self.on_error(dest, OSError("no UDP listener for this address family"))
                return
            proto.transport.sendto(data, (dest.host, dest.port))
            return
        conn = self.connections.get((dest.host, dest.port))
        if conn is not None:
            if conn.transport is not None:
                conn.transport.write(data)
            else:
                conn.pending.append(data)
            return
        conn = _Stream(self, dest)
        conn.pending.append(data)
        self.connections[(dest.host, dest.port)] = conn
        self.loop.create_task(self._connect(conn, dest))

    async def _connect(self, conn: _Stream, dest: Addr) -> None:
        try:
            await self.loop.create_connection(lambda: conn, dest.host, dest.port)
        except OSError as exc:
            if self.connections.get((dest.host, dest.port)) is conn:
                del self.connections[(dest.host, dest.port)]
            self.on_error(dest, exc)

    def close(self) -> None:
        for listener in self.listeners:
            listener.server.close()  # type: ignore[attr-defined]
        for conn in list(self.connections.values()):
            if conn.transport is not None:
                conn.transport.close()

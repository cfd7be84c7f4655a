"""RTP port allocation: even ports for RTP, the odd one above for RTCP (RFC 3550 §11)."""

from __future__ import annotations

import errno
import socket


class PortsExhausted(RuntimeError):
    """Every RTP port pair of the configured range is in use."""


class PortAllocator:
    """Hands out even RTP ports round-robin over [port_min, port_max].

    Round-robin rather than lowest-free: a port just released is the last to be handed out again,
    so late packets of the previous call (and RTP-bleed probes aimed at it) hit nobody.
    """

    def __init__(self, port_min: int, port_max: int) -> None:
        first = port_min + port_min % 2
        last = port_max - 1 - (port_max - 1) % 2  # highest even port whose RTCP port fits
        if not 0 < first <= last < 65535:
            raise ValueError(f"RTP port range {port_min}-{port_max} holds no even/odd port pair")
        self.port_min, self.port_max = port_min, port_max
        self._first, self._last = first, last
        self._next = first
        self._in_use: set[int] = set()

    @property
    def capacity(self) -> int:
        """How many RTP/RTCP pairs the range holds."""
        return (self._last - self._first) // 2 + 1

    @property
    def in_use(self) -> int:
        return len(self._in_use)

    def allocate(self) -> int:
        for _ in range(self.capacity):
            port = self._next
            self._next = port + 2 if port < self._last else self._first
            if port not in self._in_use:
                self._in_use.add(port)
                return port
        raise PortsExhausted(
            f"no free RTP port in {self.port_min}-{self.port_max}: all {self.capacity} pairs in use"
        )

    def release(self, port: int) -> None:
        if port not in self._in_use:
            raise ValueError(f"RTP port {port} is not allocated")
        self._in_use.remove(port)


def bind_pair(ip: str, family: socket.AddressFamily, allocator: PortAllocator) -> tuple[int, list[socket.socket]]:
    """Bind an RTP/RTCP socket pair; ports another process holds are skipped (EADDRINUSE)."""
    for _ in range(allocator.capacity):
        port = allocator.allocate()
        socks: list[socket.socket] = []
        try:
            for p in (port, port + 1):
                socks.append(socket.socket(family, socket.SOCK_DGRAM))
                socks[-1].setblocking(False)
                socks[-1].bind((ip, p))
            return port, socks
        except OSError as exc:
            for sock in socks:
                sock.close()
            allocator.release(port)
            if exc.errno != errno.EADDRINUSE:
                raise
    raise PortsExhausted(f"every free RTP port pair on {ip} is bound by another process")

"""Loopback port picking and "is it up yet" probes for end-to-end tests.

Real peers (SIPp, baresip, pyVoIP, the softswitch) are separate processes that bind
their own sockets, so a test can only pick ports that are free *now* and hope nobody
takes them before the child binds. Two tools keep that hope well-founded:

* the module-level ``free_*`` functions ask the kernel for an ephemeral port
  (bind to port 0): fine for a single port;
* :class:`PortAllocator` hands out ports and contiguous ranges from a region *below*
  the kernel's ephemeral range (so the kernel never gives them to anybody else) and
  remembers what it handed out, so two peers in one test session never share a port.
  Make one per session (a fixture), never a module global.
"""

from __future__ import annotations

import os
import random
import socket
import time
import uuid
from pathlib import Path

LOOPBACK = "127.0.0.1"

# Kernel default ephemeral range is 32768-60999; stay well below it.
_ALLOC_LOW = 20000
_ALLOC_HIGH = 32000


def _bind_probe(host: str, port: int, kind: int) -> socket.socket | None:
    """Bind (host, port) for the given socket kind; None if taken. Caller closes."""
    sock = socket.socket(socket.AF_INET, kind)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        return None
    return sock


def _ports_free(host: str, ports: range | list[int], udp: bool = True, tcp: bool = True) -> bool:
    """True if every port is bindable now (UDP and/or TCP); sockets closed on return."""
    held: list[socket.socket] = []
    try:
        for port in ports:
            for kind, wanted in ((socket.SOCK_DGRAM, udp), (socket.SOCK_STREAM, tcp)):
                if not wanted:
                    continue
                sock = _bind_probe(host, port, kind)
                if sock is None:
                    return False
                held.append(sock)
        return True
    finally:
        for sock in held:
            sock.close()


def free_udp_port(host: str = LOOPBACK) -> int:
    """A UDP port the kernel considers free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def free_tcp_port(host: str = LOOPBACK) -> int:
    """A TCP port the kernel considers free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def free_port_pair(host: str = LOOPBACK, even: bool = False, attempts: int = 200) -> tuple[int, int]:
    """Two consecutive ports ``(p, p+1)`` free for both UDP and TCP.

    Why: baresip binds SIP on ``p`` (UDP+TCP) and TLS on ``p+1``; RTP wants an even
    port with RTCP on the next one (``even=True``).
    """
    for _ in range(attempts):
        base = free_udp_port(host)
        if even and base % 2:
            base += 1
        if base + 1 > 65535:
            continue
        if _ports_free(host, [base, base + 1]):
            return base, base + 1
    raise RuntimeError(f"no free {'even ' if even else ''}port pair on {host} after {attempts} attempts")


def free_even_port_pair(host: str = LOOPBACK) -> tuple[int, int]:
    """An RTP/RTCP style pair: even port and the next one, both free."""
    return free_port_pair(host, even=True)


class PortAllocator:
    """Distinct free loopback ports for one test session.

    Scans ``[low, high)`` from a per-process random start (so parallel pytest workers
    rarely meet), skips anything already handed out by this allocator and checks each
    candidate by binding it (UDP and TCP).
    """

    def __init__(self, host: str = LOOPBACK, low: int = _ALLOC_LOW, high: int = _ALLOC_HIGH,
                 seed: int | None = None) -> None:
        if not 1024 <= low < high <= 65536:
            raise ValueError(f"bad port region {low}-{high}")
        self.host = host
        self.low = low
        self.high = high
        rng = random.Random(os.getpid() if seed is None else seed)
        self._cursor = rng.randrange(low, high)
        self._taken: set[int] = set()

    def block(self, count: int, *, even: bool = False, gap: int = 1) -> int:
        """Base of ``count`` consecutive free ports; ``gap`` extra ports after it stay unused.

        Why the gap: peers such as baresip silently bind ``port+1``; a gap keeps the
        next block handed out from landing there.
        """
        span = count + gap
        size = self.high - self.low
        start = self._cursor - self.low
        for offset in range(size):
            base = self.low + (start + offset) % size
            if base + span > self.high or (even and base % 2):
                continue
            wanted = range(base, base + span)
            if any(p in self._taken for p in wanted):
                continue
            if _ports_free(self.host, wanted):
                self._taken.update(wanted)
                self._cursor = base + span if base + span < self.high else self.low
                return base
        raise RuntimeError(f"PortAllocator: no {count} free ports in {self.low}-{self.high} on {self.host}")

    def port(self) -> int:
        """One free port (UDP and TCP), with its neighbour kept unused."""
        return self.block(1)

    def pair(self, even: bool = False) -> tuple[int, int]:
        """``(p, p+1)`` both free; ``even=True`` for RTP/RTCP."""
        base = self.block(2, even=even)
        return base, base + 1

    def range(self, count: int) -> tuple[int, int]:
        """An inclusive ``(low, high)`` range of ``count`` ports starting even (RTP ranges)."""
        base = self.block(count, even=True)
        return base, base + count - 1


# --- readiness probes ---------------------------------------------------------------

def _proc_net_sockets(kinds: tuple[str, ...], listen_only: bool) -> list[tuple[int, int]]:
    """``(local port, socket inode)`` rows of /proc/net/<kind>; side-effect free."""
    rows: list[tuple[int, int]] = []
    for kind in kinds:
        try:
            lines = (Path("/proc/net") / kind).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10:
                continue
            if listen_only and fields[3] != "0A":  # TCP_LISTEN
                continue
            rows.append((int(fields[1].rsplit(":", 1)[1], 16), int(fields[9])))
    return rows


def _socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets process ``pid`` holds (empty if it is gone)."""
    inodes: set[int] = set()
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def udp_port_bound(port: int, pid: int | None = None) -> bool:
    """True if a UDP socket is bound to ``port`` (by process ``pid`` when given)."""
    inodes = [inode for p, inode in _proc_net_sockets(("udp", "udp6"), listen_only=False) if p == port]
    if pid is None:
        return bool(inodes)
    return bool(set(inodes) & _socket_inodes(pid))


def tcp_port_listening(port: int, pid: int | None = None) -> bool:
    """True if a TCP socket listens on ``port`` (in process ``pid`` when given)."""
    inodes = [inode for p, inode in _proc_net_sockets(("tcp", "tcp6"), listen_only=True) if p == port]
    if pid is None:
        return bool(inodes)
    return bool(set(inodes) & _socket_inodes(pid))


def wait_udp_bound(port: int, timeout: float = 5.0, pid: int | None = None, interval: float = 0.02) -> None:
    """Wait until UDP ``port`` is bound (by ``pid`` if given): readiness of e.g. a SIPp UAS,
    which does not answer OPTIONS."""
    deadline = time.monotonic() + timeout
    while not udp_port_bound(port, pid):
        if time.monotonic() >= deadline:
            owner = f" by pid {pid}" if pid is not None else ""
            raise TimeoutError(f"UDP port {port} not bound{owner} within {timeout:.1f}s")
        time.sleep(interval)


def options_request(host: str, port: int, local_port: int, call_id: str) -> bytes:
    """A minimal SIP OPTIONS datagram (why: any SIP server must answer it)."""
    branch = "z9hG4bK" + uuid.uuid4().hex[:16]
    return (
        f"OPTIONS sip:ping@{host}:{port} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {LOOPBACK}:{local_port};branch={branch};rport\r\n"
        f"Max-Forwards: 70\r\n"
        f"From: <sip:probe@{LOOPBACK}:{local_port}>;tag={uuid.uuid4().hex[:8]}\r\n"
        f"To: <sip:ping@{host}:{port}>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: 1 OPTIONS\r\n"
        f"Accept: application/sdp\r\n"
        f"Content-Length: 0\r\n\r\n"
    ).encode()


def wait_udp_sip(host: str, port: int, timeout: float = 5.0, interval: float = 0.2) -> str:
    """Send SIP OPTIONS until any SIP response comes back; return its status line.

    Why: a server is "up" when it answers SIP, not merely when its socket exists.
    Any status (200, 404, 405, 403…) counts. Raises TimeoutError otherwise.
    """
    deadline = time.monotonic() + timeout
    call_id = f"probe-{uuid.uuid4().hex}@{LOOPBACK}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        local_port = sock.getsockname()[1]
        request = options_request(host, port, local_port, call_id)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no SIP response from udp:{host}:{port} within {timeout:.1f}s")
            try:
                sock.sendto(request, (host, port))
            except OSError:
                pass
            sock.settimeout(min(interval, remaining))
            try:
                while True:
                    data, _ = sock.recvfrom(65535)
                    if data.startswith(b"SIP/2.0 ") and call_id.encode() in data:
                        return data.split(b"\r\n", 1)[0].decode(errors="replace")
            except TimeoutError:
                continue
            except OSError:
                # ICMP port unreachable surfaces as ConnectionRefusedError: not up yet.
                time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


def wait_tcp(host: str, port: int, timeout: float = 5.0, interval: float = 0.05) -> None:
    """Wait until a TCP connect to (host, port) succeeds."""
    deadline = time.monotonic() + timeout
    last_error: OSError | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=max(0.05, deadline - time.monotonic())):
                return
        except OSError as exc:
            last_error = exc
            time.sleep(interval)
    raise TimeoutError(f"tcp:{host}:{port} not accepting within {timeout:.1f}s (last error: {last_error})")

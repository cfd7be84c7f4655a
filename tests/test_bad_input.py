"""Acceptance 7: malformed datagrams and TCP streams get the right answer or are dropped; the switch
keeps serving (a normal call succeeds afterwards) and logs no traceback."""

from __future__ import annotations

import socket
import time
import uuid

from peers.netutil import free_udp_port
from peers.sipp import Sipp

from conftest import switch_config

PORT = 5060


def request(method: str = "OPTIONS", *, call_id: str | None = "auto", max_forwards: int | None = 70,
            version: str = "SIP/2.0", body: bytes = b"", content_length: int | None = None,
            uri: str = "sip:echo@127.0.0.1:5060", extra: str = "", lport: int = 5999,
            transport: str = "UDP", branch: str | None = None) -> bytes:
    branch = branch or "z9hG4bK" + uuid.uuid4().hex
    lines = [f"{method} {uri} {version}", f"Via: SIP/2.0/{transport} 127.0.0.1:{lport};branch={branch};rport",
             "From: <sip:tester@127.0.0.1>;tag=bad1", "To: <sip:echo@127.0.0.1>"]
    if call_id is not None:
        lines.append(f"Call-ID: {uuid.uuid4().hex if call_id == 'auto' else call_id}")
    lines.append(f"CSeq: 1 {method}")
    if max_forwards is not None:
        lines.append(f"Max-Forwards: {max_forwards}")
    if extra:
        lines.append(extra)
    lines.append(f"Content-Length: {len(body) if content_length is None else content_length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def status_of(data: bytes) -> int:
    first = data.split(b"\r\n", 1)[0].split()
    assert first[0] == b"SIP/2.0", data[:80]
    return int(first[1])


class UdpProbe:
    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]

    def ask(self, data: bytes, wait: float = 1.0) -> list[int]:
        """Send one datagram; the statuses of every response within `wait` (provisionals included)."""
        self.sock.sendto(data, ("127.0.0.1", PORT))
        self.sock.settimeout(wait)
        statuses = []
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                reply, _ = self.sock.recvfrom(65535)
            except socket.timeout:
                break
            statuses.append(status_of(reply))
            if statuses[-1] >= 200:
                break
        return statuses


def test_bad_datagrams_and_streams_then_a_call_succeeds(tmp_path, switch_factory):
    sw = switch_factory(switch_config(extra="") .replace("[sip]\n", "[sip]\nmax_message_bytes = 4096\n"))
    u = UdpProbe()
    p = u.port
    # answered with the right status
    assert u.ask(request(call_id=None, lport=p)) == [400]                    # missing Call-ID
    assert u.ask(request("FOO", lport=p)) == [501]                           # unknown method
    assert u.ask(request("INVITE", max_forwards=0, lport=p, call_id="mf0", branch="z9hG4bKmf0")) == [483]
    u.ask(request("ACK", lport=p, call_id="mf0", branch="z9hG4bKmf0"), wait=0.1)  # stops the 483 retransmissions
    assert u.ask(request(version="SIP/3.0", lport=p)) == [505]               # unsupported version
    assert u.ask(request(content_length=500, body=b"v=0\r\n", lport=p)) == [400]  # body shorter than CL
    assert u.ask(request(uri="im:alice@example.com", lport=p)) == [416]             # unsupported URI scheme
    assert u.ask(request(extra="Require: frobnicate", lport=p)) == [420]     # unknown extension
    assert u.ask(request(extra="CSeq: 2 OPTIONS", lport=p)) == [400]         # two CSeq headers
    assert u.ask(request("BYE", lport=p)) == [481]                           # BYE for no dialog
    assert u.ask(request(lport=p)[:60]) == [400]                             # truncated in the headers
    # dropped without an answer (nothing sensible to answer to), each logged once
    for junk in [b"\x00" * 100, b"hello world\r\n\r\n", bytes(range(256)) * 4, b"INVITE\r\n\r\n",
                 b"SIP/2.0 200 OK\r\nVia: nonsense\r\n\r\n", b"A" * 5000,
                 b"SIP/2.0 9999 Bad\r\n\r\n", request().replace(b"Via: SIP/2.0/UDP", b"Via: garbage")]:
        assert u.ask(junk, wait=0.3) == [], junk[:40]
    # the oversize datagram (over the 4096-byte cap) is dropped even though it parses
    assert u.ask(request(extra="X-Pad: " + "a" * 5000, lport=p), wait=0.3) == []

    # TCP: several messages in one segment, one message over three segments, then a bad stream
    with socket.create_connection(("127.0.0.1", PORT), timeout=2) as t:
        lport = t.getsockname()[1]
        t.sendall(request(lport=lport, transport="TCP") + request(lport=lport, transport="TCP"))
        got = _read_statuses(t, 2)
        assert got == [200, 200]
        whole = request(lport=lport, transport="TCP")
        for part in (whole[:10], whole[10:100], whole[100:]):
            t.sendall(part)
            time.sleep(0.05)
        assert _read_statuses(t, 1) == [200]
    with socket.create_connection(("127.0.0.1", PORT), timeout=2) as t:
        t.sendall(request().replace(b"Content-Length: 0", b"Content-Length: banana"))
        assert _closed(t), "a stream with an unusable Content-Length must be closed"
    with socket.create_connection(("127.0.0.1", PORT), timeout=2) as t:
        t.sendall(b"X" * 6000)  # no end of headers within the cap
        assert _closed(t)
    with socket.create_connection(("127.0.0.1", PORT), timeout=2) as t:
        t.sendall(request()[:50])  # a partial message, then the peer goes away

    # and the switch still serves calls
    assert sw.alive()
    callee = Sipp(tmp_path, "uas", local_port=5090, calls=3).start()
    Sipp(tmp_path, "uac", remote=f"127.0.0.1:{PORT}", local_port=free_udp_port(), service="9123",
         calls=3, rate=10).run().assert_success(3)
    callee.wait(20).assert_success(3)
    log = sw.log_path.read_text()
    assert "Traceback" not in log, sw.log_tail()
    assert "bad message" in log


def _read_statuses(t: socket.socket, n: int) -> list[int]:
    buf, statuses = b"", []
    deadline = time.monotonic() + 3
    while len(statuses) < n and time.monotonic() < deadline:
        buf += t.recv(65535)
        while b"\r\n\r\n" in buf:
            head, buf = buf.split(b"\r\n\r\n", 1)
            statuses.append(status_of(head))
    return statuses


def _closed(t: socket.socket) -> bool:
    t.settimeout(3)
    try:
        while True:
            data = t.recv(65535)
            if not data:
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False

"""RTP/RTCP relay over real UDP on 127.0.0.1: forwarding, latching, RTP-bleed drops, echo, ports."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import Awaitable, Callable

import pytest
import uvloop

from softswitch.media.ports import PortAllocator, PortsExhausted
from softswitch.media.relay import MediaRelay, RelayCall

LO = "127.0.0.1"
BASE = 41000 + os.getpid() % 400 * 20  # keep parallel runs apart; EADDRINUSE is retried anyway


def rtp(seq: int, payload: bytes = b"\xd5" * 160) -> bytes:
    return bytes([0x80, 0]) + seq.to_bytes(2, "big") + (seq * 160).to_bytes(4, "big") + b"\x12\x34\x56\x78" + payload


RTCP_RR = bytes([0x80, 201, 0, 1]) + b"\x12\x34\x56\x78"


class Peer:
    """A phone's media socket."""

    def __init__(self, host: str = LO) -> None:
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.bind((host, 0))
        self.addr: tuple[str, int] = self.sock.getsockname()[:2]

    def send(self, data: bytes, port: int) -> None:
        self.sock.sendto(data, (self.addr[0], port))

    async def recv(self) -> tuple[bytes, tuple[str, int]]:
        """Poll: uvloop has no sock_recvfrom."""
        async with asyncio.timeout(2):
            while True:
                try:
                    return self.sock.recvfrom(4096)
                except BlockingIOError:
                    await asyncio.sleep(0.001)


def run(test: Callable[..., Awaitable[None]], *args: object, fast: bool = False) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop if fast else None) as runner:
        runner.run(test(*args))


async def with_call(body: Callable[[RelayCall, Peer, Peer], Awaitable[None]]) -> None:
    relay = MediaRelay(asyncio.get_running_loop(), LO, PortAllocator(BASE, BASE + 19))
    call = await relay.create_call()
    alice, bob = Peer(), Peer()
    call.a.set_remote(*alice.addr)
    call.b.set_remote(*bob.addr)
    try:
        await body(call, alice, bob)
    finally:
        relay.close()


@pytest.mark.parametrize("fast", [False, True], ids=["asyncio", "uvloop"])
def test_relays_both_ways(fast: bool) -> None:
    async def body(call: RelayCall, alice: Peer, bob: Peer) -> None:
        for seq in range(5):
            alice.send(rtp(seq), call.a.local_port)
            assert await bob.recv() == (rtp(seq), (LO, call.b.local_port))
            bob.send(rtp(100 + seq, b"x" * 20), call.b.local_port)
            assert await alice.recv() == (rtp(100 + seq, b"x" * 20), (LO, call.a.local_port))
        stats = json.loads(json.dumps(call.stats()))
        assert {k: stats["a"][k] for k in ("packets_in", "bytes_in", "packets_out", "bytes_out")} == {
            "packets_in": 5, "bytes_in": 5 * 172, "packets_out": 5, "bytes_out": 5 * 32}
        assert stats["b"]["packets_in"] == 5 and stats["b"]["bytes_out"] == 5 * 172
        assert stats["a"]["latched_to"] == f"{LO}:{alice.addr[1]}"
        assert stats["a"]["dropped_source"] == stats["a"]["dropped_malformed"] == 0

    run(with_call, body, fast=fast)


def test_latches_to_nat_source_not_sdp_address() -> None:
    async def body(call: RelayCall, sdp_alice: Peer, bob: Peer) -> None:
        bob.send(rtp(1), call.b.local_port)  # alice has not spoken: goes to her SDP address
        assert (await sdp_alice.recv())[0] == rtp(1)
        natted = Peer()  # alice's real source, as her NAT maps it
        natted.send(rtp(2), call.a.local_port)
        assert (await bob.recv())[0] == rtp(2)
        assert call.a.latched_to == f"{LO}:{natted.addr[1]}"
        bob.send(rtp(3), call.b.local_port)
        assert (await natted.recv())[0] == rtp(3)

    run(with_call, body)


def test_rtp_bleed_is_dropped_and_counted() -> None:
    async def body(call: RelayCall, alice: Peer, bob: Peer) -> None:
        alice.send(rtp(1), call.a.local_port)
        assert (await bob.recv())[0] == rtp(1)
        attacker = Peer()
        attacker.send(rtp(666), call.a.local_port)
        alice.send(rtp(2), call.a.local_port)
        assert (await bob.recv())[0] == rtp(2)  # the injected packet, sent first, never arrived
        assert call.stats()["a"]["dropped_source"] == 1
        call.a.set_remote(*alice.addr)  # same address again (session refresh): still latched
        attacker.send(rtp(667), call.a.local_port)
        alice.send(rtp(3), call.a.local_port)
        assert (await bob.recv())[0] == rtp(3)
        assert call.stats()["a"]["dropped_source"] == 2

    run(with_call, body)


def test_relatches_after_remote_changes() -> None:
    async def body(call: RelayCall, alice: Peer, bob: Peer) -> None:
        alice.send(rtp(1), call.a.local_port)
        await bob.recv()
        moved = Peer()  # re-INVITE: alice's media now comes from elsewhere
        call.a.set_remote(*moved.addr)
        bob.send(rtp(2), call.b.local_port)
        assert (await moved.recv())[0] == rtp(2)
        moved.send(rtp(3), call.a.local_port)
        assert (await bob.recv())[0] == rtp(3)
        assert call.a.latched_to == f"{LO}:{moved.addr[1]}"
        alice.send(rtp(4), call.a.local_port)
        moved.send(rtp(5), call.a.local_port)
        assert (await bob.recv())[0] == rtp(5)

    run(with_call, body)


def test_rtcp_is_relayed_on_the_next_port() -> None:
    async def body(call: RelayCall, alice: Peer, bob: Peer) -> None:
        alice_rtcp, bob_rtcp = Peer(), Peer()
        call.a.set_remote(LO, alice.addr[1], alice_rtcp.addr[1])
        call.b.set_remote(LO, bob.addr[1], bob_rtcp.addr[1])
        alice_rtcp.send(RTCP_RR, call.a.local_port + 1)
        assert await bob_rtcp.recv() == (RTCP_RR, (LO, call.b.local_port + 1))
        bob_rtcp.send(RTCP_RR + b"more", call.b.local_port + 1)
        assert await alice_rtcp.recv() == (RTCP_RR + b"more", (LO, call.a.local_port + 1))
        stats = call.stats()
        assert stats["a"]["rtcp"]["packets_in"] == 1 and stats["a"]["packets_in"] == 0
        assert stats["b"]["rtcp"]["latched_to"] == f"{LO}:{bob_rtcp.addr[1]}"

    run(with_call, body)


def test_malformed_and_unroutable_packets_are_counted() -> None:
    async def body(call: RelayCall, alice: Peer, bob: Peer) -> None:
        for junk in (b"", b"\x80\x00\x00", b"\x00" * 40, b"GET / HTTP/1.0\r\n\r\n"):
            alice.send(junk, call.a.local_port)
        call.b.set_remote("0.0.0.0", 0)  # bob on hold: nothing goes to him
        alice.send(rtp(1), call.a.local_port)
        await asyncio.sleep(0.05)
        assert call.stats()["a"]["dropped_malformed"] == 4
        assert call.stats()["a"]["dropped_unroutable"] == 1
        assert call.a.latched_to == f"{LO}:{alice.addr[1]}"  # junk did not latch, RTP did
        call.b.set_remote(*bob.addr)
        alice.send(rtp(2), call.a.local_port)
        assert (await bob.recv())[0] == rtp(2)

    run(with_call, body)


def test_packets_before_the_other_side_is_known_are_dropped() -> None:
    async def body() -> None:
        relay = MediaRelay(asyncio.get_running_loop(), LO, PortAllocator(BASE, BASE + 19))
        call = await relay.create_call()
        alice, bob = Peer(), Peer()
        alice.send(rtp(1), call.a.local_port)  # bob's SDP answer has not arrived yet
        await asyncio.sleep(0.05)
        assert call.stats()["a"]["dropped_unroutable"] == 1
        call.b.set_remote(*bob.addr)
        alice.send(rtp(2), call.a.local_port)
        assert (await bob.recv())[0] == rtp(2)
        relay.close()

    run(body)


@pytest.mark.parametrize("fast", [False, True], ids=["asyncio", "uvloop"])
def test_echo_returns_packets_to_sender(fast: bool) -> None:
    async def body() -> None:
        relay = MediaRelay(asyncio.get_running_loop(), LO, PortAllocator(BASE, BASE + 19))
        echo = await relay.create_echo()
        phone, phone_rtcp, sdp_only = Peer(), Peer(), Peer()
        echo.side.set_remote(*sdp_only.addr)  # the phone sends from elsewhere (NAT): answer the source
        for seq in range(3):
            phone.send(rtp(seq), echo.side.local_port)
            assert await phone.recv() == (rtp(seq), (LO, echo.side.local_port))
        phone_rtcp.send(RTCP_RR, echo.side.local_port + 1)
        assert await phone_rtcp.recv() == (RTCP_RR, (LO, echo.side.local_port + 1))
        stats = echo.stats()
        assert (stats["packets_in"], stats["packets_out"], stats["rtcp"]["packets_out"]) == (3, 3, 1)
        relay.close()

    run(body, fast=fast)


@pytest.mark.parametrize("fast", [False, True], ids=["asyncio", "uvloop"])
def test_ipv6(fast: bool) -> None:
    async def body() -> None:
        relay = MediaRelay(asyncio.get_running_loop(), "::1", PortAllocator(BASE, BASE + 19))
        call = await relay.create_call()
        alice, bob = Peer("::1"), Peer("::1")
        call.a.set_remote(*alice.addr)
        call.b.set_remote("0:0::1", bob.addr[1])  # any spelling of the address
        alice.send(rtp(1), call.a.local_port)
        data, source = await bob.recv()
        assert data == rtp(1) and source[:2] == ("::1", call.b.local_port)
        bob.send(rtp(2), call.b.local_port)
        assert (await alice.recv())[0] == rtp(2)
        assert call.stats()["a"]["latched_to"] == f"[::1]:{alice.addr[1]}"
        with pytest.raises(ValueError):
            call.a.set_remote(LO, 4000)
        relay.close()

    run(body, fast=fast)


def test_set_remote_needs_an_ip_of_the_relay_family() -> None:
    async def body() -> None:
        relay = MediaRelay(asyncio.get_running_loop(), LO, PortAllocator(BASE, BASE + 19))
        call = await relay.create_call()
        for host in ("phone.example.com", "2001:db8::1"):
            with pytest.raises(ValueError):
                call.a.set_remote(host, 4000)
        relay.close()

    run(body)


def test_ports_are_released_and_busy_ports_skipped() -> None:
    async def body() -> None:
        busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        allocator = PortAllocator(BASE, BASE + 7)  # four pairs
        busy.bind((LO, BASE + 1))  # another process holds the RTCP port of the first pair
        relay = MediaRelay(asyncio.get_running_loop(), LO, allocator)
        call = await relay.create_call()
        assert {call.a.local_port, call.b.local_port} == {BASE + 2, BASE + 4}
        assert allocator.in_use == 2
        with pytest.raises(PortsExhausted):
            await relay.create_call()  # one pair left: the first side is given back
        await asyncio.sleep(0.01)  # ports come back once the sockets are really closed
        assert allocator.in_use == 2
        call.close()
        call.close()
        await asyncio.sleep(0.01)
        assert allocator.in_use == 0
        echo = await relay.create_echo()
        assert echo.side.local_port == BASE + 2  # round robin went on past the busy pair
        relay.close()
        await asyncio.sleep(0.01)
        assert allocator.in_use == 0
        busy.close()

    run(body)


def test_port_allocator_round_robin() -> None:
    ports = PortAllocator(10001, 10008)  # odd bounds: pairs 10002/3 .. 10006/7
    assert ports.capacity == 3
    first = ports.allocate()
    assert first == 10002
    ports.release(first)
    assert [ports.allocate() for _ in range(3)] == [10004, 10006, 10002]  # freed port comes last
    with pytest.raises(PortsExhausted, match="10001-10008"):
        ports.allocate()
    ports.release(10006)
    assert ports.allocate() == 10006
    with pytest.raises(ValueError):
        ports.release(10003)
    with pytest.raises(ValueError):
        PortAllocator(10001, 10001)

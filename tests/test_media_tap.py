"""Media taps on a bridged call (acceptance 7), with real sockets and real RTP over loopback.

Two "phones" (UDP sockets in the test) send G.711 RTP through a real relayed call of the media
engine, each with its own SSRC, sequence and timestamp origin, one with network jitter. Caller and
callee each beep once, 300 ms apart. A tap subscriber must see both directions on one timeline:
the offset between the beeps is recovered within 20 ms. A subscriber that never reads is counted
as slow and does not stall the relay.
"""

from __future__ import annotations

import asyncio
import random
import socket

import numpy as np
import pytest

from peers.netutil import PortAllocator as PeerPorts
from softswitch.media.engine import MediaEngine
from softswitch.media.g711 import alaw_encode, ulaw_encode
from softswitch.media.ports import PortAllocator
from softswitch.media.rtp import build_rtp

RATE = 8000
BEEP_AT = {"caller": 1.0, "callee": 1.3}
FREQ = {"caller": 1000.0, "callee": 600.0}


def beep_track(name: str, seconds: float = 2.6) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    x = np.zeros_like(t)
    on = (t >= BEEP_AT[name]) & (t < BEEP_AT[name] + 0.15)
    x[on] = 0.5 * np.sin(2 * np.pi * FREQ[name] * t[on])
    return np.round(x * 32767).astype(np.int16)


class Phone(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data, addr) -> None:
        self.received += 1


async def send_track(phone: Phone, dest: tuple[str, int], pcm: np.ndarray, encode, pt: int, start: float,
                     jitter_ms: float = 0.0, seed: int = 0) -> None:
    """Packets at their 20 ms schedule from ``start`` (loop time), optionally delayed by random jitter."""
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    ssrc, seq, ts = rng.getrandbits(32), rng.getrandbits(16), rng.getrandbits(32)
    for i in range(0, pcm.size - 159, 160):
        due = start + i / RATE + rng.uniform(0, jitter_ms) / 1000
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        data = build_rtp(pt, (seq + i // 160) & 0xFFFF, (ts + i) & 0xFFFFFFFF, ssrc, encode(pcm[i:i + 160]), i == 0)
        phone.transport.sendto(data, dest)


def onset(frames: dict[int, np.ndarray], threshold: int = 4000) -> float:
    """Seconds on the tap's timeline (frame index × 20 ms) where the first loud sample is."""
    for index in sorted(frames):
        loud = np.flatnonzero(np.abs(frames[index].astype(np.int32)) > threshold)
        if loud.size:
            return (index * 160 + int(loud[0])) / RATE
    raise AssertionError("no beep on this stream")


async def run_call(transcode: bool, jitter_ms: float, slow_tap: bool = False) -> dict:
    loop = asyncio.get_running_loop()
    low = PeerPorts().block(20, even=True)
    engine = MediaEngine(loop, "127.0.0.1", PortAllocator(low, low + 19))
    call = await engine.relay.create_call()
    phones = {}
    for name in ("caller", "callee"):
        _, phones[name] = await loop.create_datagram_endpoint(Phone, local_addr=("127.0.0.1", 0))
    caller_addr = phones["caller"].transport.get_extra_info("sockname")
    callee_addr = phones["callee"].transport.get_extra_info("sockname")
    call.a.set_remote(*caller_addr)
    call.b.set_remote(*callee_addr)
    callee_pt, callee_enc = (8, alaw_encode) if transcode else (0, ulaw_encode)
    if transcode:
        from softswitch.media.g711 import transcode_table
        call.a.transcode({0: (8, transcode_table("PCMU", "PCMA"))})
        call.b.transcode({8: (0, transcode_table("PCMA", "PCMU"))})
    tap = call.tap("a", maxsize=10 if slow_tap else 500)
    start = loop.time() + 0.1
    senders = [
        send_track(phones["caller"], ("127.0.0.1", call.a.local_port), beep_track("caller"), ulaw_encode, 0, start,
                   jitter_ms, seed=1),
        send_track(phones["callee"], ("127.0.0.1", call.b.local_port), beep_track("callee"), callee_enc,
                   callee_pt, start, 0.0, seed=2),
    ]
    await asyncio.gather(*senders)
    await asyncio.sleep(0.4)
    frames: dict[str, dict[int, np.ndarray]] = {"rx": {}, "tx": {}}
    kinds: dict[str, set[str]] = {"rx": set(), "tx": set()}
    while (frame := tap.get_nowait()) is not None:
        frames[frame.stream][frame.index] = frame.pcm
        kinds[frame.stream].add(frame.kind)
    result = {"frames": frames, "kinds": kinds, "tap": tap.stats(), "stats": call.stats(),
              "received": {n: p.received for n, p in phones.items()}, "clock": engine.clock.stats()}
    call.close()
    engine.close()
    for phone in phones.values():
        phone.transport.close()
    return result


@pytest.mark.parametrize("transcode,jitter_ms", [(False, 0.0), (True, 30.0)])
def test_tap_recovers_beep_offset_between_directions(transcode, jitter_ms):
    result = asyncio.run(run_call(transcode, jitter_ms))
    frames = result["frames"]
    assert set(frames["rx"]) == set(frames["tx"]), "both directions must have the same frame indices"
    indices = sorted(frames["rx"])
    assert indices == list(range(indices[0], indices[0] + len(indices))), "gaps in the tap timeline"
    said, heard = onset(frames["rx"]), onset(frames["tx"])
    offset = heard - said
    print(f"[measured] beep offset {offset * 1000:.1f} ms (expected 300), transcode={transcode}")
    assert abs(offset - 0.300) <= 0.020, f"offset {offset:.3f} s, expected 0.300 ± 0.020"
    # the right audio in the right direction: the caller's 1 kHz beep in rx, the callee's 600 Hz in tx
    for stream, freq in (("rx", FREQ["caller"]), ("tx", FREQ["callee"])):
        pcm = np.concatenate([frames[stream][i] for i in indices]).astype(np.float64)
        spectrum = np.abs(np.fft.rfft(pcm))
        peak_hz = np.argmax(spectrum) * RATE / pcm.size
        assert abs(peak_hz - freq) < 10, f"{stream}: dominant {peak_hz:.0f} Hz, expected {freq:.0f}"
    # the relay forwarded every packet both ways while tapping
    assert result["received"]["callee"] >= 125 and result["received"]["caller"] >= 125, result["received"]
    assert result["tap"]["dropped"] == 0


def test_slow_subscriber_is_counted_not_waited_for():
    result = asyncio.run(run_call(False, 0.0, slow_tap=True))
    assert result["tap"]["dropped"] > 100, result["tap"]       # it never read: frames were dropped
    assert result["tap"]["queued"] == 0                          # (the test drained the 10 it kept)
    assert result["received"]["callee"] >= 125 and result["received"]["caller"] >= 125  # media kept flowing
    assert result["clock"]["late_frames"] == 0 or result["clock"]["late_frames"] < result["clock"]["frames"] * 0.05


def test_skipped_ticks_leave_a_gap_in_the_tap_index():
    """A stalled loop makes the clock skip ticks: the tap's frame index jumps by as many, so a recorder
    writes that stretch as silence instead of cutting it out of the timeline (found by bench/record_calls)."""
    async def main():
        loop = asyncio.get_running_loop()
        low = PeerPorts().block(4, even=True)
        engine = MediaEngine(loop, "127.0.0.1", PortAllocator(low, low + 3))
        call = await engine.relay.create_call()
        tap = call.tap("a")
        now = loop.time()
        call.tick(now)
        call.skip(7, now)
        call.tick(now + 0.16)
        indices = []
        while (frame := tap.get_nowait()) is not None:
            indices.append((frame.stream, frame.index))
        call.close()
        engine.close()
        return indices
    indices = asyncio.run(main())
    assert indices == [("rx", 0), ("tx", 0), ("rx", 8), ("tx", 8)], indices

"""A terminated media session with real sockets on loopback: the test is the far phone.

Covers what the service tests cannot isolate: bad packets are dropped and counted while audio
goes on, RFC 4733 barge-in cuts a prompt, DTMF is sent as RFC 4733, a ptime of 40 ms is honoured,
RTCP reports go out, and a tap of the session sees both directions on one timeline.
"""

from __future__ import annotations

import asyncio
import random
import socket

import numpy as np
import pytest

from peers.netutil import PortAllocator as PeerPorts
from softswitch.media.dtmf import Rfc4733Receiver, Rfc4733Sender
from softswitch.media.engine import MediaEngine, MediaSettings
from softswitch.media.g711 import ulaw_decode, ulaw_encode
from softswitch.media.players import BufferSource
from softswitch.media.ports import PortAllocator
from softswitch.media.rtcp import SenderReport, parse_rtcp
from softswitch.media.rtp import build_rtp, parse_rtp
from softswitch.sdp import StreamParams


class Phone(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.packets: list[bytes] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data, addr) -> None:
        self.packets.append(data)


async def setup(ptime: int = 20, te_pt: int | None = 101):
    loop = asyncio.get_running_loop()
    low = PeerPorts().block(20, even=True)
    engine = MediaEngine(loop, "127.0.0.1", PortAllocator(low, low + 19),
                         MediaSettings(dtmf_inband=True))
    session = await engine.create_session()
    _, rtp = await loop.create_datagram_endpoint(Phone, local_addr=("127.0.0.1", 0))
    port = rtp.transport.get_extra_info("sockname")[1]
    _, rtcp = await loop.create_datagram_endpoint(Phone, local_addr=("127.0.0.1", port + 1))
    session.start(StreamParams("127.0.0.1", port, port + 1, "PCMU", 0, te_pt, ptime, "sendrecv",
                               {0: "PCMU", 8: "PCMA"}))
    return engine, session, rtp, rtcp


def tone(seconds: float, freq: float = 440.0, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * 8000)) / 8000
    return np.round(level * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


async def talk(phone: Phone, port: int, pcm: np.ndarray, garbage_every: int = 0) -> None:
    """The phone's side: 20 ms PCMU packets, optionally with garbage between them."""
    rng = random.Random(5)
    ssrc, seq, ts = 0x1234, 100, 5000
    garbage = [b"\x00" * 20, b"\x80", bytes([0x8F]) + b"\x00" * 20, bytes([0x90, 0]) + b"\x00" * 12 + b"\x00\x05",
               build_rtp(0, 1, 1, ssrc, b"\xff" * 1600), build_rtp(99, 1, 1, ssrc, b"\x00" * 160),
               bytes(rng.getrandbits(8) for _ in range(40))]
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(0, pcm.size - 159, 160):
        await asyncio.sleep(max(0.0, start + i / 8000 - loop.time()))
        phone.transport.sendto(build_rtp(0, seq, ts, ssrc, ulaw_encode(pcm[i:i + 160])), ("127.0.0.1", port))
        seq, ts = (seq + 1) & 0xFFFF, ts + 160
        if garbage_every and (i // 160) % garbage_every == 0:
            phone.transport.sendto(garbage[(i // 160 // garbage_every) % len(garbage)], ("127.0.0.1", port))


def test_bad_packets_are_dropped_and_counted_while_audio_flows():
    async def main():
        engine, session, rtp, rtcp = await setup()
        session.echo = True  # what we hear back is what got through
        await talk(rtp, session.local_port, tone(2.0), garbage_every=3)
        rtcp.transport.sendto(b"\x00garbage-rtcp", ("127.0.0.1", session.local_port + 1))
        rtcp.transport.sendto(b"\x81\xc9\x00\x07" + b"\x00" * 8, ("127.0.0.1", session.local_port + 1))
        await asyncio.sleep(0.3)
        stats = session.stats()
        echoed = np.concatenate([ulaw_decode(parse_rtp(p).payload) for p in rtp.packets])
        session.close()
        engine.close()
        rtp.transport.close()
        rtcp.transport.close()
        return stats, echoed, engine.clock.stats()
    stats, echoed, clock = asyncio.run(main())
    # 34 bad datagrams (every third packet): wrong version, truncation, CSRC/extension past the end,
    # 1600-byte payload, random bytes -> malformed; payload type 99 (never negotiated) -> dropped_payload_type
    assert stats["dropped_malformed"] >= 24, stats
    assert stats["dropped_payload_type"] >= 5, stats
    assert stats["dropped_malformed"] + stats["dropped_payload_type"] == 34, stats
    assert stats["dropped_rtcp"] == 2, stats
    assert clock["errors"] == 0
    spectrum = np.abs(np.fft.rfft(echoed.astype(np.float64)))
    assert abs(np.argmax(spectrum) * 8000 / echoed.size - 440) < 5  # the tone came back through the garbage
    loud = np.abs(echoed) > 3000
    assert loud.sum() > 1.5 * 8000 * 0.5, "most of the 2 s tone must come back"


def test_rfc4733_barge_in_cuts_playback_and_is_reported_once():
    async def main():
        engine, session, rtp, _rtcp = await setup()
        events = session.events()
        play = asyncio.ensure_future(session.play(BufferSource(tone(5.0)), barge_in={"dtmf"}))
        await asyncio.sleep(0.5)
        ts = 90000
        for i, (payload, marker, _d) in enumerate(Rfc4733Sender().events("7", 120)):
            rtp.transport.sendto(build_rtp(101, 500 + i, ts, 0x99, payload, marker),
                                 ("127.0.0.1", session.local_port))
            await asyncio.sleep(0.02)
        reason = await asyncio.wait_for(play, 2)
        event = await asyncio.wait_for(events.get(), 1)
        await asyncio.sleep(0.2)
        more = events.qsize()
        stats = session.stats()
        session.close()
        engine.close()
        return reason, event, more, stats
    reason, event, more, stats = asyncio.run(main())
    assert reason == "dtmf"
    assert (event.digit, event.source, event.duration_ms) == ("7", "rfc4733", 120)
    assert more == 0 and [d["digit"] for d in stats["dtmf"]] == ["7"]


def test_send_dtmf_as_rfc4733_and_ptime_40():
    async def main():
        engine, session, rtp, _rtcp = await setup(ptime=40)
        await asyncio.sleep(0.3)
        session.send_dtmf("5#", duration_ms=100)
        await asyncio.sleep(0.8)
        session.close()
        engine.close()
        return [parse_rtp(p) for p in rtp.packets]
    packets = asyncio.run(main())
    audio = [p for p in packets if p.pt == 0]
    assert audio and all(len(p.payload) == 320 for p in audio)  # 40 ms packets
    receiver, digits = Rfc4733Receiver(), []
    for p in (p for p in packets if p.pt == 101):
        event = receiver.feed(p.payload, p.ts, p.marker)
        if event is not None:
            digits.append((event.digit, event.duration_ms))
    assert digits == [("5", 100), ("#", 100)]
    seqs = [p.seq for p in packets]
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:]))  # one sequence across audio and events


def test_rtcp_reports_and_session_tap_timeline():
    async def main():
        engine, session, rtp, rtcp = await setup()
        tap = session.tap()
        beep = np.zeros(8000 * 4, np.int16)
        beep[8000:8000 + 800] = tone(0.1, 1000, 0.5)
        play = asyncio.ensure_future(session.play(BufferSource(beep)))
        await talk(rtp, session.local_port, np.roll(beep, 2400))  # the phone beeps 300 ms after us
        await play
        await asyncio.sleep(0.2)
        frames = {"rx": {}, "tx": {}}
        while (f := tap.get_nowait()) is not None:
            frames[f.stream][f.index] = f.pcm
        reports = [parse_rtcp(p) for p in rtcp.packets]
        session.close()
        engine.close()
        return frames, reports
    frames, reports = asyncio.run(main())
    assert any(isinstance(r[0], SenderReport) for r in reports), reports  # we talk, so SR within ~4 s

    def onset(stream):
        for i in sorted(frames[stream]):
            loud = np.flatnonzero(np.abs(frames[stream][i].astype(int)) > 4000)
            if loud.size:
                return (i * 160 + loud[0]) / 8000
        raise AssertionError(stream)
    assert set(frames["rx"]) == set(frames["tx"])
    offset = onset("rx") - onset("tx")
    # the phone started talking when we started playing; its beep lands 300 ms + the jitter depth later
    assert 0.28 <= offset <= 0.42, offset


def test_speech_barges_in_on_a_prompt(tmp_path):
    """A caller who starts talking over a prompt cuts it (VAD speech start), as an IVR needs."""
    from peers.audio import espeak, read_wav

    speech = read_wav(espeak("credit card, please", tmp_path / "talk.wav", pad_seconds=(1.0, 0.5)))[1]

    async def main():
        engine, session, rtp, _rtcp = await setup()
        events = session.events()
        play = asyncio.ensure_future(session.play(BufferSource(tone(6.0, 300, 0.1)), barge_in={"speech"}))
        loop = asyncio.get_running_loop()
        started = loop.time()
        await talk(rtp, session.local_port, speech[:int(8000 * 2.2)])
        reason = await asyncio.wait_for(play, 1)
        cut_after = loop.time() - started
        kinds = []
        while not events.empty():
            kinds.append(events.get_nowait().kind)
        session.close()
        engine.close()
        return reason, cut_after, kinds
    reason, cut_after, kinds = asyncio.run(main())
    assert reason == "speech", reason
    assert kinds[:1] == ["speech_start"], kinds
    assert 1.0 < cut_after < 2.3, f"cut {cut_after:.2f} s after the start (speech begins at 1.0 s)"


def test_no_rtp_while_held_and_again_after_resume():
    async def main():
        engine, session, rtp, _rtcp = await setup()
        port = rtp.transport.get_extra_info("sockname")[1]
        held = StreamParams("127.0.0.1", port, port + 1, "PCMU", 0, 101, 20, "recvonly", {0: "PCMU"})
        session.start(held)
        await asyncio.sleep(0.1)
        rtp.packets.clear()
        await asyncio.sleep(0.5)
        during = len(rtp.packets)
        held.direction = "sendrecv"
        session.start(held)
        await asyncio.sleep(0.5)
        after = len(rtp.packets)
        session.close()
        engine.close()
        return during, after
    during, after = asyncio.run(main())
    assert during == 0, f"{during} packets sent while the peer held us"
    assert after >= 20, after


def test_a_broken_session_is_detached_and_the_others_keep_sending():
    async def main():
        engine, good, rtp, _rtcp = await setup()
        bad = await engine.create_session()
        port = rtp.transport.get_extra_info("sockname")[1]
        bad.start(StreamParams("127.0.0.1", port, port + 1, "PCMU", 0, None, 20, "sendrecv", {0: "PCMU"}))

        def boom(now):
            raise RuntimeError("broken jitter buffer")
        bad.stream.pop = boom
        await asyncio.sleep(0.1)
        before = len(rtp.packets)
        await asyncio.sleep(0.4)
        sent = len(rtp.packets) - before
        stats = engine.clock.stats()
        bad.close()
        good.close()
        engine.close()
        return sent, stats
    sent, stats = asyncio.run(main())
    assert stats["errors"] == 1 and stats["members"] == 1, stats
    assert sent >= 15, sent  # the good session went on at 50 packets/s


def test_a_stalled_loop_does_not_leave_the_stream_behind():
    """After the loop stalls (a GC pause, a blocking call), the skipped ticks' audio is dropped: the
    delay through the session returns to what it was, instead of staying 300 ms longer."""
    import threading
    import time

    async def main():
        loop = asyncio.get_running_loop()
        engine, session, _rtp, _rtcp = await setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # the far phone, in its own threads:
        sock.bind(("127.0.0.1", 0))                              # it keeps talking while our loop stalls
        sock.settimeout(0.2)
        port = sock.getsockname()[1]
        session.start(StreamParams("127.0.0.1", port, port + 1, "PCMU", 0, None, 20, "sendrecv", {0: "PCMU"}))
        session.echo = True
        pcm = np.zeros(8000 * 5, np.int16)
        burst = tone(0.04, 1000.0, 0.5)
        for at in (1.0, 4.0):
            pcm[int(at * 8000):int(at * 8000) + burst.size] = burst
        heard: list[tuple[float, bytes]] = []
        done = threading.Event()

        def talk_thread() -> None:
            t0 = time.monotonic()
            for k, i in enumerate(range(0, pcm.size - 159, 160)):
                time.sleep(max(0.0, t0 + k * 0.02 - time.monotonic()))
                sock.sendto(build_rtp(0, k, k * 160, 0x1234, ulaw_encode(pcm[i:i + 160])),
                            ("127.0.0.1", session.local_port))
            time.sleep(0.5)
            done.set()

        def listen_thread() -> None:
            while not done.is_set():
                try:
                    heard.append((time.monotonic(), sock.recv(2048)))
                except OSError:
                    pass
        loop.call_later(2.0, time.sleep, 0.3)
        start = time.monotonic()
        threads = [threading.Thread(target=talk_thread), threading.Thread(target=listen_thread)]
        for t in threads:
            t.start()
        while not done.is_set():
            await asyncio.sleep(0.05)
        for t in threads:
            t.join()
        sock.close()
        stats = engine.clock.stats()
        session.close()
        engine.close()
        arrivals: list[float] = []
        for t, data in heard:
            level = np.abs(ulaw_decode(parse_rtp(data).payload).astype(np.int32)).mean()
            if level > 3000 and (not arrivals or t - arrivals[-1] > 0.5):
                arrivals.append(t)
        return [t - start - at for t, at in zip(arrivals, (1.0, 4.0))], stats
    delays, stats = asyncio.run(main())
    assert stats["skipped_frames"] > 0, stats
    assert len(delays) == 2, delays
    assert delays[1] - delays[0] < 0.1, f"echo delay {delays[0] * 1000:.0f} ms before the stall, {delays[1] * 1000:.0f} after"

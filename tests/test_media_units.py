"""Unit tests of the media engine's glue: SDP for terminated and transcoded streams, the relay's
packet transcoder, tap queues and the media clock."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from softswitch.media.clock import MediaClock
from softswitch.media.g711 import alaw_decode, alaw_encode, transcode_table, ulaw_decode, ulaw_encode
from softswitch.media.relay import transcoder
from softswitch.media.rtp import build_rtp, parse_rtp
from softswitch.media.tap import Tap, TapClosed, TapFrame, TapPoint
from softswitch.sdp import (SdpError, SessionDescription, answer_for, retarget_answer, stream_params,
                            with_transcoding)


def sdp(*media_lines: str, c: str = "192.0.2.10") -> SessionDescription:
    text = "v=0\r\no=- 1 1 IN IP4 {c}\r\ns=-\r\nc=IN IP4 {c}\r\nt=0 0\r\n".format(c=c)
    return SessionDescription.parse(text + "".join(line + "\r\n" for line in media_lines))


PCMU_TE = ("m=audio 4000 RTP/AVP 0 101", "a=rtpmap:0 PCMU/8000", "a=rtpmap:101 telephone-event/8000",
           "a=fmtp:101 0-15", "a=ptime:20")


# --- SDP -------------------------------------------------------------------------------------

def test_stream_params_of_an_answer_we_gave():
    offer = sdp(*PCMU_TE)
    answer = answer_for(offer, "127.0.0.1", 20000)
    p = stream_params(answer, offer, local_is_answer=True)
    assert p is not None
    assert (p.remote_host, p.remote_port, p.remote_rtcp_port) == ("192.0.2.10", 4000, 4001)
    assert (p.codec, p.pt, p.te_pt, p.ptime, p.direction) == ("PCMU", 0, 101, 20, "sendrecv")
    assert p.sending and p.receiving


def test_stream_params_hold_and_ptime():
    offer = sdp("m=audio 4000 RTP/AVP 8", "a=ptime:40", "a=sendonly")
    answer = answer_for(offer, "127.0.0.1", 20000)
    p = stream_params(answer, offer, local_is_answer=True)
    assert p.codec == "PCMA" and p.ptime == 40 and p.te_pt is None
    assert p.direction == "recvonly" and not p.sending and p.receiving  # they hold us: we only listen
    odd = sdp("m=audio 4000 RTP/AVP 0", "a=ptime:30")
    assert answer_for(odd, "127.0.0.1", 20000).media[0].ptime == 20  # we send whole 20 ms frames
    assert stream_params(answer_for(odd, "127.0.0.1", 1), odd, True).ptime == 20


def test_stream_params_none_without_g711():
    offer = sdp("m=audio 4000 RTP/AVP 18", "a=rtpmap:18 G729/8000")
    with pytest.raises(SdpError):
        answer_for(offer, "127.0.0.1", 20000)
    assert stream_params(offer, offer, True) is None


def test_with_transcoding_adds_missing_g711_before_telephone_event():
    out = with_transcoding(sdp(*PCMU_TE))
    m = out.media[0]
    assert m.fmts == ["0", "8", "101"]
    assert [(c.pt, c.name) for c in m.codecs] == [(0, "PCMU"), (8, "PCMA"), (101, "telephone-event")]
    again = with_transcoding(out)
    assert again.media[0].fmts == ["0", "8", "101"]  # idempotent
    g729 = sdp("m=audio 4000 RTP/AVP 18")
    assert with_transcoding(g729).media[0].fmts == ["18"]  # nothing to transcode from


def test_retarget_answer_gives_the_caller_its_own_codec():
    offer = sdp(*PCMU_TE)
    callee_answer = sdp("m=audio 5000 RTP/AVP 8 101", "a=rtpmap:8 PCMA/8000",
                        "a=rtpmap:101 telephone-event/8000", c="198.51.100.7")
    answer, mine = retarget_answer(callee_answer, offer)
    assert (mine.pt, mine.name) == (0, "PCMU")
    m = answer.media[0]
    assert m.fmts == ["0", "101"] and [c.name for c in m.codecs] == ["PCMU", "telephone-event"]
    with pytest.raises(SdpError):
        retarget_answer(callee_answer, sdp("m=audio 4000 RTP/AVP 18"))


# --- relay transcoder -----------------------------------------------------------------------

def test_transcoder_rewrites_type_and_payload_exactly():
    pcm = (np.sin(np.arange(160) / 5) * 12000).astype(np.int16)
    ulaw = ulaw_encode(pcm)
    packet = build_rtp(0, 65535, 4294967000, 0xDEADBEEF, ulaw, marker=True)
    out = parse_rtp(transcoder({0: (8, transcode_table("PCMU", "PCMA"))})(packet))
    assert (out.pt, out.seq, out.ts, out.ssrc, out.marker) == (8, 65535, 4294967000, 0xDEADBEEF, True)
    assert out.payload == alaw_encode(ulaw_decode(ulaw))  # same as decode -> encode
    back = parse_rtp(transcoder({8: (0, transcode_table("PCMA", "PCMU"))})(build_rtp(8, 1, 2, 3, out.payload)))
    a, u = alaw_decode(out.payload).astype(int), ulaw_decode(back.payload).astype(int)
    assert np.all(np.abs(u - a) <= np.abs(a) * 0.04 + 16)  # within G.711 quantisation: the same audio
    event = build_rtp(101, 1, 2, 3, b"\x05\x8a\x03\x20")
    assert transcoder({0: (8, None)})(event) == event  # other payload types pass untouched


def test_transcoder_handles_csrc_extension_and_padding():
    payload = bytes(range(40))
    header = bytes([0x80 | 0x20 | 0x10 | 1, 0]) + (7).to_bytes(2, "big") + (9).to_bytes(4, "big") \
        + (11).to_bytes(4, "big") + (12).to_bytes(4, "big")  # P, X, CC=1
    ext = (0xBEDE).to_bytes(2, "big") + (1).to_bytes(2, "big") + b"\x10\xaa\x00\x00"
    packet = header + ext + payload + b"\x00\x00\x03"
    out = transcoder({0: (8, transcode_table("PCMU", "PCMA"))})(packet)
    parsed = parse_rtp(out)
    assert parsed.pt == 8 and parsed.csrcs == (12,) and parsed.payload == payload.translate(
        transcode_table("PCMU", "PCMA"))


# --- taps -----------------------------------------------------------------------------------

def frame(stream: str, index: int) -> TapFrame:
    return TapFrame(stream, index, None, np.zeros(160, np.int16))


def test_tap_is_bounded_and_counts_drops():
    tap = Tap(maxsize=3)
    for i in range(5):
        tap.offer(frame("rx", i))
    assert tap.stats() == {"offered": 5, "dropped": 2, "queued": 3}
    assert [tap.get_nowait().index for _ in range(3)] == [0, 1, 2]
    assert tap.get_nowait() is None


def test_tap_async_reader_sees_frames_then_close():
    async def main() -> list[int]:
        point = TapPoint()
        tap = point.attach()
        got: list[int] = []

        async def reader() -> None:
            async for f in tap:
                got.append(f.index)
        task = asyncio.ensure_future(reader())
        for i in range(3):
            point.publish(frame("rx", i), frame("tx", i))
            await asyncio.sleep(0)
        point.close()
        await asyncio.wait_for(task, 1)
        with pytest.raises(TapClosed):
            await tap.get()
        assert not point.taps
        return got
    assert asyncio.run(main()) == [0, 0, 1, 1, 2, 2]


# --- media clock ----------------------------------------------------------------------------

class Member:
    def __init__(self, block_s: float = 0.0, fail_at: int | None = None) -> None:
        self.ticks: list[float] = []
        self.block_s = block_s
        self.fail_at = fail_at

    def tick(self, now: float) -> None:
        self.ticks.append(now)
        if self.fail_at is not None and len(self.ticks) == self.fail_at:
            raise RuntimeError("boom")
        if self.block_s:
            time.sleep(self.block_s)


def test_clock_ticks_every_20ms_and_counts_late_frames():
    async def main():
        clock = MediaClock(asyncio.get_running_loop())
        good, slow, broken = Member(), Member(), Member(fail_at=3)
        clock.add(good)
        clock.add(broken)
        await asyncio.sleep(0.5)
        steady = clock.stats()
        clock.add(slow)
        slow.block_s = 0.035  # each tick now takes longer than the period: frames go out late
        await asyncio.sleep(0.3)
        slow.block_s = 0
        clock.close()
        return clock, good, broken, steady
    clock, good, broken, steady = asyncio.run(main())
    gaps = np.diff(good.ticks[:20])
    assert 0.018 < float(np.median(gaps)) < 0.022, gaps
    assert len(broken.ticks) == 3 and clock.errors == 1  # a failing stream is detached, the others go on
    assert steady["late_frames"] <= 2, steady
    assert clock.late_frames > steady["late_frames"] + 5
    assert clock.stats()["max_late_ms"] > 10


def test_clock_lateness_average_flags_overload_and_recovers():
    """A loop that cannot keep up (every tick takes 45 ms) is overloaded within a second; back at
    normal load the average decays, and a clock that went idle starts from zero."""
    async def main():
        clock = MediaClock(asyncio.get_running_loop())
        member = Member()
        clock.add(member)
        await asyncio.sleep(0.4)
        calm = clock.overloaded(1.0)
        member.block_s = 0.045
        await asyncio.sleep(1.5)
        busy, lateness = clock.overloaded(1.0), clock.lateness
        member.block_s = 0
        await asyncio.sleep(2.0)
        recovered = clock.overloaded(1.0)
        never = clock.overloaded(0)
        clock.remove(member)
        await asyncio.sleep(0.05)
        clock.lateness = 5.0          # the last value before going idle ...
        clock.add(member)             # ... does not count once the clock restarts
        restarted = clock.lateness
        clock.close()
        return calm, busy, lateness, recovered, never, restarted
    calm, busy, lateness, recovered, never, restarted = asyncio.run(main())
    assert not calm and busy and lateness > 1.0, lateness
    assert not recovered and not never and restarted == 0.0


# --- RTCP seen by the relay ---------------------------------------------------------------------

def test_relay_reports_give_party_loss_jitter_and_rtt():
    from softswitch.media.relay import RelayReports
    from softswitch.media.rtcp import ReportBlock, build_rr, build_sdes, build_sr, ntp_from_unix, ntp_middle32

    clock = [100.0]
    a, b = RelayReports(lambda: clock[0]), RelayReports(lambda: clock[0])
    a.peer, b.peer = b, a
    ntp = ntp_from_unix(1_700_000_000.25)
    a.feed(build_sr(0xA, ntp, 1234, 50, 8000) + build_sdes(0xA, "a@x"))  # caller's SR, forwarded to B
    clock[0] += 0.180  # B holds it 100 ms (DLSR), 40 ms each way between relay and B
    block = ReportBlock(0xA, 64, 12, 70000, 160, ntp_middle32(ntp), int(0.100 * 65536))
    b.feed(build_rr(0xB, [block]))
    stats = b.stats()
    assert stats["rtt_ms"] == pytest.approx(80.0, abs=0.1)
    assert (stats["party_fraction_lost"], stats["party_packets_lost"], stats["party_jitter_ms"]) == (0.25, 12, 20.0)
    a.feed(b"\x00 not rtcp")
    assert a.stats()["garbage"] == 1 and a.stats()["rtt_ms"] is None


def test_level_meter_reports_levels_and_silence_per_direction():
    from softswitch.media.meter import LevelMeter
    point = TapPoint()
    meter = LevelMeter(point.attach(wake_batch=20))
    t = np.arange(160) / 8000
    sine = np.round(0.5 * 32767 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)  # -9 dBFS RMS
    for i in range(50):
        rx = sine if i < 25 else np.zeros(160, np.int16)
        point.publish(TapFrame("rx", i, None, rx), TapFrame("tx", i, None, sine))
    meter.drain()
    stats = meter.stats()
    assert stats["frames"] == 50 and stats["dropped"] == 0
    assert stats["tx_dbfs"] == pytest.approx(-9.0, abs=0.2) and stats["tx_silent_pct"] == 0.0
    assert stats["rx_dbfs"] == pytest.approx(-12.0, abs=0.2) and stats["rx_silent_pct"] == 50.0

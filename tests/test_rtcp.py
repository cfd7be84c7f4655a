"""RTCP packets, NTP time and the per-stream RTCP session (RFC 3550 §6, A.7)."""

from __future__ import annotations

import json
import random
import struct

import pytest

from peers.fuzz import mutated, truncated

from softswitch.media.rtcp import (Bye, ReceiverReport, ReportBlock, RtcpError, RtcpSession, Sdes, SenderReport,
                                   UnknownRtcp, build_bye, build_rr, build_sdes, build_sr, ntp32_from_unix,
                                   ntp_from_unix, ntp_middle32, parse_rtcp)
from softswitch.media.rtp import RtpSender, build_rtp

# RFC 3550 §6.4.1, Figure 2: an SR sent at 10 Nov 1995 11:33:25.125 UTC, answered by an RR
# that arrives at 11:33:36.5 after being held 5.25 s; the round trip is 6.125 s.
FIG2_SR_UNIX = 816003205.125
FIG2_RR_UNIX = 816003216.5
FIG2_NTP = 0xB44DB705_20000000
FIG2_LSR = 0xB7052000
FIG2_A = 0xB7108000
FIG2_DLSR = 0x00054000


def block(ssrc: int = 0x01020304, fraction: int = 64, lost: int = 25, highest: int = 0x00010004,
          jitter: int = 40, lsr: int = FIG2_LSR, dlsr: int = FIG2_DLSR) -> ReportBlock:
    return ReportBlock(ssrc, fraction, lost, highest, jitter, lsr, dlsr)


# --- NTP -------------------------------------------------------------------------------------

def test_ntp_rfc3550_figure2():
    assert ntp_from_unix(FIG2_SR_UNIX) == FIG2_NTP
    assert ntp_middle32(FIG2_NTP) == FIG2_LSR
    assert ntp32_from_unix(FIG2_RR_UNIX) == FIG2_A
    assert (FIG2_A - FIG2_LSR - FIG2_DLSR) & 0xFFFFFFFF == 0x00062000  # 6.125 s in 16.16


def test_ntp_epoch_and_fraction():
    assert ntp_from_unix(0.0) == 2208988800 << 32
    assert ntp_from_unix(0.5) == (2208988800 << 32) | 0x80000000
    assert ntp_from_unix(1.999999999) >> 32 == 2208988801  # the fraction never carries into seconds
    assert ntp_from_unix(2085978496.0) >> 32 == 0  # 2036-02-07 06:28:16: NTP era 1 wraps to 0


# --- packets ---------------------------------------------------------------------------------

def test_sr_round_trip_and_layout():
    blocks = [block(), block(ssrc=7, fraction=0, lost=-3, highest=99, jitter=0, lsr=0, dlsr=0)]
    data = build_sr(0xAABBCCDD, FIG2_NTP, 123456, 500, 80000, blocks)
    assert len(data) == 28 + 2 * 24
    assert data[:4] == bytes([0x82, 200, 0, 18])  # V=2 RC=2, PT=SR, length 19 words - 1
    assert data[28 + 4:28 + 8] == bytes.fromhex("40000019")  # fraction 64, lost 25
    assert data[52 + 4:52 + 8] == bytes.fromhex("00fffffd")  # lost -3 as signed 24-bit
    [sr] = parse_rtcp(data)
    assert sr == SenderReport(0xAABBCCDD, FIG2_NTP, 123456, 500, 80000, blocks)


def test_rr_round_trip_empty_and_full():
    empty = build_rr(0x12345678)
    assert empty == bytes.fromhex("80c9000112345678")
    assert parse_rtcp(empty) == [ReceiverReport(0x12345678, [])]
    blocks = [block(ssrc=i) for i in range(31)]
    assert parse_rtcp(build_rr(1, blocks)) == [ReceiverReport(1, blocks)]
    with pytest.raises(ValueError):
        build_rr(1, blocks + [block()])


def test_report_block_fields_clamp_when_building():
    [rr] = parse_rtcp(build_rr(1, [block(fraction=300, lost=-(1 << 30)), block(fraction=-1, lost=1 << 30)]))
    assert [(b.fraction_lost, b.cumulative_lost) for b in rr.reports] == [(255, -0x800000), (0, 0x7FFFFF)]


@pytest.mark.parametrize("cname", ["", "a", "ab", "abc", "abcd", "user@192.0.2.1", "ü" * 40, "x" * 255])
def test_sdes_round_trip(cname: str):
    data = build_sdes(0xCAFE, cname)
    assert len(data) % 4 == 0
    assert data[-1] == 0  # null-terminated item list
    assert parse_rtcp(data) == [Sdes([(0xCAFE, cname)])]


def test_sdes_layout():
    # header, SSRC, CNAME "abcd" (type 1, len 4), then 2 nulls to the 32-bit boundary
    assert build_sdes(1, "abcd") == bytes.fromhex("81ca0003" "00000001" "0104" "61626364" "0000")
    # a chunk that would end on a boundary gets a whole word of nulls (the end marker is mandatory)
    assert build_sdes(1, "ab") == bytes.fromhex("81ca0003" "00000001" "0102" "6162" "00000000")
    with pytest.raises(ValueError):
        build_sdes(1, "x" * 256)


def test_sdes_several_chunks_and_items():
    chunk1 = struct.pack("!I", 5) + b"\x02\x03bob" + b"\x01\x05alice" + b"\x00" * 4  # NAME, CNAME, end
    chunk2 = struct.pack("!I", 6) + b"\x00\x00\x00\x00"                                  # no items
    body = chunk1 + chunk2
    assert len(body) % 4 == 0
    data = bytes([0x82, 202]) + struct.pack("!H", len(body) // 4) + body
    assert parse_rtcp(data) == [Sdes([(5, "alice"), (6, "")])]


@pytest.mark.parametrize("reason", [None, "", "bye", "call ended", "é" * 10])
def test_bye_round_trip(reason):
    data = build_bye(0xDEAD, reason)
    assert len(data) % 4 == 0
    assert parse_rtcp(data) == [Bye([0xDEAD], reason)]


def test_bye_with_several_ssrcs():
    data = bytes([0x83, 203, 0, 3]) + struct.pack("!3I", 1, 2, 3)
    assert parse_rtcp(data) == [Bye([1, 2, 3], None)]


def test_compound_parse_keeps_order_and_skips_unknown():
    app = bytes([0x81, 204, 0, 2]) + struct.pack("!I", 9) + b"NAME"
    xr = bytes([0x80, 207, 0, 1]) + struct.pack("!I", 9)
    compound = build_sr(9, FIG2_NTP, 1, 2, 3, [block()]) + build_sdes(9, "me@host") + app + xr + build_bye(9, "done")
    packets = parse_rtcp(compound)
    assert [type(p) for p in packets] == [SenderReport, Sdes, UnknownRtcp, UnknownRtcp, Bye]
    assert packets[2] == UnknownRtcp(204, app) and packets[3] == UnknownRtcp(207, xr)
    assert packets[1].chunks == [(9, "me@host")] and packets[4].reason == "done"


def test_padding_on_last_packet():
    rr = build_rr(4, [block()])
    padded_rr = bytes([rr[0] | 0x20, rr[1]]) + struct.pack("!H", (len(rr) + 4) // 4 - 1) + rr[4:] + b"\x00\x00\x00\x04"
    assert parse_rtcp(build_sdes(4, "x") + padded_rr)[1] == ReceiverReport(4, [block()])


def _with_length(packet: bytes, words: int) -> bytes:
    return packet[:2] + struct.pack("!H", words) + packet[4:]


@pytest.mark.parametrize("data, reason", [
    (b"", "short"),
    (build_rr(1)[:7], "short"),
    (bytes([0x40]) + build_rr(1)[1:], "version"),
    (build_rr(1) + bytes([0x40, 202, 0, 0]), "version"),                       # second packet v1
    (_with_length(build_rr(1), 2), "length"),                                 # 3 words claimed, 2 there
    (build_rr(1) + build_sdes(1, "abc")[:-4], "length"),                      # truncated second packet
    (build_rr(1) + b"\x81", "truncated"),                                     # trailing junk
    (bytes([0x81]) + build_rr(1)[1:], "count"),                               # RC=1, no block
    (bytes([0x80 | 2]) + build_rr(1, [block()])[1:], "count"),                # RC=2, one block
    (bytes([0x81]) + build_sr(1, 2, 3, 4, 5)[1:], "count"),
    (_with_length(build_sr(1, 2, 3, 4, 5), 5)[:24], "count"),                 # SR without all of sender info
    (bytes([0x82]) + build_sdes(1, "abc")[1:], "sdes"),                       # SC=2, one chunk
    (build_sdes(1, "abcd")[:-2] + b"\x01\x20", "sdes"),                        # item length past the end
    (bytes([0x81, 202, 0, 2]) + struct.pack("!I", 1) + b"\x01\x02ab", "sdes"),  # no end-of-items null
    # end-of-items null present, but the chunk's null padding would run into the P-bit padding
    (bytes([0xA1, 202, 0, 3]) + struct.pack("!I", 1) + b"\x01\x02ab" + b"\x00" + b"\x00\x00\x03", "sdes"),
    (bytes([0x81, 203, 0, 2]) + struct.pack("!I", 1) + b"\x09abc", "reason"),  # reason length 9 > 3
    (bytes([0x82, 203, 0, 1]) + struct.pack("!I", 1), "bye"),                 # SC=2, one SSRC
    (bytes([0xA0, 201, 0, 1]) + b"\x00\x00\x00\x00", "padding"),               # pad count 0
    (bytes([0xA0, 201, 0, 1]) + b"\x00\x00\x00\x09", "padding"),               # pad count > packet
    (build_rtp(0, 1, 2, 3, b"\x00" * 4), "not rtcp"),                         # RTP on the RTCP port
])
def test_parse_rejects(data: bytes, reason: str):
    with pytest.raises(RtcpError, match=reason):
        parse_rtcp(data)


def test_fuzz_parse_rtcp_raises_only_rtcp_error():
    rng = random.Random(6)
    valid = [
        build_sr(9, FIG2_NTP, 1, 2, 3, [block(), block(ssrc=2)]) + build_sdes(9, "me@host") + build_bye(9, "x"),
        build_rr(5, [block()]) + build_sdes(5, "a") + bytes([0x81, 204, 0, 2]) + b"\x00\x00\x00\x09NAME",
        bytes([0x82, 202, 0, 7]) + struct.pack("!I", 5) + b"\x02\x03bob\x01\x05alice\x00\x00\x00\x00"
        + struct.pack("!I", 6) + b"\x00\x00\x00\x00",
    ]
    assert all(parse_rtcp(v) for v in valid)
    outcomes = {"ok": 0, "error": 0}
    for i in range(20000):
        kind = i % 4
        if kind == 0:
            data = rng.randbytes(rng.randrange(0, 80))
        elif kind == 1:  # a plausible header in front of random bytes
            body = rng.randbytes(4 * rng.randrange(0, 12))
            data = bytes([0x80 | rng.randrange(64), rng.choice((200, 201, 202, 203, 204, 207)),
                          0, rng.randrange(0, 14)]) + body
        elif kind == 2:
            data = truncated(rng, valid)
        else:
            data = mutated(rng, valid)
        try:
            packets = parse_rtcp(data)
        except RtcpError:
            outcomes["error"] += 1
        else:
            outcomes["ok"] += 1
            assert packets and all(isinstance(p, (SenderReport, ReceiverReport, Sdes, Bye, UnknownRtcp))
                                   for p in packets)
    assert outcomes["ok"] > 1000 and outcomes["error"] > 1000  # the fuzz reached both outcomes


# --- session ---------------------------------------------------------------------------------

def session(ssrc: int = 0xA, cname: str = "a@test", seed: int = 1, **kw) -> RtcpSession:
    return RtcpSession(ssrc, cname, rng=random.Random(seed), **kw)


def feed_rtp(s: RtcpSession, ssrc: int, seqs, t0: float = 0.0, jitter: float = 0.0) -> None:
    for seq in seqs:
        s.on_rtp_received(ssrc, seq & 0xFFFF, (160 * seq) & 0xFFFFFFFF,
                          t0 + 0.02 * seq + (jitter if seq % 2 else 0.0))


def test_rtt_rfc3550_figure2():
    s = session(ssrc=0xA, ntp_offset=FIG2_SR_UNIX)  # our clock's 0.0 is 11:33:25.125 UTC
    s.on_rtp_sent(10, 1600, 1000)
    [sr, sdes] = parse_rtcp(s.report(0.0, sending=True))
    assert isinstance(sr, SenderReport) and sr.ntp == FIG2_NTP
    assert sdes == Sdes([(0xA, "a@test")])
    rr = build_rr(0xB, [block(ssrc=0xA, lsr=FIG2_LSR, dlsr=FIG2_DLSR)])
    s.on_rtcp(rr + build_sdes(0xB, "b@test"), FIG2_RR_UNIX - FIG2_SR_UNIX)
    assert s.rtt_ms == 6125.0


def test_rtt_from_a_synthetic_exchange():
    # A sends SR at t=10; 40 ms each way; B holds it 100 ms before its RR: RTT = 80 ms.
    a, b = session(ssrc=0xA, cname="a"), session(ssrc=0xB, cname="b", seed=2, ntp_offset=-3600.0)
    sender = RtpSender(0, ssrc=0xA, seq=1, ts=0)
    for i in range(100):  # A's RTP reaches B
        b.on_rtp_received(0xA, *parse_fields(sender.packet(bytes(160), 160)), 8.0 + 0.02 * i + 0.04)
    a.on_rtp_sent(sender.packets_sent, sender.octets_sent, sender.last_ts)
    b.on_rtcp(a.report(10.0, sending=True), 10.04)
    reply = b.report(10.14, sending=False)
    rr = parse_rtcp(reply)[0]
    assert isinstance(rr, ReceiverReport) and len(rr.reports) == 1
    about_a = rr.reports[0]
    assert about_a.ssrc == 0xA and about_a.lsr == ntp32_from_unix(10.0)
    assert about_a.dlsr == int(0.1 * 65536)                   # 6553: 100 ms in 1/65536 s
    assert about_a.highest_seq == 100 and about_a.cumulative_lost == 0
    a.on_rtcp(reply, 10.18)
    assert a.rtt_ms == pytest.approx(80.0, abs=0.05)          # 16.16 fixed point: 15 us steps
    assert a.stats()["rtt_ms"] == pytest.approx(80.0, abs=0.05)


def parse_fields(data: bytes) -> tuple[int, int]:
    seq, ts = struct.unpack_from("!HI", data, 2)
    return seq, ts


def test_rtt_ignored_without_lsr_or_for_an_lsr_we_never_sent():
    s = session(ssrc=0xA)
    s.on_rtp_sent(1, 160, 0)
    s.report(0.0, sending=True)
    s.on_rtcp(build_rr(0xB, [block(ssrc=0xA, lsr=0, dlsr=0)]), 1.0)
    assert s.rtt_ms is None
    s.on_rtcp(build_rr(0xB, [block(ssrc=0xA, lsr=0x12345678, dlsr=0)]), 1.0)
    assert s.rtt_ms is None
    assert s.remote_fraction_lost == 0.25  # the rest of the block is still taken


def test_remote_view_of_our_stream():
    s = session(ssrc=0xA, clock_rate=8000)
    s.on_rtcp(build_rr(0xB, [block(ssrc=0x99, fraction=255, lost=7, jitter=999),    # about someone else
                             block(ssrc=0xA, fraction=64, lost=-2, jitter=80, lsr=0)]), 5.0)
    assert (s.remote_fraction_lost, s.remote_packets_lost, s.remote_jitter_ms) == (0.25, -2, 10.0)
    st = s.stats()
    assert (st["remote_fraction_lost"], st["remote_packets_lost"], st["remote_jitter_ms"]) == (0.25, -2, 10.0)
    assert st["rtcp_received"] == 1 and st["rtt_ms"] is None


def test_sr_or_rr_and_sdes_always():
    s = session(ssrc=0xA, cname="alice@example.com")
    s.on_rtp_sent(50, 8000, 123456)
    sr, sdes = parse_rtcp(s.report(5.0, sending=True))
    assert isinstance(sr, SenderReport) and (sr.packet_count, sr.octet_count, sr.rtp_ts) == (50, 8000, 123456)
    assert sdes == Sdes([(0xA, "alice@example.com")])
    rr, sdes = parse_rtcp(s.report(10.0, sending=False))
    assert rr == ReceiverReport(0xA, []) and isinstance(sdes, Sdes)
    # sending=None: decided by whether the packet count moved since the last report
    assert isinstance(parse_rtcp(s.report(15.0))[0], ReceiverReport)
    s.on_rtp_sent(60, 9600, 125056)
    assert isinstance(parse_rtcp(s.report(20.0))[0], SenderReport)
    assert isinstance(parse_rtcp(s.report(25.0))[0], ReceiverReport)
    assert s.rtcp_sent == 5


def test_sr_rtp_timestamp_extrapolated_to_report_time():
    s = session(clock_rate=8000)
    s.on_rtp_sent(1, 160, 1000, at=4.0)
    [sr, _] = parse_rtcp(s.report(4.5, sending=True))
    assert sr.rtp_ts == 1000 + 4000  # 0.5 s at 8 kHz


def test_report_blocks_and_fraction_lost_from_session():
    s = session(ssrc=0xA)
    assert s.on_rtp_received(0xB, 0, 0, 0.0) is False  # probation
    assert s.receiver is not None and s.receiver.ssrc == 0xB
    feed_rtp(s, 0xB, [n for n in range(1, 101) if n % 4 != 0])  # 1..100 less 25 -> with seq 1 as base
    [rr, _] = parse_rtcp(s.report(3.0, sending=False))
    [b] = rr.reports
    assert b.ssrc == 0xB and b.highest_seq == 99 and b.cumulative_lost == 24 and b.lsr == 0 and b.dlsr == 0
    assert b.fraction_lost == 24 * 256 // 99  # 62
    st = s.stats()
    assert st["packets_received"] == 75 and st["packets_lost"] == 24 and st["fraction_lost"] == round(24 / 99, 4)
    # nothing heard since: no block about B in the next report
    [rr, _] = parse_rtcp(s.report(8.0, sending=False))
    assert rr.reports == []


def test_dlsr_from_remote_sr():
    s = session(ssrc=0xA)
    feed_rtp(s, 0xB, range(0, 10))
    s.on_rtcp(build_sr(0xB, FIG2_NTP, 0, 10, 1600), 100.0)
    [rr, _] = parse_rtcp(s.report(105.25, sending=False))
    assert (rr.reports[0].lsr, rr.reports[0].dlsr) == (FIG2_LSR, FIG2_DLSR)  # 5.25 s, as in Figure 2


def test_jitter_reported_in_stats_and_block():
    s = session()
    feed_rtp(s, 0xB, range(0, 100), jitter=0.005)  # every other packet 5 ms late
    expected = 40 * (1 - (15 / 16) ** 98)
    [rr, _] = parse_rtcp(s.report(3.0, sending=False))
    assert rr.reports[0].jitter == int(expected)
    assert s.stats()["jitter_ms"] == round(expected / 8, 2)


def test_ssrc_change_keeps_call_totals():
    s = session()
    feed_rtp(s, 0xB, range(0, 51))    # 50 counted (first is probation)
    feed_rtp(s, 0xC, range(500, 531))  # 30 counted
    assert s.receiver.ssrc == 0xC
    st = s.stats()
    assert st["packets_received"] == 80 and st["packets_lost"] == 0
    [rr, _] = parse_rtcp(s.report(3.0, sending=False))
    assert sorted(b.ssrc for b in rr.reports) == [0xB, 0xC]


def test_many_ssrcs_do_not_grow_the_session():
    s = session()
    for k in range(50):
        feed_rtp(s, 0x100 + k, range(0, 11))  # 10 counted each
    assert len(s._sources) <= 4
    assert s.stats()["packets_received"] == 500


def test_bye_compound_and_remote_bye():
    a, b = session(ssrc=0xA), session(ssrc=0xB, seed=9)
    data = a.bye(30.0, reason="hangup")
    packets = parse_rtcp(data)
    assert [type(p) for p in packets] == [ReceiverReport, Sdes, Bye]
    assert packets[-1] == Bye([0xA], "hangup")
    assert not b.remote_bye
    b.on_rtcp(data, 30.05)
    assert b.remote_bye


def test_on_rtcp_garbage_raises_and_is_not_counted():
    s = session()
    with pytest.raises(RtcpError):
        s.on_rtcp(b"\x80\xc9\x00\x09garbage", 1.0)
    with pytest.raises(RtcpError):
        s.on_rtcp(build_rtp(0, 1, 2, 3, bytes(160)), 1.0)
    assert s.rtcp_received == 0


def test_report_interval_schedule():
    s = session(seed=42)
    first = s.next_report_due(100.0)
    assert 100.0 + 1.25 <= first <= 100.0 + 3.75  # half the 5 s minimum, randomised x[0.5, 1.5]
    assert s.next_report_due(101.0) == first       # asking again does not move it
    gaps = []
    now = first
    for _ in range(500):
        s.report(now, sending=False)
        nxt = s.next_report_due(now)
        gaps.append(nxt - now)
        now = nxt
    assert min(gaps) >= 2.5 and max(gaps) <= 7.5
    assert 4.7 < sum(gaps) / len(gaps) < 5.3
    again = session(seed=42)
    assert again.next_report_due(100.0) == first  # the schedule comes from the instance's rng only


def test_stats_shape_is_json_friendly():
    s = session()
    sender = RtpSender(0, ssrc=0xA, seq=1, ts=1)
    for _ in range(10):
        sender.packet(bytes(160), 160)
    s.on_rtp_sent(sender.packets_sent, sender.octets_sent, sender.last_ts)
    st = s.stats()
    assert set(st) == {"packets_sent", "octets_sent", "packets_received", "packets_lost", "fraction_lost",
                       "jitter_ms", "rtt_ms", "remote_fraction_lost", "remote_packets_lost", "remote_jitter_ms",
                       "rtcp_received", "rtcp_sent"}
    assert (st["packets_sent"], st["octets_sent"], st["packets_received"], st["rtt_ms"]) == (10, 1600, 0, None)
    assert json.loads(json.dumps(st)) == st

"""RTP packets, the sending clock and RFC 3550 Appendix A receiver statistics."""

from __future__ import annotations

import random
import struct
import timeit

import pytest

from peers.fuzz import mutated, truncated

from softswitch.media.rtcp import build_rr, build_sdes, build_sr
from softswitch.media.rtp import (MAX_DROPOUT, MAX_MISORDER, MAX_PAYLOAD, ReceiverStats, RtpError, RtpPacket,
                                  RtpSender, build_rtp, parse_rtp)


def header(b0: int = 0x80, b1: int = 0, seq: int = 1, ts: int = 2, ssrc: int = 3) -> bytes:
    return struct.pack("!BBHII", b0, b1, seq, ts, ssrc)


# --- packets ---------------------------------------------------------------------------------

def test_build_rtp_exact_bytes():
    data = build_rtp(0, 1, 160, 0xDEADBEEF, b"\xff" * 4)
    assert data == bytes.fromhex("80000001000000a0deadbeef") + b"\xff" * 4
    marked = build_rtp(101, 0xABCD, 0x01020304, 7, b"", marker=True)
    assert marked == bytes.fromhex("80e5abcd0102030400000007")  # 0x80 | 101 = 0xe5


def test_build_rtp_wraps_fields_and_rejects_bad_pt():
    assert parse_rtp(build_rtp(8, 65536 + 5, (1 << 32) + 9, (1 << 32) + 1, b"x")).seq == 5
    assert parse_rtp(build_rtp(8, 65536 + 5, (1 << 32) + 9, (1 << 32) + 1, b"x")).ts == 9
    with pytest.raises(ValueError):
        build_rtp(128, 1, 1, 1, b"")
    with pytest.raises(ValueError):
        build_rtp(-1, 1, 1, 1, b"")


def test_parse_round_trip():
    payload = bytes(range(160))
    p = parse_rtp(build_rtp(0, 65535, 4294967295, 0xCAFEBABE, payload, marker=True))
    assert p == RtpPacket(0, 65535, 4294967295, 0xCAFEBABE, True, payload, (), None)
    q = parse_rtp(build_rtp(8, 0, 0, 0, b""))
    assert (q.pt, q.marker, q.payload, q.csrcs, q.extension) == (8, False, b"", (), None)


def test_parse_csrcs_extension_and_padding():
    csrcs = struct.pack("!3I", 11, 12, 13)
    ext = struct.pack("!HH", 0xBEDE, 2) + b"\x10\xaa\x00\x00" + b"\x21\xbb\xcc\x00"
    data = header(0x80 | 0x20 | 0x10 | 3, 0x80 | 96) + csrcs + ext + b"voice" + b"\x00\x00\x03"
    p = parse_rtp(data)
    assert p.csrcs == (11, 12, 13)
    assert p.extension == (0xBEDE, b"\x10\xaa\x00\x00\x21\xbb\xcc\x00")
    assert p.payload == b"voice" and p.pt == 96 and p.marker
    # padding may eat the whole payload (count includes itself)
    assert parse_rtp(header(0xA0) + b"\x00\x00\x00\x04").payload == b""


@pytest.mark.parametrize("data, reason", [
    (b"", "short"),
    (header()[:11], "short"),
    (header(0x40), "version"),          # version 1
    (header(0xC0), "version"),          # version 3
    (header(0x00), "version"),          # version 0
    (header(0x82) + b"\x00" * 4, "csrc"),                          # CC=2, one CSRC present
    (header(0x8F) + b"\x00" * 56, "csrc"),                         # CC=15, 14 present
    (header(0x90) + b"\xbe\xde", "extension"),                      # extension header cut
    (header(0x90) + b"\xbe\xde\x00\x02" + b"\x00" * 7, "extension"),  # 2 words claimed, 7 bytes
    (header(0xA0) + b"abc\x00", "padding"),                        # pad count 0
    (header(0xA0) + b"abc\x05", "padding"),                        # pad count > payload
    (header(0xA0), "padding"),                                     # P bit, nothing to pad
    (header() + b"\x00" * (MAX_PAYLOAD + 1), "absurd"),
])
def test_parse_rejects(data: bytes, reason: str):
    with pytest.raises(RtpError, match=reason):
        parse_rtp(data)


def test_parse_rejects_padding_reaching_into_extension():
    data = header(0xB0) + b"\xbe\xde\x00\x01" + b"\x00\x00\x00\x05"  # pad 5 > 4 payload octets
    with pytest.raises(RtpError, match="padding"):
        parse_rtp(data)


def test_payload_size_limit_is_inclusive():
    assert len(parse_rtp(header() + b"\x00" * MAX_PAYLOAD).payload) == MAX_PAYLOAD
    # padding does not count towards the payload
    assert len(parse_rtp(header(0xA0) + b"\x00" * MAX_PAYLOAD + b"\x00" * 9 + b"\x0a").payload) == MAX_PAYLOAD


def test_rtcp_on_rtp_port():
    for b1 in range(200, 205):  # SR RR SDES BYE APP: "pt 72-76 with marker"
        with pytest.raises(RtpError, match="rtcp on rtp port"):
            parse_rtp(header(0x80, b1) + b"\x00" * 20)
    for packet in (build_sr(1, 2, 3, 4, 5), build_rr(1) + build_sdes(1, "a@b")):
        with pytest.raises(RtpError, match="rtcp"):
            parse_rtp(packet)
    assert parse_rtp(header(0x80, 0x80 | 96)).pt == 96  # dynamic types with marker are fine
    assert parse_rtp(header(0x80, 72)).pt == 72          # without the marker it is not RTCP


def test_fuzz_parse_rtp_raises_only_rtp_error():
    rng = random.Random(3550)
    valid = [build_rtp(0, 7, 8, 9, bytes(160)),
             header(0x80 | 0x20 | 0x10 | 2, 0x80) + bytes(8) + b"\xbe\xde\x00\x01" + bytes(4) + b"pay\x00\x02"]
    ok = bad = 0
    for i in range(20000):
        kind = i % 3
        if kind == 0:
            data = rng.randbytes(rng.randrange(0, 64))
            if data and rng.random() < 0.7:  # mostly version 2, to get past the first check
                data = bytes([0x80 | (data[0] & 0x3F)]) + data[1:]
        elif kind == 1:
            data = truncated(rng, valid)
        else:
            data = mutated(rng, valid)
        try:
            p = parse_rtp(data)
        except RtpError:
            bad += 1
        else:
            ok += 1
            assert isinstance(p.payload, bytes) and len(p.payload) <= MAX_PAYLOAD
    assert ok > 1000 and bad > 1000  # the fuzz reached both outcomes


# --- sender ----------------------------------------------------------------------------------

def test_sender_numbers_and_wraps():
    s = RtpSender(0, ssrc=0x11223344, seq=65534, ts=(1 << 32) - 200)
    a = parse_rtp(s.packet(b"\x01" * 160, 160, marker=True))
    b = parse_rtp(s.packet(b"\x02" * 160, 160))
    c = parse_rtp(s.packet(b"\x03" * 80, 80))
    assert [p.seq for p in (a, b, c)] == [65534, 65535, 0]
    assert [p.ts for p in (a, b, c)] == [(1 << 32) - 200, (1 << 32) - 40, 120]
    assert [p.marker for p in (a, b, c)] == [True, False, False]
    assert {p.ssrc for p in (a, b, c)} == {0x11223344}
    assert (s.packets_sent, s.octets_sent) == (3, 400)  # payload octets only
    assert s.last_ts == s.ts == 200


def test_sender_advance_pt_override_and_event_timestamps():
    s = RtpSender(0, ssrc=1, seq=100, ts=1000)
    s.packet(b"a" * 160, 160)
    s.advance(480)  # 60 ms of silence: no packet, the clock runs
    assert s.last_ts == 1640
    start = s.last_ts
    # RFC 4733: one event, three packets, all stamped with the event start, seq still counting
    events = [parse_rtp(s.packet(b"\x05\x0a\x00\xa0", 0, marker=(i == 0), pt=101, ts_override=start))
              for i in range(3)]
    for _ in events:
        s.advance(160)
    assert [(e.pt, e.ts, e.seq) for e in events] == [(101, 1640, 101), (101, 1640, 102), (101, 1640, 103)]
    assert events[0].marker and not events[1].marker
    after = parse_rtp(s.packet(b"b" * 160, 160))
    assert (after.pt, after.ts, after.seq) == (0, 1640 + 480, 104)  # default pt back, clock moved on
    assert s.packets_sent == 5 and s.octets_sent == 320 + 12


def test_sender_random_initial_values():
    senders = [RtpSender(0) for _ in range(8)]
    assert len({s.ssrc for s in senders}) == 8  # 32 random bits: a collision here is ~1e-8
    assert len({(s.seq, s.ts) for s in senders}) == 8
    assert all(0 <= s.seq < 65536 and 0 <= s.ts < 1 << 32 and 0 <= s.ssrc < 1 << 32 for s in senders)
    fixed = RtpSender(8, ssrc=5, seq=6, ts=7)
    assert (fixed.ssrc, fixed.seq, fixed.ts, fixed.pt) == (5, 6, 7, 8)


# --- receiver statistics (RFC 3550 A.1, A.3, A.8) -------------------------------------------

def feed(stats: ReceiverStats, seqs, t0: float = 0.0, step: float = 0.02, samples: int = 160) -> list[bool]:
    """Packets sent every 20 ms, arriving with constant delay; ts follows seq."""
    out = []
    for seq in seqs:
        out.append(stats.update(seq & 0xFFFF, (seq * samples) & 0xFFFFFFFF, t0 + seq * step))
    return out


def test_probation_needs_two_sequential_packets():
    r = ReceiverStats(0xAB)
    assert r.update(1000, 0, 0.0) is False  # on probation: not trusted yet
    assert not r.valid and r.received == 0 and r.expected == 0 and r.lost == 0
    assert r.update(1001, 160, 0.02) is True
    assert r.valid and r.received == 1 and r.expected == 1 and r.base_seq == 1001
    assert feed(r, range(1002, 1010)) == [True] * 8
    assert (r.received, r.expected, r.lost, r.extended_max_seq) == (9, 9, 0, 1009)


def test_probation_restarts_on_a_gap():
    r = ReceiverStats()
    assert feed(r, [10, 12, 14]) == [False, False, False]  # never two in a row
    assert feed(r, [15]) == [True]
    assert r.base_seq == 15 and r.received == 1


def test_probation_across_the_wrap():
    r = ReceiverStats()
    assert r.update(65535, 0, 0.0) is False
    assert r.update(0, 160, 0.02) is True
    assert r.cycles == 0 and r.extended_max_seq == 0 and r.base_seq == 0


def test_sequence_wrap_increments_cycles():
    r = ReceiverStats()
    seqs = list(range(65530, 65536)) + list(range(0, 5))
    assert feed(r, seqs)[1:] == [True] * 10
    assert r.cycles == 65536
    assert r.extended_max_seq == 65536 + 4
    assert r.expected == 10 and r.received == 10 and r.lost == 0
    block = r.make_report_block(0xAB, 0, 0)
    assert block.highest_seq == 0x00010004  # cycle count in the high 16 bits


def test_loss_and_cumulative_lost():
    r = ReceiverStats()
    got = [s for s in range(0, 100) if s % 10 != 5]  # 5, 15, ... 95 lost: 10 packets
    feed(r, got)
    assert r.expected == 99  # base is seq 1 (seq 0 was probation)
    assert r.received == 89 and r.lost == 10


def test_fraction_lost_per_interval():
    r = ReceiverStats()
    feed(r, range(0, 2))
    r.make_report_block(1, 0, 0)  # close the start-up interval
    # next interval: 100 expected, every 4th lost -> 1/4 -> 64 in 8-bit fixed point (RFC 3550 §6.4.1)
    feed(r, [s for s in range(2, 102) if s % 4 != 0])
    assert r.fraction_lost_interval() == 64
    block = r.make_report_block(1, 0, 0)
    assert (block.fraction_lost, block.cumulative_lost) == (64, 25)
    # an interval without loss reports 0 even though the cumulative count stays
    feed(r, range(102, 152))
    block = r.make_report_block(1, 0, 0)
    assert (block.fraction_lost, block.cumulative_lost) == (0, 25)
    # nothing received in an interval: 0, not a division by zero
    assert r.make_report_block(1, 0, 0).fraction_lost == 0


def test_fraction_lost_rounds_down_and_caps():
    r = ReceiverStats()
    feed(r, [0, 1])
    r.make_report_block(1, 0, 0)
    feed(r, [4])  # 2, 3 lost, 4 received: 2/3 of 256 = 170.67 -> 170
    assert r.make_report_block(1, 0, 0).fraction_lost == 170
    feed(r, [2004])  # 1999 lost of 2000 -> 255.87 -> 255, not 256 (which would wrap to 0)
    assert r.make_report_block(1, 0, 0).fraction_lost == 255


def test_misordered_packet_is_accepted_and_duplicates_counted():
    r = ReceiverStats()
    feed(r, [0, 1, 2, 4, 5])
    assert r.lost == 1
    assert feed(r, [3]) == [True]  # late, within MAX_MISORDER
    assert r.max_seq == 5 and r.lost == 0 and r.duplicates == 0
    assert feed(r, [3, 5]) == [True, True]  # duplicates: RFC counts them as received
    assert r.duplicates == 2 and r.lost == -2
    block = r.make_report_block(1, 0, 0)
    assert block.cumulative_lost == -2 and block.fraction_lost == 0


def test_late_packet_over_the_wrap():
    r = ReceiverStats()
    feed(r, [65533, 65534, 0, 1])  # 65535 late
    assert r.lost == 1 and r.cycles == 65536
    assert feed(r, [65535]) == [True]
    assert r.lost == 0 and r.cycles == 65536 and r.max_seq == 1  # a late packet does not un-wrap


def test_large_jump_is_dropped_until_confirmed_then_resyncs():
    r = ReceiverStats(0x1234)
    feed(r, range(100, 200))
    assert r.received == 99
    assert r.update(9000, 0, 5.0) is False  # jump > MAX_DROPOUT: suspect
    assert r.update(20000, 0, 5.02) is False  # another, not sequential with the first
    assert r.received == 99 and r.max_seq == 199
    assert r.update(20001, 160, 5.04) is True  # confirms 20000 -> 20001: the source restarted
    assert r.base_seq == 20001 and r.max_seq == 20001 and r.received == 1 and r.expected == 1
    assert r.carried_received == 99 and r.carried_expected == 99  # call totals keep the old run
    feed(r, range(20002, 20010), t0=5.04 - 20001 * 0.02)
    assert r.lost == 0 and r.received == 9


def test_step_back_beyond_misorder_is_a_jump():
    r = ReceiverStats()
    feed(r, range(1000, 1300))
    # A.1: late means udelta > 2^16 - MAX_MISORDER, so 99 back is late and 100 back is not
    assert r.update(1299 - (MAX_MISORDER - 1), 0, 7.0) is True
    assert r.update(1299 - MAX_MISORDER, 0, 7.0) is False       # restart candidate
    assert r.update(1299 + MAX_DROPOUT, 0, 7.0) is False        # 3000 ahead: suspect
    assert r.update(1299 + MAX_DROPOUT - 1, 0, 7.0) is True     # 2999 ahead: a gap, accepted
    # 2998 skipped, minus one because the "late" packet was a duplicate (counted as received)
    assert r.max_seq == 1299 + MAX_DROPOUT - 1 and r.lost == MAX_DROPOUT - 2 - 1 and r.duplicates == 1


def test_ssrc_restart_via_reset():
    r = ReceiverStats(1)
    feed(r, range(0, 50))
    r.reset(2)
    assert r.ssrc == 2 and not r.valid and r.received == 0 and r.jitter == 0
    assert feed(r, [7000, 7001, 7002]) == [False, True, True]
    assert r.received == 2 and r.base_seq == 7001


def test_cumulative_lost_clamps_to_24_bits():
    r = ReceiverStats()
    seq = 0
    feed(r, [0, 1])
    seq = 1
    for _ in range(2900):  # each step skips 2998 packets (under MAX_DROPOUT): 8.7 million lost
        seq += MAX_DROPOUT - 1
        r.update(seq & 0xFFFF, 0, 0.0)
    assert r.lost > 0x7FFFFF
    assert r.make_report_block(1, 0, 0).cumulative_lost == 0x7FFFFF


def test_jitter_zero_for_constant_transit():
    r = ReceiverStats()
    feed(r, range(0, 200), t0=123.456)  # 50 ms of constant network delay, any epoch
    assert r.jitter == pytest.approx(0.0, abs=1e-6)


def test_jitter_zero_across_timestamp_wrap():
    r = ReceiverStats()
    base = (1 << 32) - 160 * 10
    for i in range(30):
        r.update(i, (base + 160 * i) & 0xFFFFFFFF, 0.02 * i)
    assert r.jitter == pytest.approx(0.0, abs=1e-6)


def test_jitter_alternating_delay():
    # Every other packet is 5 ms late: |D| = 40 timestamp units for every pair, so
    # J_n = J_{n-1} + (40 - J_{n-1})/16, i.e. J_n = 40 * (1 - (15/16)**n) (RFC 3550 A.8).
    r = ReceiverStats(clock_rate=8000)
    for i in range(100):
        r.update(i, 160 * i, 0.02 * i + (0.005 if i % 2 else 0.0))
    n = 100 - 2  # probation packet, then the first accepted one only seeds the transit
    expected = 40 * (1 - (15 / 16) ** n)
    assert r.jitter == pytest.approx(expected, rel=1e-9)
    assert r.jitter == pytest.approx(39.9, abs=0.1)
    assert r.jitter_ms == pytest.approx(expected / 8, rel=1e-9)  # 8 units per ms at 8 kHz
    assert r.make_report_block(1, 0, 0).jitter == int(expected)


def test_jitter_single_spike_decays():
    r = ReceiverStats()
    feed(r, range(0, 10))
    r.update(10, 1600, 10 * 0.02 + 0.010)  # one packet 10 ms late: D = 80
    assert r.jitter == pytest.approx(80 / 16)
    r.update(11, 1760, 11 * 0.02)          # back on time: D = 80 again
    assert r.jitter == pytest.approx(5 + (80 - 5) / 16)


def test_jitter_uses_clock_rate():
    r = ReceiverStats(clock_rate=48000)
    for i in range(50):
        r.update(i, 960 * i, 0.02 * i + (0.002 if i % 2 else 0.0))
    assert r.jitter == pytest.approx(96 * (1 - (15 / 16) ** 48), rel=1e-9)  # 2 ms at 48 kHz = 96
    assert r.jitter_ms == pytest.approx(2 * (1 - (15 / 16) ** 48), rel=1e-9)


def test_report_block_fields():
    r = ReceiverStats(0x5555)
    feed(r, range(10, 20))
    b = r.make_report_block(0x5555, 0xB7052000, 0x00054000)
    assert (b.ssrc, b.highest_seq, b.lsr, b.dlsr, b.cumulative_lost, b.jitter) == (
        0x5555, 19, 0xB7052000, 0x00054000, 0, 0)


# --- cost ------------------------------------------------------------------------------------

def test_timing_report():
    data = build_rtp(0, 1234, 567890, 0xDEADBEEF, bytes(160))
    n = 100000
    parse_us = min(timeit.repeat(lambda: parse_rtp(data), number=n, repeat=3)) / n * 1e6
    payload = bytes(160)
    build_us = min(timeit.repeat(lambda: build_rtp(0, 1234, 567890, 0xDEADBEEF, payload), number=n,
                                 repeat=3)) / n * 1e6
    sender = RtpSender(0, ssrc=1, seq=1, ts=1)
    send_us = min(timeit.repeat(lambda: sender.packet(payload, 160), number=n, repeat=3)) / n * 1e6
    stats = ReceiverStats()
    counter = iter(range(10 ** 9))

    def upd() -> None:
        i = next(counter)
        stats.update(i & 0xFFFF, (i * 160) & 0xFFFFFFFF, i * 0.02)
    update_us = min(timeit.repeat(upd, number=n, repeat=3)) / n * 1e6
    print(f"\nparse_rtp {parse_us:.3f} us, build_rtp {build_us:.3f} us, RtpSender.packet {send_us:.3f} us, "
          f"ReceiverStats.update {update_us:.3f} us")

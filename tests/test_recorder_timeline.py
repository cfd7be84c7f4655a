"""The recorder's packet timeline (sans-IO): RTP packets in, two aligned tracks out."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from softswitch.media.g711 import ALAW_DECODE, ULAW_DECODE, alaw_encode, ulaw_encode
from softswitch.recorder.timeline import FRAME, RATE, Timeline

EPOCH = 1000.0


def packet(seq: int, ts: int, payload: bytes, pt: int = 0, ssrc: int = 0x1234, marker: bool = False,
           csrc: int = 0, ext_words: int | None = None, pad: int = 0) -> bytes:
    b0 = 0x80 | csrc | (0x10 if ext_words is not None else 0) | (0x20 if pad else 0)
    head = struct.pack("!BBHII", b0, pt | (0x80 if marker else 0), seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)
    head += b"\0\0\0\1" * csrc
    if ext_words is not None:
        head += struct.pack("!HH", 0xBEDE, ext_words) + b"\xAA" * 4 * ext_words
    return head + payload + (bytes(pad - 1) + bytes([pad]) if pad else b"")


def tone(n: int, value: int) -> np.ndarray:
    """A recognisable G.711-exact signal: a ramp of decoded μ-law values around ``value``."""
    return ULAW_DECODE[(np.arange(n) + value) % 256]


class Sender:
    """One RTP stream: 20 ms packets of a known signal, timestamps from ``ts0``."""

    def __init__(self, stream: int, signal: np.ndarray, ts0: int = 5000, ssrc: int = 0x1234, pt: int = 0) -> None:
        self.stream, self.signal, self.ts0, self.ssrc, self.pt = stream, signal, ts0, ssrc, pt
        self.enc = ulaw_encode if pt == 0 else alaw_encode

    def item(self, k: int, arrive: float, **kw) -> tuple[int, float, bytes]:
        pcm = self.signal[k * FRAME:(k + 1) * FRAME]
        return self.stream, arrive, packet(k, self.ts0 + k * FRAME, self.enc(pcm), self.pt, self.ssrc, **kw)


def run(tl: Timeline, slot: int, items: list, until: float) -> np.ndarray:
    """Ingest in 250 ms batches by arrival and take everything up to ``until``; (2, n) audio."""
    items = sorted(items, key=lambda it: it[1])
    out = []
    t = EPOCH
    while t < until:
        t += 0.25
        batch = [it for it in items if t - 0.25 <= it[1] < t]
        tl.ingest(batch)
        hi = tl.horizon(t)
        lo = int(tl.written[slot])
        if hi > lo:
            out.append(tl.take([slot], lo, hi)[0].T)
    tl.ingest([])
    lo = int(tl.written[slot])
    hi = tl.frame_position(until)
    if hi > lo:
        out.append(tl.take([slot], lo, hi)[0].T)
    return np.concatenate(out, axis=1)


def test_jittered_streams_land_on_their_timestamps_and_stay_aligned():
    rng = np.random.default_rng(3)
    tl = Timeline(EPOCH)
    tl.open_slot(0, tl.frame_position(EPOCH))
    seconds = 10
    said, heard = tone(RATE * seconds, 0), tone(RATE * seconds, 77)
    a, b = Sender(0, said, ts0=123456), Sender(1, heard, ts0=0xFFFFF000)   # b's timestamps wrap
    items = []
    for k in range(seconds * 50):
        # a is sent from t=0, b from t=0 too; arrivals jitter up to 40 ms, the first packets the most
        items.append(a.item(k, EPOCH + 0.02 * k + (0.04 if k == 0 else rng.uniform(0, 0.04))))
        items.append(b.item(k, EPOCH + 0.02 * k + (0.04 if k == 0 else rng.uniform(0, 0.04))))
    out = run(tl, 0, items, EPOCH + seconds + 0.5)
    # both tracks sit where the least-delayed packet puts them: the first packets within 10 ms of t=0 (the
    # least delay of the first batch), from the fourth second on within 1 ms (the least delay seen), never apart
    for track, signal in ((out[0], said), (out[1], heard)):
        assert np.flatnonzero(track)[0] <= 80
        for second in range(4, seconds - 1):
            part = slice(RATE * second, RATE * second + 800)
            shift = [d for d in range(0, 9) if np.array_equal(track[part.start + d:part.stop + d], signal[part])]
            assert shift, f"at {second} s the track is not the signal at a 0-1 ms offset"
    c = tl.counters(0)
    assert c["caller"]["received"] == c["agent"]["received"] == seconds * 50
    assert c["caller"]["late"] == c["agent"]["late"] == 0


def test_loss_and_silence_suppression_leave_silence_of_the_right_length():
    tl = Timeline(EPOCH)
    tl.open_slot(0, tl.frame_position(EPOCH))
    sig = tone(RATE * 4, 5)
    a = Sender(0, sig)
    items = [a.item(k, EPOCH + 0.02 * k) for k in range(200) if k not in (10, 11, 12) and not 100 <= k < 150]
    out = run(tl, 0, items, EPOCH + 4.5)
    track = out[0]
    assert np.all(track[10 * FRAME:13 * FRAME] == 0) and np.all(track[100 * FRAME:150 * FRAME] == 0)
    np.testing.assert_array_equal(track[150 * FRAME:200 * FRAME], sig[150 * FRAME:200 * FRAME])
    np.testing.assert_array_equal(track[13 * FRAME:100 * FRAME], sig[13 * FRAME:100 * FRAME])


def test_new_ssrc_and_timestamp_jump_reanchor_at_arrival():
    tl = Timeline(EPOCH)
    tl.open_slot(0, tl.frame_position(EPOCH))
    sig = tone(RATE * 6, 9)
    first = Sender(1, sig, ts0=1000, ssrc=1)
    second = Sender(1, sig, ts0=999_999, ssrc=2)        # the agent after a transfer: another source
    items = [first.item(k, EPOCH + 0.02 * k) for k in range(50)]
    items += [second.item(k, EPOCH + 2.0 + 0.02 * (k - 100)) for k in range(100, 150)]
    jumped = Sender(1, sig, ts0=999_999 - 8 * RATE, ssrc=2)  # same source, timestamps 8 s back
    items += [jumped.item(k, EPOCH + 4.0 + 0.02 * (k - 200)) for k in range(200, 250)]
    out = run(tl, 0, items, EPOCH + 6)[1]
    np.testing.assert_array_equal(out[:50 * FRAME], sig[:50 * FRAME])
    assert np.all(out[50 * FRAME:100 * FRAME] == 0)
    np.testing.assert_array_equal(out[100 * FRAME:150 * FRAME], sig[100 * FRAME:150 * FRAME])
    np.testing.assert_array_equal(out[200 * FRAME:250 * FRAME], sig[200 * FRAME:250 * FRAME])
    assert tl.counters(0)["agent"]["anchors"] == 3


def test_late_packets_are_counted_not_placed_and_non_audio_is_skipped():
    tl = Timeline(EPOCH, delay_s=0.1)
    tl.open_slot(0, tl.frame_position(EPOCH))
    sig = tone(RATE * 2, 1)
    a = Sender(0, sig)
    items = [a.item(k, EPOCH + 0.02 * k) for k in range(100) if k != 20]
    items.append(a.item(20, EPOCH + 0.02 * 20 + 1.0))                     # a whole second late
    dtmf = packet(500, 5000 + 30 * FRAME, bytes(4), pt=101)               # telephone-event
    cn = packet(501, 5000 + 31 * FRAME, bytes(1), pt=13)                  # comfort noise
    items += [(0, EPOCH + 0.5, dtmf), (0, EPOCH + 0.5, cn), (0, EPOCH + 0.5, b"\x80\x00"),
              (0, EPOCH + 0.5, b"\x00" * 172), (7, EPOCH + 0.5, packet(1, 1, bytes(160)))]  # short, v0, no slot 3
    out = run(tl, 0, items, EPOCH + 2.5)[0]
    assert np.all(out[20 * FRAME:21 * FRAME] == 0)
    c = tl.counters(0)["caller"]
    assert c["received"] == 99 and c["late"] == 1 and c["ignored"] == 2


def test_header_extensions_csrc_and_padding_are_parsed():
    tl = Timeline(EPOCH)
    tl.open_slot(0, tl.frame_position(EPOCH))
    sig = tone(RATE, 40)
    items = []
    for k in range(50):
        kw = [{}, {"csrc": 2}, {"ext_words": 3}, {"pad": 4}, {"csrc": 1, "ext_words": 1, "pad": 2}][k % 5]
        pcm = sig[k * FRAME:(k + 1) * FRAME]
        items.append((0, EPOCH + 0.02 * k, packet(k, 777 + k * FRAME, alaw_encode(pcm), pt=8, **kw)))
    out = run(tl, 0, items, EPOCH + 1.5)[0]
    np.testing.assert_array_equal(out[:RATE], ALAW_DECODE[np.frombuffer(alaw_encode(sig), np.uint8)])


def test_a_growing_delay_is_waited_for_without_losing_packets():
    """A sender whose clock runs 0.5 % slow (or a far end's queue that grows): its packets arrive later and later
    against their timestamps; they keep their places and the horizon waits for them."""
    tl = Timeline(EPOCH, delay_s=0.2)
    tl.open_slot(0, tl.frame_position(EPOCH))
    seconds = 60
    sig = tone(RATE * seconds, 3)
    a = Sender(0, sig)
    items = [a.item(k, EPOCH + 0.02 * k * 1.005) for k in range(seconds * 50)]
    out = run(tl, 0, items, EPOCH + seconds * 1.005 + 0.5)[0]
    c = tl.counters(0)["caller"]
    assert c["late"] == 0 and c["received"] == seconds * 50 and c["anchors"] == 1
    np.testing.assert_array_equal(out[:len(sig)], sig)
    assert tl.lateness > 0.25 * RATE        # it has been waiting 300 ms by the end


def test_many_slots_ring_wrap_and_a_slot_reused():
    tl = Timeline(EPOCH, ring_s=1.0, delay_s=0.1)
    senders = {}
    for slot in range(20):
        tl.open_slot(slot, tl.frame_position(EPOCH))
        senders[slot] = (Sender(2 * slot, tone(RATE * 3, slot)), Sender(2 * slot + 1, tone(RATE * 3, 100 + slot)))
    t = EPOCH
    outs = {slot: [] for slot in senders}
    for batch in range(12):
        items = [s.item(k, EPOCH + 0.02 * k) for pair in senders.values() for s in pair
                 for k in range(batch * 12, batch * 12 + 12) if k < 150]
        tl.ingest(items)
        t = EPOCH + (batch + 1) * 0.25
        lo, hi = int(tl.written[0]), tl.horizon(t)
        block = tl.take(list(senders), lo, hi)
        for i, slot in enumerate(senders):
            outs[slot].append(block[i].T)
    for slot, (a, b) in senders.items():
        out = np.concatenate(outs[slot], axis=1)
        np.testing.assert_array_equal(out[0, :140 * FRAME], a.signal[:140 * FRAME])
        np.testing.assert_array_equal(out[1, :140 * FRAME], b.signal[:140 * FRAME])
    tl.close_slot(3)
    tl.ingest([senders[3][0].item(1, EPOCH + 3.0)])      # a closed slot takes nothing
    assert tl.counters(3)["caller"]["received"] == 144
    tl.open_slot(3, tl.frame_position(EPOCH + 3.0))
    assert tl.counters(3)["caller"]["received"] == 0 and not tl.buf[3].any()


def test_packets_sent_after_the_start_are_kept_when_their_timing_puts_them_before_it():
    """A prompt played right after the recording starts, its first ticks late (a busy event loop): the least-
    delayed packets put those first ones before the start; the start moves back instead of losing them."""
    tl = Timeline(EPOCH)
    t_start = EPOCH + 1.003
    tl.open_slot(0, tl.frame_position(t_start))
    sig = tone(RATE * 3, 1)
    a = Sender(1, sig)
    items = []
    for k in range(100):
        due = EPOCH + 0.99 + 0.02 * k                 # ticks due from before the start...
        sent = max(due, EPOCH + 1.06) if k < 4 else due + 0.001   # ...the first four ran late, at 1.06
        if sent >= t_start:
            items.append(a.item(k, sent))
    out = run(tl, 0, items, EPOCH + 3.5)[1]
    c = tl.counters(0)["agent"]
    assert c["early"] == 0 and c["received"] == 100
    assert tl.start[0] < tl.opened[0]
    first = np.flatnonzero(out)[0]
    np.testing.assert_array_equal(out[first:first + 100 * FRAME], sig[:100 * FRAME])


def test_take_rejects_more_than_the_ring():
    tl = Timeline(EPOCH, ring_s=1.0)
    tl.open_slot(0, 0)
    with pytest.raises(ValueError):
        tl.take([0], 0, tl.ring + FRAME)

"""Both directions of every recorded call on one sample clock, placed from the RTP packets themselves (sans-IO).

Why packets: decoding each packet through a jitter buffer and a 20 ms tick on the event loop cost a recorded call
4.8x a relayed one. Here the media code only appends ``(stream, arrival, packet)`` to one shared list (``intake``);
a worker turns a whole batch, every recorded call at once, into audio with a handful of numpy operations.

Placement: stream ``s`` puts a packet's samples at ``anchor_pos + (ts - anchor_ts)`` on the switch's 8 kHz clock
(sample 0 = ``epoch``). The anchor follows the *least-delayed* packet: one that arrives earlier than its position
says moves the anchor back, so the first packet's jitter does not stay in the timing (and a path that gets
shorter overwrites a little audio rather than leaving a gap). Packets that come later than their place (a path
that gets longer, a far end's queue, a sender clock slower than ours) keep their place: the recorder waits for
them (below). A new SSRC, or a timestamp more than a second off, re-anchors at the packet's arrival (a new
source after a transfer, a sender's jump). So the two tracks of a call sit where the switch heard them and
cannot drift apart: loss, late packets, hold and silence suppression leave silence, never a shorter track.

Audio is handed out ``delay_s`` behind real time (late packets still find their place) from a ring of
``ring_s`` per stream; longer while packets have lately come later than that (a busy event loop reading its
sockets late, a far end's queue): the latest lateness seen plus 50 ms, decaying by 10 % a batch, at most half
the ring. Only G.711 (static payload types 0 and 8) is audio; telephone-events, comfort noise and unknown types
are counted and skipped, so a keyed card number is not in the recording.

Not thread-safe: one owner (the recorder's worker) calls everything except ``intake.append``.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import as_strided

from softswitch.media.g711 import ALAW_DECODE, ULAW_DECODE

__all__ = ["FRAME", "RATE", "Timeline"]

RATE = 8000
FRAME = 160                  # samples in 20 ms: windows handed out are whole frames
MAX_PAYLOAD = 1600           # samples in one packet (200 ms); longer payloads are dropped as malformed
JUMP = RATE                  # a timestamp more than 1 s off its expected place: re-anchor
EARLY = 16                   # a packet 2 ms earlier than its place moves the anchor back
MARGIN = 400                 # the horizon waits this much longer than the latest packet seen lately (50 ms)
DECAY = 0.9                  # ... whose lateness is forgotten by this factor per batch
_BIG = np.iinfo(np.int64).max // 4

_PT_CODEC = np.full(128, -1, np.int8)
_PT_CODEC[0], _PT_CODEC[8] = 0, 1   # PCMU, PCMA
_DECODE = (ULAW_DECODE, ALAW_DECODE)
COUNTERS = ("received", "late", "early", "ignored", "anchors")


def _u32(blob: np.ndarray, at: np.ndarray) -> np.ndarray:
    b = [blob[at + i].astype(np.int64) for i in range(4)]
    return (b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]


def _wrap32(d: np.ndarray) -> np.ndarray:
    """A difference of RTP timestamps, taken modulo 2**32 into [-2**31, 2**31)."""
    return ((d + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


class Timeline:
    """Slots of two streams each (0: what the caller says, 1: what it hears); ``open`` / ``ingest`` / ``take``."""

    def __init__(self, epoch: float, *, delay_s: float = 0.25, ring_s: float = 4.0) -> None:
        self.epoch = epoch
        self.delay = int(delay_s * RATE)
        self.ring = max(int(ring_s * RATE) // FRAME * FRAME, 4 * MAX_PAYLOAD)
        if self.delay + 2 * MAX_PAYLOAD >= self.ring:
            raise ValueError(f"ring_s {ring_s} is too short for delay_s {delay_s}")
        self.intake: list[tuple[int, float, bytes]] = []   # appended by media code, drained by ``drain``
        self.slots = 0
        self.late_total = 0          # packets too late for their stretch, every recording so far
        self.lateness = 0.0          # samples: the latest arrival behind its place seen lately (decaying)
        self._grow(8)

    # ------------------------------------------------------------------ clock
    def position(self, t: float) -> int:
        """Sample position of monotonic time ``t``."""
        return int(math.floor((t - self.epoch) * RATE))

    def frame_position(self, t: float) -> int:
        """The first whole-frame position at or after ``t`` (where a recording or a pause starts)."""
        return -(-self.position(t) // FRAME) * FRAME

    def horizon(self, now: float) -> int:
        """Audio before this (frame-aligned) position can be handed out: packets for it have had ``delay_s``
        (or longer, while packets come later than that)."""
        wait = min(max(self.delay, int(self.lateness) + MARGIN), self.ring // 2)
        return (self.position(now) - wait) // FRAME * FRAME

    # ------------------------------------------------------------------ slots
    def _grow(self, slots: int) -> None:
        old, n = self.slots, slots
        if n <= old:
            return
        buf = np.zeros((n, self.ring, 2), np.int16)   # interleaved: a slot's stretch is its stereo audio as is
        if old:
            buf[:old] = self.buf
        self.buf = buf

        def extend(name: str, dtype: type, fill: int, per_stream: bool = True) -> None:
            size = 2 * n if per_stream else n
            arr = np.full(size, fill, dtype)
            if old:
                prev = getattr(self, name)
                arr[:len(prev)] = prev
            setattr(self, name, arr)

        extend("open", bool, 0)
        extend("anchored", bool, 0)
        for name in ("ssrc", "a_ts", "a_pos"):
            extend(name, np.int64, 0)
        for name in COUNTERS:
            extend(name, np.int64, 0)
        extend("start", np.int64, 0, per_stream=False)
        extend("opened", np.int64, 0, per_stream=False)
        extend("written", np.int64, 0, per_stream=False)
        self.slots = n

    def open_slot(self, slot: int, start: int) -> None:
        """Start recording ``slot`` (streams 2*slot and 2*slot + 1) at frame-aligned position ``start``."""
        if slot >= self.slots:
            self._grow(max(slot + 1, 2 * self.slots))
        s = slice(2 * slot, 2 * slot + 2)
        self.open[s] = True
        self.anchored[s] = False
        for name in COUNTERS:
            getattr(self, name)[s] = 0
        self.buf[slot] = 0
        self.start[slot] = self.written[slot] = self.opened[slot] = start

    def close_slot(self, slot: int) -> None:
        self.open[2 * slot:2 * slot + 2] = False

    def counters(self, slot: int) -> dict[str, dict[str, int]]:
        return {party: {name: int(getattr(self, name)[2 * slot + i]) for name in COUNTERS}
                for i, party in enumerate(("caller", "agent"))}

    # ------------------------------------------------------------------ packets in
    def drain(self) -> list[tuple[int, float, bytes]]:
        """Take what the media code appended so far (appends may go on meanwhile: only the first n are removed)."""
        n = len(self.intake)
        items = self.intake[:n]
        del self.intake[:n]
        return items

    def ingest(self, items: list[tuple[int, float, bytes]]) -> None:
        """Parse, anchor and place a batch of packets (in arrival order) on their streams' rings."""
        if not items:
            return
        sids, arrivals, datas = zip(*items)
        n = len(datas)
        sid = np.fromiter(sids, np.int64, n)
        arrive = np.rint((np.fromiter(arrivals, np.float64, n) - self.epoch) * RATE).astype(np.int64)
        lens = np.fromiter(map(len, datas), np.int64, n)
        blob = np.frombuffer(b"".join(datas) + bytes(16), np.uint8)   # the pad keeps header reads in bounds
        off = np.zeros(n, np.int64)
        np.cumsum(lens[:-1], out=off[1:])
        ok = (sid >= 0) & (sid < 2 * self.slots) & (lens >= 12)
        sid = np.where(ok, sid, 0)
        ok &= self.open[sid]
        b0 = blob[off].astype(np.int64)
        ok &= (b0 >> 6) == 2
        hdr = 12 + 4 * (b0 & 0x0F)
        ext = ok & ((b0 & 0x10) != 0)
        if ext.any():
            at = np.minimum(off + hdr, blob.size - 4)
            words = (blob[at + 2].astype(np.int64) << 8) | blob[at + 3]
            hdr = np.where(ext, hdr + 4 + 4 * words, hdr)
        pad = np.where((b0 & 0x20) != 0, blob[np.maximum(off + lens - 1, 0)], 0)
        plen = lens - hdr - pad
        codec = _PT_CODEC[blob[off + 1] & 0x7F]
        audio = ok & (codec >= 0) & (plen > 0) & (plen <= MAX_PAYLOAD)
        if not audio.all():
            skipped = ok & ~audio
            if skipped.any():
                self.ignored += np.bincount(sid[skipped], minlength=2 * self.slots)
            keep = np.flatnonzero(audio)
            sid, arrive, off, hdr, plen, codec = (a[keep] for a in (sid, arrive, off, hdr, plen, codec))
        if not sid.size:
            return
        ts = _u32(blob, off + 4)
        ssrc = _u32(blob, off + 8)
        pos = self._anchor(sid, arrive, ts, ssrc)
        self._place(sid, pos, arrive, blob, off + hdr, plen, codec)

    def _anchor(self, sid: np.ndarray, arrive: np.ndarray, ts: np.ndarray, ssrc: np.ndarray) -> np.ndarray:
        """Each packet's sample position; updates the streams' anchors (see the module docstring)."""
        pos = self.a_pos[sid] + _wrap32(ts - self.a_ts[sid])
        lat = arrive - pos
        slow = ~self.anchored[sid] | (ssrc != self.ssrc[sid]) | (lat > JUMP) | (lat < -JUMP)
        if slow.any():
            slow_streams = np.unique(sid[slow])
            slow = np.isin(sid, slow_streams)
            since: dict[int, int] = {}   # stream -> its packet that last set its anchor in this batch
            for i in np.flatnonzero(slow).tolist():   # in arrival order: anchors change packet by packet
                s = int(sid[i])
                t, a = int(ts[i]), int(arrive[i])
                if not self.anchored[s] or int(ssrc[i]) != self.ssrc[s]:
                    self._set_anchor(s, t, a, int(ssrc[i]))
                    since[s] = i
                p = int(self.a_pos[s]) + int(_wrap32(np.int64(t - int(self.a_ts[s]))))
                late = a - p
                if late > JUMP or late < -JUMP:
                    self._set_anchor(s, t, a, int(ssrc[i]))
                    since[s] = i
                    p = a
                elif late < -EARLY:
                    self.a_pos[s] += late
                    p = a
                pos[i] = p
            # the packets since a stream's (re)anchoring all take its final anchor: the least-delayed of them
            index = np.arange(sid.size)
            for s, i in since.items():
                same = (sid == s) & (index >= i)
                pos[same] = self.a_pos[s] + _wrap32(ts[same] - self.a_ts[s])
            fast = np.flatnonzero(~slow)
        else:
            fast = None
        fs, flat_ = (sid, lat) if fast is None else (sid[fast], lat[fast])
        self.lateness *= DECAY
        if fs.size:
            streams = 2 * self.slots
            lowest = np.full(streams, _BIG, np.int64)
            np.minimum.at(lowest, fs, flat_)
            shift = np.where(lowest < -EARLY, lowest, 0)   # earlier than its place: the anchor moves back
            if shift.any():
                self.a_pos += shift
                if fast is None:
                    pos += shift[sid]
                else:
                    pos[fast] += shift[fs]
            self.lateness = max(self.lateness, float((flat_ - shift[fs]).max()))
        return pos

    def _set_anchor(self, s: int, ts: int, arrive: int, ssrc: int) -> None:
        self.anchored[s] = True
        self.a_ts[s], self.a_pos[s], self.ssrc[s] = ts, arrive, ssrc
        self.anchors[s] += 1

    def _place(self, sid: np.ndarray, pos: np.ndarray, arrive: np.ndarray, blob: np.ndarray, start: np.ndarray,
               plen: np.ndarray, codec: np.ndarray) -> None:
        streams = 2 * self.slots
        slot = sid >> 1
        early = pos < self.start[slot]
        if early.any():
            # a packet that came after the recording started (``opened`` is that moment rounded up to a frame)
            # belongs in it, even if the timing estimate puts it a little before (the stream's first packets were
            # late, e.g. a busy event loop): the start moves back, as long as nothing has been written
            fix = early & (arrive >= self.opened[slot] - FRAME) & (self.written[slot] == self.start[slot])
            if fix.any():
                lowest = self.start.copy()
                np.minimum.at(lowest, slot[fix], np.maximum(pos[fix] // FRAME * FRAME, self.opened[slot[fix]] - RATE))
                moved = lowest < self.start
                self.start[moved] = self.written[moved] = lowest[moved]
                early = pos < self.start[slot]
        written = self.written[slot]
        late = ~early & (pos < written)
        ahead = pos + plen > written + self.ring
        keep = ~(early | late | ahead)
        if early.any():
            self.early += np.bincount(sid[early], minlength=streams)
        if (late | ahead).any():
            self.late += np.bincount(sid[late | ahead], minlength=streams)
            self.late_total += int((late | ahead).sum())
        if not keep.all():
            k = np.flatnonzero(keep)
            sid, pos, start, plen, codec = sid[k], pos[k], start[k], plen[k], codec[k]
        if not sid.size:
            return
        self.received += np.bincount(sid, minlength=streams)
        ring, buf = self.ring, self.buf
        for size in np.unique(plen).tolist():
            g = np.flatnonzero(plen == size) if plen.size and (plen != size).any() else None
            gs, gp, gst, gc = (sid, pos, start, codec) if g is None else (sid[g], pos[g], start[g], codec[g])
            order = np.lexsort((gp, gs))
            gs, gp, gst, gc = gs[order], gp[order], gst[order], gc[order]
            rows = as_strided(blob, shape=(blob.size - size + 1, size), strides=(1, 1))
            payload = rows[gst]                                     # (k, size) uint8, one gather
            if (gc == gc[0]).all():
                pcm = _DECODE[int(gc[0])].take(payload)
            else:
                pcm = np.where((gc == 0)[:, None], ULAW_DECODE.take(payload), ALAW_DECODE.take(payload))
            pcm = pcm.reshape(-1)
            # runs of back-to-back packets of one stream are copied as one slice
            brk = np.ones(gs.size, bool)
            brk[1:] = (gs[1:] != gs[:-1]) | (gp[1:] != gp[:-1] + size)
            firsts = np.flatnonzero(brk)
            ends = np.append(firsts[1:], gs.size)
            for f, e, stream, p in zip(firsts.tolist(), ends.tolist(), gs[firsts].tolist(), gp[firsts].tolist()):
                src = pcm[f * size:e * size]
                row, track = buf[stream >> 1], stream & 1
                o = p % ring
                k = min(src.size, ring - o)
                row[o:o + k, track] = src[:k]
                if k < src.size:
                    row[:src.size - k, track] = src[k:]

    # ------------------------------------------------------------------ audio out
    def take(self, slots: np.ndarray | list[int], lo: int, hi: int) -> np.ndarray:
        """Stereo audio of ``slots`` for positions [lo, hi), shape (n, hi - lo, 2) (column 0: what the caller
        says, 1: what it hears), cleared from the rings. ``lo`` must be each slot's ``written`` position and
        hi - lo at most ``ring``; afterwards ``written`` = hi."""
        slots = np.asarray(slots, np.int64)
        length = hi - lo
        if length < 0 or length > self.ring:
            raise ValueError(f"cannot take {length} samples from a ring of {self.ring}")
        a = lo % self.ring
        b = a + length
        if b <= self.ring:
            out = self.buf[slots, a:b]
            self.buf[slots, a:b] = 0
        else:
            b -= self.ring
            out = np.concatenate([self.buf[slots, a:], self.buf[slots, :b]], axis=1)
            self.buf[slots, a:] = 0
            self.buf[slots, :b] = 0
        self.written[slots] = hi
        return out

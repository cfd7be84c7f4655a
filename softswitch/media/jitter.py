"""Jitter buffer for a terminated G.711 stream: decoded audio on the sender's timeline, one frame per tick.

Peers send 10..60 ms packets (SIPp's pcap replays 30 ms ones) while the media clock pops 20 ms, so
audio is placed by RTP timestamp into a ring of samples rather than queued as packets.

* Timeline: the playout position ``P`` lives on an internal sample axis; a sender timestamp maps onto
  it through an offset, unwrapped against ``P`` (so 32-bit wrap-around never shows). A resync or an
  SSRC change only changes the offset: ``P`` is our clock and does not jump with the sender's.
* Delay is measured, not guessed from the fill level: ``D = now*rate - P - base``, ``base`` being the
  smallest transit (arrival minus packet end) of the last 1-2 s. A packet ``j`` samples slower than
  the fastest one, ``n`` samples long, is in time iff ``j + n <= D``. The adaptive target follows the
  largest recent ``j + n`` (+5 ms): at once upwards, with a 2 s time constant downwards; when the
  fastest path itself gets slower (a route change) the target drops with it, so the step is not
  paid twice.
* ``P`` moves one frame per pop except for one-frame steps towards the target: it stands still while a
  frame is missing anyway (or, in continuous audio, one pitch-repeated frame is inserted, at most one
  per 200 ms) and skips ahead in silence (any amount) or drops one frame with a 5 ms cross-fade in
  continuous audio (after 1 s of surplus). ``Frame.rtp_ts`` shows such a step as a repeat or a skip.
* Loss concealment follows G.711 Appendix I, simplified: repeat the last pitch period (5..20 ms, by
  normalised cross-correlation) with its loop point overlap-added and its first sample stepping from
  the last real one as the signal did a period earlier; gain 1 -> 0.5 -> 0.25 -> 0 over three frames.
  Every return to received audio cross-fades out of the concealment (or silence) over 5 ms.
* Silence is digital zeros, not a noise floor: VAD, level meter, recorder and ASR downstream read
  exact zeros as silence without a threshold, and zeros need no random state. Comfort noise, if
  wanted, is the phone's business (RFC 3389).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MASK = 0xFFFFFFFF
INF = float("inf")
HALF = 1 << 31
SEEN_SLOTS = 256         # (seq, ts) keys remembered for duplicate detection: 5 s of 20 ms packets
BLOCK_S = 1.0            # transit minimum / need maximum are kept per block; two blocks = the window
STRAGGLER_S = 0.5        # packets of the previous SSRC this soon after a change are stragglers, not a change back
RELEASE_TAU_S = 2.0      # the adaptive target shrinks towards the need with this time constant
SHRINK_AFTER = 50        # pops of surplus delay in continuous audio before one frame is dropped
COOLDOWN = 10            # pops between two steps inside continuous audio
MAX_CATCH_UP_FRAMES = 50  # at most 1 s of delay shed quickly after clock stalls


@dataclass(slots=True)
class Frame:
    pcm: np.ndarray          # int16, exactly frame_samples long (a fresh or read-only array the caller may keep)
    rtp_ts: int | None       # RTP timestamp of pcm[0] on the sender's timeline (None while nothing has played yet)
    kind: str                # "audio" | "concealed" | "silence"


def _pitch(h: np.ndarray, lo: int, hi: int, ones: np.ndarray) -> int:
    """Lag (lo..hi) whose earlier stretch best matches the last ``len(ones)`` samples: the period to repeat."""
    seg = h[-(len(ones) + hi):-lo]
    num = np.correlate(seg, h[-len(ones):], "valid")     # [j]: the stretch ending hi - j before the end
    energy = np.correlate(seg * seg, ones, "valid")
    return hi - int(np.argmax(num * np.abs(num) / (energy + 1.0)))


def _to_pcm(x: np.ndarray) -> np.ndarray:
    """float32 samples -> int16, saturating (np.clip's wrapper costs more than the two ufuncs)."""
    np.minimum(x, 32767, out=x)
    np.maximum(x, -32768, out=x)
    return np.rint(x, out=x).astype(np.int16)


def _ramp(k: int) -> np.ndarray:
    return np.arange(1, k + 1, dtype=np.float32) / np.float32(k + 1)


@dataclass(slots=True)
class _Concealer:
    """Continues the last output by pitch repetition; its gain schedule turns a long loss into silence."""
    gain: np.ndarray                 # gain by samples since the loss began, zero from ``decay`` on
    decay: int
    entry: np.ndarray                # weight of the first samples' step correction (1 -> 0)
    lo: int
    hi: int
    ones: np.ndarray                 # the correlation window
    rise: np.ndarray                 # 1, 2, 3, ... for the overlap-add weights
    span: int                        # the most samples asked for at once (a frame)
    active: bool = False
    stretch: bool = False            # an inserted frame (delay step): full gain, the loss clock stands
    loop: np.ndarray = field(default_factory=lambda: np.zeros(1, np.float32))   # the cycle, repeated
    period: int = 1
    phase: int = 0
    pos: int = 0                     # samples concealed since the loss began
    since: int = 0                   # samples produced since start
    jump: float = 0.0

    @property
    def silent(self) -> bool:
        return self.active and not self.stretch and self.pos >= self.decay

    def start(self, hist: np.ndarray, stretch: bool = False) -> None:
        period = _pitch(hist, self.lo, self.hi, self.ones)
        cycle = hist[-period:].copy()
        ola = period // 4        # bend the cycle's tail into the sample before its head: looping has no step
        cycle[-ola:] += (hist[-period - ola:-period] - cycle[-ola:]) * (self.rise[:ola] / np.float32(ola))
        self.loop = np.tile(cycle, -(-(self.span + period) // period))
        self.period, self.phase, self.pos, self.since = period, 0, 0, 0
        # the first repeated sample must step from the last real one as the signal did a period ago
        self.jump = float(hist[-1] - hist[-period - 1])
        self.active, self.stretch = True, stretch

    def next(self, n: int) -> np.ndarray | None:
        """The next n (at most a frame) samples, or None once the gain reached zero."""
        if not self.stretch and self.pos >= self.decay:
            self.pos += n
            return None
        y = self.loop[self.phase:self.phase + n].copy()
        if self.since < len(self.entry):
            m = min(n, len(self.entry) - self.since)
            y[:m] += np.float32(self.jump) * self.entry[self.since:self.since + m]
        if not self.stretch:
            y *= self.gain[self.pos:self.pos + n]
            self.pos += n
        self.phase = (self.phase + n) % self.period
        self.since += n
        return y


class JitterBuffer:
    """One received stream: ``push`` per packet as it arrives, ``pop`` per frame on the media clock."""

    def __init__(self, frame_samples: int = 160, clock_rate: int = 8000, depth_ms: int = 60,
                 adaptive: bool = True, min_depth_ms: int = 20, max_depth_ms: int = 200,
                 max_buffer_ms: int = 1000) -> None:
        if frame_samples <= 0 or clock_rate <= 0:
            raise ValueError("frame_samples and clock_rate must be positive")
        f = self.frame = frame_samples
        self.rate = clock_rate
        self.adaptive = adaptive
        per_ms = clock_rate / 1000
        self._limit = max(int(max_buffer_ms * per_ms), 3 * f)          # the most audio ever held
        ceiling = self._limit - 2 * f
        self._min = min(float(min_depth_ms * per_ms), ceiling)
        self._max = min(max(float(max_depth_ms * per_ms), self._min), ceiling)
        target = min(float(depth_ms * per_ms), ceiling)
        self._target = min(max(target, self._min), self._max) if adaptive else target
        self._seen_max = self._target
        self._safety = f / 4                                            # covers a late media-clock tick
        self._tol = f / 16
        self._fade = max(1, clock_rate // 200)                          # 5 ms cross-fades
        self._alpha = f / clock_rate / RELEASE_TAU_S
        lo, hi, corr = clock_rate // 200, clock_rate // 50, clock_rate // 50    # pitch 50..200 Hz+
        gain = np.interp(np.arange(4 * f), [0, f, 2 * f, 3 * f], [1.0, 0.5, 0.25, 0.0]).astype(np.float32)
        entry = 1 - np.arange(self._fade, dtype=np.float32) / np.float32(self._fade)
        self._conc = _Concealer(gain, 3 * f, entry, lo, hi, np.ones(corr, np.float32),
                                np.arange(1, hi // 4 + 1, dtype=np.float32), f)
        self._ramp = _ramp(self._fade)
        self._hist = np.zeros(corr + hi + 8, np.float32)                # the last output, for concealment
        self._hist_run = 0        # output since _hist was brought up to date, still in the ring behind P
        self._zeros = np.zeros(f, np.int16)
        self._zeros.flags.writeable = False
        # slot = x % cap; holds [P, P + limit) plus the history behind P, which nothing overwrites
        self._cap = self._limit + len(self._hist)
        self._ring = np.zeros(self._cap, np.int16)
        self._iv: list[list[int]] = []  # buffered [start, end) stretches, ascending, none before P once playing
        self._seen = [-1] * SEEN_SLOTS
        self._ssrc: int | None = None
        self._old_ssrc: int | None = None
        self._ssrc_at = 0.0
        self._off = 0             # sender ts = x - off (mod 2**32)
        self._old_off = 0         # the mapping before the last resync or SSRC change, for x < _switch_x
        self._switch_x = 0
        self._straggle_off: int | None = None   # the same source's mapping before its last resync
        self._p = 0               # playout position: x of the next frame's first sample
        self._started = False
        self._first_arrival: float | None = None
        self._cont = False        # the last output sample was received audio at P - 1, unmodified
        self._fresh = True        # nothing played yet: the first audio needs no fade-in
        self._late_run = 0
        self._late_idle = 0       # samples of late packets that found nothing buffered
        self._cool = COOLDOWN
        self._surplus_run = 0
        self._blk_t = -INF
        self._min_cur = self._min_prev = INF
        self._need_cur = self._need_prev = 0.0
        self._received = self._played = self._late = self._duplicates = self._concealed = 0
        self._silence = self._overflow = self._resyncs = self._ssrc_changes = 0
        self._grown = self._shrunk = 0
        self._catch_up = 0        # frames of delay a stalled clock left behind, to shed quickly
        self._blind = 0           # pops during which arrival times say nothing about the network
        self._snap: tuple = ()    # delay estimate as of the last pop (restored after a stall)

    # ------------------------------------------------------------------ ring and stretches
    def _slice(self, x: int, n: int) -> np.ndarray:
        """Ring samples [x, x + n): a view, or a fresh array where the ring wraps."""
        cap = self._cap
        s = x % cap
        e = s + n
        if e <= cap:
            return self._ring[s:e]
        return np.concatenate((self._ring[s:], self._ring[:e - cap]))

    def _end(self) -> int:
        return self._iv[-1][1] if self._iv else self._p

    def _merge(self, x: int, e: int) -> None:
        out = []
        pending = True
        for s0, e0 in self._iv:
            if e0 < x:
                out.append([s0, e0])
            elif s0 > e:
                if pending:
                    out.append([x, e])
                    pending = False
                out.append([s0, e0])
            else:
                x, e = min(x, s0), max(e, e0)
        if pending:
            out.append([x, e])
        self._iv = out

    def _consume(self, q: int) -> None:
        iv = self._iv
        while iv and iv[0][1] <= q:
            del iv[0]
        if iv and iv[0][0] < q:
            iv[0][0] = q

    def _first_audio(self, x: int, n: int) -> int:
        """Offset of the first buffered sample in [x, x + n), or n."""
        for s0, e0 in self._iv:
            if e0 > x:
                return min(max(s0 - x, 0), n)
        return n

    def _rtp(self, x: int) -> int:
        return (x - (self._old_off if x < self._switch_x else self._off)) & MASK

    # ------------------------------------------------------------------ push
    def push(self, seq: int, ts: int, ssrc: int, marker: bool, pcm: np.ndarray, arrival: float) -> None:
        """One decoded packet as it arrived; placement is by timestamp, never by arrival order."""
        self._received += 1
        n = len(pcm)
        if n == 0:
            return
        if n > self._limit:
            ts = (ts + n - self._limit) & MASK
            pcm = pcm[n - self._limit:]
            n = self._limit
        if ssrc != self._ssrc:
            if self._ssrc is None:
                self._adopt(ssrc, ts, arrival)
            elif ssrc == self._old_ssrc and arrival - self._ssrc_at < STRAGGLER_S:
                self._late += 1
                return
            else:
                self._ssrc_changes += 1
                self._old_ssrc, self._ssrc_at = self._ssrc, arrival
                self._seen = [-1] * SEEN_SLOTS
                if self._started:
                    self._ssrc = ssrc
                    self._straggle_off = None
                    self._reanchor(ts, n)
                else:
                    self._reset()
                    self._adopt(ssrc, ts, arrival)
        slot = seq & (SEEN_SLOTS - 1)
        key = (seq << 32) | ts
        if self._seen[slot] == key:
            self._duplicates += 1
            return
        self._seen[slot] = key
        p = self._p
        x = p + ((ts - p + self._off + HALF) & MASK) - HALF
        iv = self._iv
        if not self._started:
            if x < p and self._end() - x <= self._limit:
                self._p = x                          # reordered ahead of playout: start from it
            elif x < p or x - p > self._limit:       # an unrelated timeline before anything played
                self._resyncs += 1
                self._reset()
                self._adopt(ssrc, ts, arrival)
                self._seen[slot] = key
                x = self._p
            self._place(x, pcm, n, arrival)
            return
        d = x - p
        if d + n <= 0:                               # entirely in the past
            if d + n < -self._limit:
                if self._straggler(ts, pcm, n):
                    return
            else:
                if not iv:
                    self._late_idle += n
                # with nothing buffered, re-anchoring costs nothing: do it for a talkspurt, or once it is
                # clear the sender's timeline moved (beyond any depth, or for longer than any depth)
                if iv or not (marker or (self._late_run and max(-d, self._late_idle) > self._max)):
                    self._late += 1
                    self._late_run += 1
                    if -d <= self._max:
                        self._observe(x + n, n, arrival)     # real lateness: the target must grow
                    return
            x = self._resync(ts, n)
        elif d > self._limit or (d + n > self._limit and x > self._end() + self._target):
            if self._straggler(ts, pcm, n):
                return
            x = self._resync(ts, n)
        elif marker and not iv and d - max(0, int(self._target) - n) > 1.5 * self.frame:
            x = self._resync(ts, n)                  # a talkspurt whose timestamps ran fast
        self._late_run = self._late_idle = 0
        self._place(x, pcm, n, arrival)

    def _adopt(self, ssrc: int, ts: int, arrival: float) -> None:
        self._ssrc = ssrc
        self._off = self._old_off = self._p - ts
        self._first_arrival = arrival

    def _reset(self) -> None:
        """Forget everything buffered (only before playout started)."""
        self._iv = []
        self._seen = [-1] * SEEN_SLOTS
        self._blk_t = -INF
        self._min_cur = self._min_prev = INF

    def _straggler(self, ts: int, pcm: np.ndarray, n: int) -> bool:
        """A packet of the timeline before the last resync: placed by the old mapping, never a resync back."""
        if self._straggle_off is None:
            return False
        p = self._p
        x = p + ((ts - p + self._straggle_off + HALF) & MASK) - HALF
        if abs(x - p) > self._limit:
            return False
        if x + n <= p or x + n - p > self._limit:
            self._late += 1
        else:
            self._place(x, pcm, n, None)
        return True

    def _resync(self, ts: int, n: int) -> int:
        self._resyncs += 1
        self._straggle_off = self._off
        return self._reanchor(ts, n)

    def _reanchor(self, ts: int, n: int) -> int:
        """Map ``ts`` to where it plays at the target delay, after whatever is still buffered."""
        p = self._p
        x = max(p, p + int(self._target) - n)
        if self._iv:
            x = max(x, self._iv[-1][1] + self._fade)   # the old audio plays out; the gap cross-fades
        self._old_off, self._switch_x = self._off, x
        self._off = x - ts
        self._late_run = self._late_idle = 0
        self._blk_t = -INF
        self._min_cur = self._min_prev = INF
        return x

    def _place(self, x: int, pcm: np.ndarray, n: int, arrival: float | None) -> None:
        end = x + n
        p = self._p
        over = end - p - self._limit
        if over > 0:                                 # bounded memory: the oldest audio goes
            self._overflow += 1
            self._history_now()
            self._p = p = p + over
            self._consume(p)
            self._cont = False
        if x < p:                                    # its head was already played (or dropped)
            pcm = pcm[p - x:]
            x = p
        cap = self._cap
        s = x % cap
        e = s + len(pcm)
        if e <= cap:
            self._ring[s:e] = pcm
        else:
            k = cap - s
            self._ring[s:] = pcm[:k]
            self._ring[:e - cap] = pcm[k:]
        iv = self._iv
        if not iv or x > iv[-1][1]:
            iv.append([x, end])
        elif x >= iv[-1][0]:
            if end > iv[-1][1]:
                iv[-1][1] = end
        else:
            self._merge(x, end)
        if arrival is not None:
            self._observe(end, n, arrival)

    def _observe(self, end: int, n: int, arrival: float) -> None:
        """Transit of a packet's last sample: keeps the base (fastest path) and the delay it needed."""
        if self._blind:
            return
        transit = arrival * self.rate - end
        if arrival - self._blk_t >= BLOCK_S:
            before = min(self._min_cur, self._min_prev)
            if arrival - self._blk_t >= 2 * BLOCK_S:
                self._min_prev, self._need_prev = INF, 0.0
            else:
                self._min_prev, self._need_prev = self._min_cur, self._need_cur
            self._min_cur, self._need_cur, self._blk_t = transit, 0.0, arrival
            base = min(transit, self._min_prev)
            if self.adaptive and before < base:
                # the fastest path got slower (route change, or an outlier forgotten): the delay measured
                # against it drops by as much, and so does the target, or the step would be paid twice
                self._target = max(self._target - (base - before), self._min)
        elif transit < self._min_cur:
            self._min_cur = transit
        need = transit - min(self._min_cur, self._min_prev) + n + self._safety
        if need > self._need_cur:
            self._need_cur = need
        if self.adaptive and need > self._target:
            self._target = min(need, self._max)
            if self._target > self._seen_max:
                self._seen_max = self._target

    # ------------------------------------------------------------------ pop
    def pop(self, now: float) -> Frame:
        """The next frame_samples of audio; called once per frame period on the media clock."""
        self._snap = (self._target, self._min_cur, self._min_prev, self._need_cur, self._need_prev, self._blk_t)
        if self._blind:
            self._blind -= 1
        f = self.frame
        iv = self._iv
        if not self._started:
            if self._first_arrival is None or not (
                    (iv and iv[-1][1] - self._p >= self._target)
                    or (now - self._first_arrival) * self.rate >= self._target):
                self._silence += 1
                return Frame(self._zeros, None, "silence")
            self._started = True
        p = self._p
        q = p + f
        target = self._target
        if self.adaptive:
            need = max(self._need_cur, self._need_prev, self._min)
            if need < target:
                target = self._target = target - (target - need) * self._alpha
        base = min(self._min_cur, self._min_prev)
        surplus = now * self.rate - p - base - target if base != INF else 0.0
        self._cool += 1
        if iv and iv[0][0] <= p and iv[0][1] >= q:    # the whole frame is here
            if not self._cont:
                return self._mixed(p, f)
            if self._catch_up > 0:
                if surplus > 1.5 * f and iv[0][1] >= q + f:
                    self._catch_up -= 1
                    return self._drop(p)
                if surplus <= 1.5 * f:
                    self._catch_up = 0  # back in time: nothing left to shed
            if surplus < -self._tol and self._cool >= COOLDOWN:
                return self._insert(p)
            if surplus > 1.5 * f:
                self._surplus_run += 1
                if self._surplus_run >= SHRINK_AFTER and self._cool >= COOLDOWN and iv[0][1] >= q + f:
                    return self._drop(p)
            else:
                self._surplus_run = 0
            s = p % self._cap
            out = self._ring[s:s + f].copy() if s + f <= self._cap else self._slice(p, f)
            if iv[0][1] == q:
                del iv[0]
            else:
                iv[0][0] = q
            self._p = q
            self._hist_run += f
            self._played += 1
            return Frame(out, (p - (self._old_off if p < self._switch_x else self._off)) & MASK, "audio")
        self._surplus_run = 0
        if not iv or iv[0][0] >= q:                  # nothing of this frame
            if surplus < -self._tol:                 # missing anyway: wait here one frame longer
                self._grown += 1
                return self._mixed(p, 0)
            if surplus > 1.5 * f:                    # skip ahead: all of the surplus once it is silent
                conc = self._conc
                silent = self._fresh or conc.silent
                step = self._first_audio(q, int(surplus) if silent else f)
                if step > 0:
                    self._shrunk += 1
                return self._mixed(p, f + step)
        return self._mixed(p, f)

    def _mixed(self, p: int, advance: int) -> Frame:
        """Any frame but plain continuing audio: holes concealed, every return to audio cross-faded."""
        f = self.frame
        q = p + f
        conc = self._conc
        self._history_now()
        src = self._slice(p, f)
        runs = []
        at = p
        for s0, e0 in self._iv:
            if s0 >= q:
                break
            if s0 > at:
                runs.append((at - p, s0 - p, False))
            at = min(e0, q)
            runs.append((max(s0, p) - p, at - p, True))
        if at < q:
            runs.append((at - p, f, False))
        out = np.empty(f, np.float32)
        audio = concealed = False
        for a, b, ok in runs:
            if ok:
                seg = src[a:b].astype(np.float32)
                if not self._cont and not self._fresh:
                    if not conc.active:
                        conc.start(self._history(out, a))
                    k = min(self._fade, b - a)
                    c = conc.next(k)
                    w = self._ramp if k == self._fade else _ramp(k)
                    seg[:k] = seg[:k] * w if c is None else c + (seg[:k] - c) * w
                conc.active = False
                self._cont, self._fresh = True, False
                out[a:b] = seg
                audio = True
            elif self._fresh:
                out[a:b] = 0
            else:
                if not conc.active:
                    conc.start(self._history(out, a))
                conc.stretch = False
                c = conc.next(b - a)
                if c is None:
                    out[a:b] = 0
                else:
                    out[a:b] = c
                    concealed = True
                self._cont = False
        if advance:
            self._consume(p + advance)
            self._p = p + advance
        if concealed:
            self._concealed += 1
            kind = "concealed"
        elif audio:
            self._played += 1
            kind = "audio"
        else:
            self._silence += 1
            self._remember(self._zeros)
            return Frame(self._zeros, self._rtp(p), "silence")
        pcm = _to_pcm(out)
        self._remember(pcm)
        return Frame(pcm, self._rtp(p), kind)

    def _insert(self, p: int) -> Frame:
        """One pitch-repeated frame in continuous audio: the delay grows by a frame without a gap."""
        conc = self._conc
        conc.start(self._history_now(), stretch=True)
        out = conc.next(self.frame)
        assert out is not None
        pcm = _to_pcm(out)
        self._cont = False
        self._cool = 0
        self._grown += 1
        self._concealed += 1
        self._remember(pcm)
        return Frame(pcm, self._rtp(p), "concealed")

    def catch_up(self, frames: int) -> None:
        """The media clock skipped ``frames`` ticks (the loop stalled): the audio of those ticks arrives
        anyway and would add that much delay for good. Shed it one frame per pop (cross-faded), as soon
        as it is here, instead of the usual one frame per second."""
        self._catch_up = min(self._catch_up + max(0, frames), MAX_CATCH_UP_FRAMES)
        # Packets read since the last pop waited in the socket while the loop stalled: their lateness is
        # ours, not the network's. Forget it, and ignore arrivals until the backlog has been read.
        if self._snap:
            (self._target, self._min_cur, self._min_prev, self._need_cur, self._need_prev,
             self._blk_t) = self._snap
        self._blind = 2

    def _drop(self, p: int) -> Frame:
        """Skip one frame of continuous audio, cross-fading from it into the next: the delay shrinks."""
        f = self.frame
        k = self._fade
        self._history_now()
        out = self._slice(p + f, f).astype(np.float32)
        skipped = self._slice(p, k).astype(np.float32)
        out[:k] = skipped + (out[:k] - skipped) * self._ramp
        pcm = _to_pcm(out)
        self._consume(p + 2 * f)
        self._p = p + 2 * f
        self._cool = self._surplus_run = 0
        self._shrunk += 1
        self._played += 1
        self._remember(pcm)
        return Frame(pcm, self._rtp(p + f), "audio")

    # ------------------------------------------------------------------ output history
    def _history_now(self) -> np.ndarray:
        """The last output samples; plain audio frames left theirs in the ring, behind P."""
        k = self._hist_run
        h = self._hist
        if k:
            if k >= len(h):
                h[:] = self._slice(self._p - len(h), len(h))
            else:
                h[:-k] = h[k:]
                h[-k:] = self._slice(self._p - k, k)
            self._hist_run = 0
        return h

    def _history(self, out: np.ndarray, a: int) -> np.ndarray:
        if a == 0:
            return self._hist
        return np.concatenate((self._hist, out[:a]))[-len(self._hist):]

    def _remember(self, pcm: np.ndarray) -> None:
        """Append a frame that was not copied straight from the ring (call after _history_now)."""
        h = self._hist
        f = len(pcm)
        if f >= len(h):
            h[:] = pcm[-len(h):]
        else:
            h[:-f] = h[f:]
            h[-f:] = pcm

    # ------------------------------------------------------------------ reporting
    @property
    def depth_ms(self) -> float:
        """The current target delay (what the adaptation aims at), in ms."""
        return self._target * 1000 / self.rate

    def stats(self) -> dict:
        """Counters for the call's media stats and CDR; ``grown``/``shrunk`` count one-frame delay steps."""
        to_ms = 1000 / self.rate
        return {"received": self._received, "played": self._played, "late": self._late,
                "duplicates": self._duplicates, "concealed": self._concealed, "silence": self._silence,
                "overflow": self._overflow, "resyncs": self._resyncs, "ssrc_changes": self._ssrc_changes,
                "depth_ms": round(self._target * to_ms, 1), "max_depth_ms_seen": round(self._seen_max * to_ms, 1),
                "grown": self._grown, "shrunk": self._shrunk}

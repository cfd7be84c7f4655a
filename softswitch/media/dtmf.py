"""DTMF in the three forms a softswitch meets: RFC 4733 telephone-events, in-band tones, SIP INFO.

All three end as one ``DtmfEvent`` per key press, reported once, when the key is released (that is
when RFC 4733 knows the duration; the in-band detector does the same so both transports agree and
the session can drop a press that arrived both ways). ``active_digit`` says a key is down *now*,
for barge-in before the release. Everything here is sans-IO: bytes, timestamps and samples in,
events out.
"""

from __future__ import annotations

import cmath
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DIGITS = "0123456789*#ABCD"   # RFC 4733 event codes 0-15 in this order
ROW_HZ = (697.0, 770.0, 852.0, 941.0)
COL_HZ = (1209.0, 1336.0, 1477.0, 1633.0)
KEYPAD = "123A456B789C*0#D"   # row * 4 + column

_TS_MASK = 0xFFFFFFFF
_MAX_SEGMENT = 0xFFFF          # RFC 4733 §2.5.1.3: the longest duration one segment can report


@dataclass(frozen=True, slots=True)
class DtmfEvent:
    digit: str
    duration_ms: int
    source: str          # "rfc4733" | "inband" | "info"


def _event_code(digit: str) -> int:
    code = DIGITS.find(digit.upper()) if isinstance(digit, str) and len(digit) == 1 else -1
    if code < 0:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    return code


# ---------------------------------------------------------------------------------- RFC 4733


@dataclass(slots=True)
class _Rx:
    """The key press being received."""
    seg_ts: int      # RTP timestamp of the current segment: all packets of the segment carry it
    code: int
    base: int        # samples in earlier segments of a long-duration event
    duration: int    # longest duration seen in the current segment


class Rfc4733Receiver:
    """Telephone-event packets in, one ``DtmfEvent`` per key press out.

    A press is identified by its RTP timestamp. It is reported at its first end packet (the two
    retransmissions are recognised by timestamp and dropped). If every end packet is lost it is
    reported when the next press starts, or by ``expire`` once the media clock has moved
    ``expire_ms`` past the last reported duration. A call can yield two presses at once (an
    unfinished one and a complete single-packet one): the second comes from the next ``feed`` or
    ``expire`` call. Malformed input is counted, never raised.
    """

    def __init__(self, clock_rate: int = 8000, expire_ms: int = 1000) -> None:
        self.clock_rate = clock_rate
        self.expire_samples = clock_rate * expire_ms // 1000
        # Packets older than the newest press by up to this much are stragglers; further back
        # means the sender's clock jumped (new SSRC, re-INVITE) and it is a new press.
        self._late_window = clock_rate * 10
        self._cur: _Rx | None = None
        self._done: deque[tuple[int, int]] = deque(maxlen=16)  # (segment ts, code) of finished presses
        self._ready: deque[DtmfEvent] = deque()
        self._stats = dict.fromkeys(
            ("packets", "events", "retransmitted_end", "duplicates", "late", "conflicting",
             "unknown_event", "truncated", "lost_start", "lost_end", "expired", "segments", "reused_ts"), 0)

    @property
    def active_digit(self) -> str | None:
        return DIGITS[self._cur.code] if self._cur is not None else None

    def stats(self) -> dict[str, int]:
        return dict(self._stats)

    def feed(self, payload: bytes, ts: int, marker: bool) -> DtmfEvent | None:
        st = self._stats
        st["packets"] += 1
        blocks = len(payload) // 4
        if len(payload) % 4 or not blocks:
            st["truncated"] += 1
        ts &= _TS_MASK
        for i in range(blocks):
            code, flags = payload[4 * i], payload[4 * i + 1]
            duration = (payload[4 * i + 2] << 8) | payload[4 * i + 3]
            self._block(code, bool(flags & 0x80), duration, ts, marker or i > 0)
            # RFC 4733 §2.5.1.5: events packed in one packet follow each other from the RTP timestamp
            ts = (ts + duration) & _TS_MASK
        return self._ready.popleft() if self._ready else None

    def expire(self, ts_now: int) -> DtmfEvent | None:
        """A press whose end packets were all lost, once the media clock has passed it by
        ``expire_ms`` (the owner calls this now and then with the audio's RTP timestamp)."""
        cur = self._cur
        if cur is not None and not self._ready:
            idle = (ts_now - cur.seg_ts - cur.duration) & _TS_MASK
            if self.expire_samples < idle < 0x80000000:
                self._stats["expired"] += 1
                self._finish(cur)
        return self._ready.popleft() if self._ready else None

    def _block(self, code: int, end: bool, duration: int, ts: int, may_start: bool) -> None:
        st = self._stats
        if code >= len(DIGITS):
            st["unknown_event"] += 1   # flash, tones, modem events: not key presses
            return
        cur = self._cur
        if cur is not None and ts == cur.seg_ts:
            if code != cur.code:
                st["conflicting"] += 1
                return
            if duration <= cur.duration and not end:
                st["duplicates"] += 1
            cur.duration = max(cur.duration, duration)
            if end:
                self._finish(cur)
            return
        if any(t == ts for t, _ in self._done):
            if (ts, code) in self._done and not may_start:
                st["retransmitted_end" if end else "late"] += 1
                return
            st["reused_ts"] += 1       # a sender that never advances its timestamp: a new press anyway
        elif cur is not None and code == cur.code and (ts - cur.seg_ts) & _TS_MASK == _MAX_SEGMENT:
            # §2.5.1.3: the next segment of a long press starts where the previous one ended
            st["segments"] += 1
            self._done.append((cur.seg_ts, cur.code))
            cur.base += _MAX_SEGMENT
            cur.seg_ts, cur.duration = ts, duration
            if end:
                self._finish(cur)
            return
        else:
            newest = cur.seg_ts if cur is not None else (self._done[-1][0] if self._done else None)
            if newest is not None and 0 < (newest - ts) & _TS_MASK <= self._late_window:
                st["late"] += 1
                return
        if cur is not None:
            st["lost_end"] += 1
            self._finish(cur)
        if not may_start:
            st["lost_start"] += 1
        self._cur = cur = _Rx(ts, code, 0, duration)
        if end:
            self._finish(cur)

    def _finish(self, cur: _Rx) -> None:
        self._stats["events"] += 1
        self._done.append((cur.seg_ts, cur.code))
        self._cur = None
        ms = round((cur.base + cur.duration) * 1000 / self.clock_rate)
        self._ready.append(DtmfEvent(DIGITS[cur.code], ms, "rfc4733"))


class Rfc4733Sender:
    """The packets of one key press; the owner sends one per ptime, all on the RTP timestamp of
    the first, with the marker on the first."""

    def events(self, digit: str, duration_ms: int = 100, volume: int = 10, ptime_ms: int = 20,
               clock_rate: int = 8000) -> list[tuple[bytes, bool, int]]:
        code = _event_code(digit)
        if not 0 <= volume <= 63:
            raise ValueError(f"volume {volume} is not 0..63 (-dBm0)")
        step = ptime_ms * clock_rate // 1000
        if step <= 0:
            raise ValueError(f"ptime {ptime_ms} ms is too short")
        total = round(duration_ms * clock_rate / 1000)
        if not 0 < total <= _MAX_SEGMENT:
            # longer presses need segments on timestamps of their own (§2.5.1.3), which one
            # timestamp per press cannot carry; no IVR needs a key held for 8 s
            raise ValueError(f"duration {duration_ms} ms is not 1..{_MAX_SEGMENT * 1000 // clock_rate} ms")

        def payload(end: bool, duration: int) -> bytes:
            return bytes((code, (0x80 if end else 0) | volume)) + duration.to_bytes(2, "big")

        out = [(payload(False, d), d == step, d) for d in range(step, total, step)]
        if not out:
            out.append((payload(False, total), True, total))
        end = payload(True, total)
        out.extend((end, False, total) for _ in range(3))  # §2.5.1.4: the final packet three times
        return out


# ---------------------------------------------------------------------------------- in-band


@dataclass(frozen=True, slots=True)
class InbandThresholds:
    """Decision limits of ``InbandDetector`` (levels in dBFS: sine peak re full scale; for G.711
    0 dBm0 is -3.17 dBFS)."""
    min_level_dbfs: float = -32.0     # per tone; receivers must work down to ~-26 dBm0 (-29 dBFS)
    max_twist_high_db: float = 6.0    # high group louder ("normal twist"); usual limit 4 dB
    max_twist_low_db: float = 9.0     # low group louder ("reverse twist"); usual limit 8 dB
    max_freq_dev: float = 0.025       # Q.24: accept 1.5 %, reject 3.5 %: cut in between
    group_margin_db: float = 6.0      # a group's tone over its strongest neighbour in the N=160 bins
                                      # (a tone 1.7 % off towards a neighbour: ~9 dB)
    min_tone_ratio: float = 0.75      # the pair's share of all energy: speech and music spread theirs
    max_harmonic_db: float = -15.0    # 2nd harmonic re fundamental: voices and instruments have them
    octave_hz: float = 8.0            # column within this of 2x row: one sound and its harmonic
                                      # (real pairs at +-1.5 % (+2 Hz) stay >= 11 Hz off)
    steady: float = 0.7               # Hann amplitude, weakest/strongest of the window's first,
                                      # middle and last 10 ms: beating or fading sounds are no tone
    max_bend_hz: float = 10.0         # the middle 10 ms' phase vs the halves' (pure tone: < 5 Hz)
    release_ms: int = 40              # Q.24 interdigit pause; shorter dropouts are bridged


@dataclass(frozen=True, eq=False)
class _Bases:
    """The detector's constant matrices for one sample rate (read-only, shared by instances)."""
    rect: np.ndarray        # rectangular DFT of a half at the 8 frequencies
    slow: np.ndarray        # Hann half, rising and falling half of the N=160 Hann window
    all: np.ndarray         # rect and slow side by side: one product while a key may be down
    mid: np.ndarray         # the Hann half, contiguous, for the middle 10 ms of a window
    hann160: np.ndarray
    minus_jwn: np.ndarray   # -j 2 pi n / fs over a window, for probes at any frequency
    share_p: np.ndarray     # a Hann half's amplitude (share_g) when a tone fills share p of it
    share_g: np.ndarray

    @staticmethod
    def build(sample_rate: int) -> _Bases:
        half = sample_rate // 100
        fund = np.array(ROW_HZ + COL_HZ)
        n = np.arange(half)
        hann80 = 0.5 - 0.5 * np.cos(2 * np.pi * (n + 0.5) / half)
        hann160 = 0.5 - 0.5 * np.cos(2 * np.pi * (np.arange(2 * half) + 0.5) / (2 * half))
        rect = _dft_basis(sample_rate, n, fund, np.ones((half, 8)))
        slow = _dft_basis(sample_rate, n, np.tile(fund, 3), np.concatenate(
            (np.repeat(hann80[:, None], 8, 1), np.repeat(hann160[:half, None], 8, 1),
             np.repeat(hann160[half:, None], 8, 1)), 1))
        share_p = np.linspace(0, 1, 81)
        share_g = np.array([hann80[:int(round(q * half))].sum() for q in share_p]) / hann80.sum()
        arrays = (rect, slow, np.concatenate((rect, slow), 1), np.ascontiguousarray(slow[:, :16]),
                  hann160, -2j * np.pi * np.arange(2 * half) / sample_rate, share_p, share_g)
        for a in arrays:
            a.setflags(write=False)
        return _Bases(*arrays)


# A row tone's 2nd harmonic is only judged this far from the column tone: through the N=160 Hann
# window a tone 90 Hz away leaks in at < -27 dB (1394 Hz, 2 x 697, is 58 Hz from 1336 Hz).
_HARMONIC_CLEARANCE_HZ = 90.0


@dataclass(slots=True)
class _Half:
    """10 ms of audio (row ``i`` of ``frame``), its energy, and the DFT bins a window needed so far."""
    frame: np.ndarray
    i: int
    e: float
    rect: list[complex] | None = None   # rectangular bins at the 8 frequencies
    slow: np.ndarray | None = None      # Hann half, rising and falling half of the N=160 Hann (8 each)
    hann: list[complex] | None = None   # the Hann half bins as Python numbers

    @property
    def x(self) -> np.ndarray:
        return self.frame[self.i]


class InbandDetector:
    """DTMF tones in audio frames; one ``DtmfEvent`` when a key is released.

    The analysis unit is a 10 ms half (N=80 at 8 kHz); a decision window is two adjacent halves
    (20 ms, hop 10 ms), so a tone that starts or stops mid-frame is still seen whole in the windows
    inside it. Cost: a quiet frame costs its energy; a loud one a matrix product for the 8
    rectangular bins of its halves, which already reject most speech; only windows that pass get
    the windowed bins (one more product) and the checks below. Why each measure:

    * One tone per group: the halves' rectangular bins summed with a phase rotation are an N=160
      DFT, 50 Hz bins: 697 Hz leaks into the 770 Hz bin at -13 dB (N=80: -9.7 dB, too close).
    * Frequency is not judged by amplitude: at N=160 a 1.5 % offset at 1633 Hz costs 3.7 dB, as
      much as 3.5 % at 697 Hz, so no level test fits all eight tones. The phase advance between
      the halves measures the offset (~0.4 Hz noise at 20 dB SNR), unwrapped beyond +-50 Hz by the
      phase of the middle 10 ms, and is compared to 2.5 % of the nominal frequency.
    * Steadiness: the tone's Hann amplitude in the first, middle and last 10 ms within
      ``steady``, and its phase advancing evenly (``max_bend_hz``): beats of two sounds in one
      bin, and onsets, fail. Hann weighs a block's edges down, so a tone covering p of one half
      and 1-p of the next (a 20 ms tone) reads g(p) + g(1-p) = 1 and never passes twice
      (rectangular partial blocks would leak the other group's tone at up to -13 dB).
    * Level, twist and energy share use the Hann N=160 DFT (from rising/falling half-window
      bins) corrected for the measured offset: its sidelobes keep the other group's tone below
      -50 dB (rectangular N=160: -25 dB, 1-2 dB of twist error).
    * Not one sound with its harmonics: no column tone at twice the row frequency (``octave_hz``;
      a note near 835 Hz and its own harmonic read as 'C'), and 2nd harmonics below
      ``max_harmonic_db``, measured at twice the *measured* frequencies (the row tone's only with
      no column tone within 90 Hz of it).

    A key is confirmed by ``min_duration_ms/10 - 2`` consecutive valid windows (2 for 40 ms: a
    40 ms tone holds >= 3 whole halves at any alignment, a 20 ms tone never yields 2), then held
    while its pair stays strongest, steady and on frequency (the other checks only guard the
    start), and released after ``release_ms`` of windows without it (a 40 ms pause always spans
    >= 5 windows, a 10 ms dropout at most 3). Duration = whole halves + the tone's share of the
    partial halves at both ends, from their Hann amplitude (within ~3 ms).
    """

    def __init__(self, sample_rate: int = 8000, min_duration_ms: int = 40,
                 thresholds: InbandThresholds | None = None) -> None:
        if sample_rate < 8000 or sample_rate % 100:
            raise ValueError(f"sample rate {sample_rate} Hz: need a multiple of 100, >= 8000")
        t = self.thresholds = thresholds if thresholds is not None else InbandThresholds()
        self.sample_rate = sample_rate
        self.min_duration_ms = min_duration_ms
        half = self._half = sample_rate // 100
        b = self._bases = _BASES_8000 if sample_rate == 8000 else _Bases.build(sample_rate)
        fund = ROW_HZ + COL_HZ
        self._rot = [cmath.exp(-2j * math.pi * f * half / sample_rate) for f in fund]
        self._rot_mid = [cmath.exp(-1j * math.pi * f * half / sample_rate) for f in fund]
        self._hz_per_rad = sample_rate / half / (2 * math.pi)
        self._turn_hz = sample_rate / half            # a full phase turn between halves: 100 Hz
        self._max_dev_hz = [t.max_freq_dev * f for f in fund]
        self._hold_dev_hz = [min(d, self._turn_hz / 2 - 10) for d in self._max_dev_hz]
        self._gain0 = float(b.hann160.sum()) ** 2
        a_min = 32768.0 * 10 ** (t.min_level_dbfs / 20)
        self._e_min = 2 * half * a_min * a_min          # window energy of two tones at the minimum
        self._a_min2 = a_min * a_min
        self._margin = 10 ** (t.group_margin_db / 20)   # on magnitudes
        self._twist_hi = 10 ** (t.max_twist_high_db / 10)
        self._twist_lo = 10 ** (-t.max_twist_low_db / 10)
        self._harm2 = 10 ** (t.max_harmonic_db / 10)
        self._steady2 = t.steady ** 2
        self._ratio = t.min_tone_ratio / half            # tone energy: 2N * A^2 / 2
        self._need = max(1, min_duration_ms // 10 - 2)
        self._release = max(2, t.release_ms // 10)
        self._stats = dict.fromkeys(("windows", "quiet", "groups", "steady", "bend", "frequency",
                                     "octave", "level", "twist", "energy_share", "harmonics", "valid",
                                     "held", "events"), 0)
        self.reset()

    def reset(self) -> None:
        """Forget the audio so far (a new stream, or audio that was not contiguous)."""
        quiet = _Half(np.zeros((1, self._half)), 0, 0.0)
        self._hist: deque[_Half] = deque([quiet, quiet], maxlen=3)
        self._tail: np.ndarray | None = None
        self._n = 0                    # index of the newest half
        # the run of valid windows that may become a key press
        self._cand: int | None = None
        self._run = self._cand_start = 0
        self._cand_h = (quiet, quiet)
        self._cand_ref = 0.0
        # the key press in progress: first and last half of its valid windows, those halves and
        # their outer neighbours (for the duration), a whole half's amplitude
        self._active: int | None = None
        self._start = self._last = self._misses = 0
        self._lead_h = self._start_h = self._last_h = self._trail_h = quiet
        self._ref = 0.0
        self._ready: deque[DtmfEvent] = deque()

    @property
    def active_digit(self) -> str | None:
        return KEYPAD[self._active] if self._active is not None else None

    def stats(self) -> dict[str, int]:
        """Windows analysed, the first check each invalid one failed, valid and held ones, events."""
        return dict(self._stats)

    def feed(self, pcm: np.ndarray) -> DtmfEvent | None:
        """One frame of 16-bit samples (any length; 10 ms pieces are analysed as they fill)."""
        x = np.asarray(pcm, dtype=np.float64)
        if self._tail is not None:
            x = np.concatenate((self._tail, x))
            self._tail = None
        half = self._half
        n = len(x) // half
        if n * half != len(x):
            self._tail = x[n * half:].copy()
        if not n:
            return self._ready.popleft() if self._ready else None
        xs = x[:n * half].reshape(n, half)
        energies = np.add.reduce(xs * xs, 1).tolist()
        halves = [_Half(xs, i, e) for i, e in enumerate(energies)]
        # rectangular bins only where a window is loud enough to hold a tone pair
        e_min = self._e_min
        last = self._hist[-1]
        loud = [last.e + energies[0] >= e_min] + [a + b >= e_min for a, b in zip(energies, energies[1:])]
        if not any(loud) and self._active is None and self._cand is None:
            self._hist.extend(halves)          # nothing to look at, nothing pending
            self._n += n
            self._stats["windows"] += n
            self._stats["quiet"] += n
            return self._ready.popleft() if self._ready else None
        todo = [last] if loud[0] and last.rect is None else []
        todo += [h for i, h in enumerate(halves) if loud[i] or (i + 1 < n and loud[i + 1])]
        if todo:
            rows = xs if len(todo) == n and todo[0] is halves[0] else np.array([h.x for h in todo])
            if self._active is None and self._cand is None:
                for h, rect in zip(todo, np.dot(rows, self._bases.rect).view(np.complex128).tolist()):
                    h.rect = rect
            else:                              # a key is (perhaps) down: all bins in one product
                bins = np.dot(rows, self._bases.all).view(np.complex128)
                for h, row, fast in zip(todo, bins, bins[:, :16].tolist()):
                    h.rect, h.hann, h.slow = fast[:8], fast[8:], row[8:]
        for h, is_loud in zip(halves, loud):
            self._hist.append(h)
            self._n += 1
            self._stats["windows"] += 1
            if is_loud:
                self._track(self._window(self._hist[-2], h))
            else:
                self._stats["quiet"] += 1
                self._track(None)
        return self._ready.popleft() if self._ready else None

    # ----------------------------------------------------------------------------- internals
    def _slow(self, h: _Half) -> _Half:
        """The windowed bins of a half, computed once when first needed."""
        if h.slow is None:
            h.slow = np.dot(h.x, self._bases.slow).view(np.complex128)
            h.hann = h.slow[:8].tolist()
        return h

    def _window(self, wa: _Half, wb: _Half) -> int | None:
        """The key whose tone pair fills both halves, or None (the first failed check is counted)."""
        st = self._stats
        ra, rb = wa.rect, wb.rect
        assert ra is not None and rb is not None
        rot = self._rot
        mag = [abs(ra[k] + rot[k] * rb[k]) for k in range(8)]   # rectangular, N = both halves
        rows, cols = sorted(mag[:4]), sorted(mag[4:])
        if rows[3] < self._margin * rows[2] or cols[3] < self._margin * cols[2]:
            st["groups"] += 1
            return None
        r = mag.index(rows[3])
        c = mag.index(cols[3], 4) - 4
        key, keys = 4 * r + c, (r, 4 + c)
        ha, hb = self._slow(wa).hann, self._slow(wb).hann
        assert ha is not None and hb is not None
        if key == self._active and self._held(ha, hb, keys):
            st["held"] += 1
            return key
        h2 = self._half // 2
        mid = np.dot(np.concatenate((wa.x[h2:], wb.x[:h2])), self._bases.mid).view(np.complex128)
        devs = []
        for k in keys:
            a, b, m = ha[k], hb[k], complex(mid[k])       # Hann: first, last, middle 10 ms
            pa, pb, pm = abs(a) ** 2, abs(b) ** 2, abs(m) ** 2
            if min(pa, pb, pm) < self._steady2 * max(pa, pb, pm):
                st["steady"] += 1
                return None
            fine = cmath.phase(b * a.conjugate() * rot[k]) * self._hz_per_rad        # +-50 Hz
            coarse = 2 * cmath.phase(m * a.conjugate() * self._rot_mid[k]) * self._hz_per_rad
            fine += self._turn_hz * round((coarse - fine) / self._turn_hz)
            if abs(coarse - fine) > self.thresholds.max_bend_hz:
                st["bend"] += 1     # the phase does not advance evenly: more than one sinusoid
                return None
            if abs(fine) > self._max_dev_hz[k]:
                st["frequency"] += 1
                return None
            devs.append(fine)
        f_row, f_col = ROW_HZ[r] + devs[0], COL_HZ[c] + devs[1]
        if abs(f_col - 2 * f_row) < self.thresholds.octave_hz:
            st["octave"] += 1         # one periodic sound and its 2nd harmonic, not two keys' tones
            return None
        sa, sb = wa.slow, wb.slow
        assert sa is not None and sb is not None
        spec = [sa[8 + k] + rot[k] * sb[16 + k] for k in keys]   # Hann N=160
        ar, ac = (4 * abs(s) ** 2 / self._hann_gain2(d) for s, d in zip(spec, devs))   # amplitude^2
        if min(ar, ac) < self._a_min2:
            st["level"] += 1
            return None
        if not self._twist_lo <= ac / ar <= self._twist_hi:
            st["twist"] += 1
            return None
        if ar + ac < self._ratio * (wa.e + wb.e):
            st["energy_share"] += 1
            return None
        x = np.concatenate((wa.x, wb.x)) * self._bases.hann160
        clear = abs(2 * f_row - f_col) >= _HARMONIC_CLEARANCE_HZ
        for f, amp2 in ((f_col, ac), (f_row, ar))[:2 if clear else 1]:
            h = complex(np.dot(x, np.exp(self._bases.minus_jwn * (2 * f))))
            if 4 * abs(h) ** 2 > self._harm2 * self._gain0 * amp2:
                st["harmonics"] += 1
                return None
        st["valid"] += 1
        return key

    def _held(self, ha: list[complex], hb: list[complex], keys: tuple[int, int]) -> bool:
        """A key that is down stays down while its pair fills both halves on frequency."""
        for k in keys:
            a, b = ha[k], hb[k]
            pa, pb = a.real * a.real + a.imag * a.imag, b.real * b.real + b.imag * b.imag
            if min(pa, pb) < self._steady2 * max(pa, pb):
                return False
            dev = cmath.phase(b * a.conjugate() * self._rot[k]) * self._hz_per_rad
            if abs(dev) > self._hold_dev_hz[k]:
                return False    # off frequency, or near the +-50 Hz ambiguity: the full checks decide
        return True

    def _hann_gain2(self, dev: float) -> float:
        """|sum w[n] e^{j 2 pi dev n / fs}|^2 of the N=160 Hann window: the bin's power gain for a
        tone dev Hz off (the window's three cosine terms are three shifted Dirichlet kernels)."""
        n = 2 * self._half
        theta, alpha = 2 * math.pi * dev / self.sample_rate, 2 * math.pi / n

        def dirichlet(x: float) -> float:
            s = math.sin(x / 2)
            return n if abs(s) < 1e-12 else math.sin(n * x / 2) / s

        g = 0.5 * dirichlet(theta) + 0.25 * dirichlet(theta + alpha) + 0.25 * dirichlet(theta - alpha)
        return g * g

    def _amp(self, key: int, h: _Half) -> float:
        r, c = divmod(key, 4)
        hann = self._slow(h).hann
        assert hann is not None
        return abs(hann[r]) + abs(hann[4 + c])

    def _share(self, key: int, h: _Half) -> float:
        """How much of a half the tone filled, from its Hann amplitude against a whole half's."""
        g = min(1.0, self._amp(key, h) / self._ref) if self._ref > 0 else 0.0
        return float(np.interp(g, self._bases.share_g, self._bases.share_p))

    def _track(self, d: int | None) -> None:
        hist = self._hist
        active = self._active
        if active is not None:
            if d == active:
                self._misses = 0
                self._last, self._last_h = self._n, hist[-1]
                self._ref = max(self._ref, self._amp(d, hist[-1]))
                self._cand, self._run = None, 0
                return
            self._misses += 1
            if self._misses == 1:       # the newest half is the first the tone no longer fills
                self._trail_h = hist[-1]
            if self._misses >= self._release:
                self._emit()
        if d is None:
            self._cand, self._run = None, 0
            return
        if d != self._cand:
            self._cand, self._run = d, 0
            self._cand_start, self._cand_h = self._n - 1, (hist[0], hist[-2])
            self._cand_ref = self._amp(d, hist[-2])
        self._cand_ref = max(self._cand_ref, self._amp(d, hist[-1]))
        self._run += 1
        if self._run >= self._need:
            if self._active is not None:   # another key without a pause: the first one is over
                self._emit()
            self._active, self._start, self._ref = d, self._cand_start, self._cand_ref
            self._lead_h, self._start_h = self._cand_h
            self._last, self._last_h, self._misses = self._n, hist[-1], 0
            self._cand, self._run = None, 0

    def _emit(self) -> None:
        """Report the released key; its duration counts the halves between the first and last
        it filled whole, and the share it had of those two and of their outer neighbours."""
        key = self._active
        assert key is not None
        halves = self._last - self._start - 1 + sum(
            self._share(key, h) for h in (self._lead_h, self._start_h, self._last_h, self._trail_h))
        ms = round(halves * self._half * 1000 / self.sample_rate)
        self._ready.append(DtmfEvent(KEYPAD[key], ms, "inband"))
        self._stats["events"] += 1
        self._active = None
        self._misses = 0


def _dft_basis(sample_rate: int, n: np.ndarray, freqs: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Real matrix whose product with samples, viewed as complex, is sum w[n] x[n] e^{-j w n}."""
    phase = 2 * np.pi * np.outer(n, freqs) / sample_rate
    basis = np.empty((len(n), 2 * len(freqs)))
    basis[:, 0::2] = np.cos(phase) * window
    basis[:, 1::2] = -np.sin(phase) * window
    return basis


_BASES_8000 = _Bases.build(8000)


# ---------------------------------------------------------------------------------- SIP INFO

_INFO_DEFAULT_MS = 100   # a dtmf-relay body without (or with a zero) Duration: a usual key press
_INFO_MAX_MS = 60_000


def _info_digit(value: str) -> str | None:
    """A Signal value: the key itself, or its event code (some phones send 10/11 for * and #);
    hook flash ('!' or 16) is a valid signal but no key (None)."""
    v = value.strip()
    if v == "!" or v == "16":
        return None
    if v.isascii() and v.isdigit() and len(v) <= 2 and int(v) < len(DIGITS):
        return DIGITS[int(v)]
    if len(v) == 1 and v.upper() in DIGITS:
        return v.upper()
    raise ValueError(f"bad DTMF signal {value.strip()!r}")


def parse_info(content_type: str, body: bytes) -> DtmfEvent | None:
    """A SIP INFO body: the key press for application/dtmf-relay and application/dtmf, None for
    other content (or a hook flash); ValueError (the dialog answers 400) for a malformed body."""
    ctype = content_type.split(";", 1)[0].strip().lower()
    if ctype not in ("application/dtmf-relay", "application/dtmf"):
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{ctype} body is not text") from None
    if ctype == "application/dtmf":
        if not text.strip():
            raise ValueError("empty application/dtmf body")
        digit = _info_digit(text)
        return DtmfEvent(digit, _INFO_DEFAULT_MS, "info") if digit is not None else None
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"dtmf-relay line without '=': {line.strip()[:20]!r}")
        key = key.strip().lower()
        if key in fields:
            raise ValueError(f"dtmf-relay {key} given twice")
        fields[key] = value
    if "signal" not in fields:
        raise ValueError("dtmf-relay body has no Signal")
    digit = _info_digit(fields["signal"])
    duration = _INFO_DEFAULT_MS
    if "duration" in fields:
        raw = fields["duration"].strip()
        if not (raw.isascii() and raw.isdigit()):
            raise ValueError(f"bad dtmf-relay Duration {raw[:12]!r}")
        duration = min(int(raw), _INFO_MAX_MS) or _INFO_DEFAULT_MS
    return DtmfEvent(digit, duration, "info") if digit is not None else None


def feed_many(detectors: Sequence[InbandDetector], frames: Sequence[np.ndarray]) -> list[DtmfEvent | None]:
    """``[d.feed(f) for d, f in zip(detectors, frames)]``, with the first stage done for all at once.

    The media clock has one frame per call per tick. Most of them are speech, silence or music
    that the first check of every window (energy, then one tone per group over the rectangular
    bins) rejects; doing that check as one matrix product over all idle 8 kHz detectors costs
    about what one detector's own call did, and the few frames that survive it (or whose
    detector is tracking a key) take the full per-call path. The outcome is exactly ``feed``'s.
    """
    out: list[DtmfEvent | None] = [None] * len(detectors)
    fast: list[int] = []
    for i, (d, f) in enumerate(zip(detectors, frames)):
        if (d._bases is _BASES_8000 and d._active is None and d._cand is None and d._tail is None
                and not d._ready and len(f) == 160):
            fast.append(i)
        else:
            out[i] = d.feed(f)
    if not fast:
        return out
    x = np.asarray([frames[i] for i in fast], dtype=np.float64).reshape(len(fast), 2, 80)
    energies = np.einsum("mhn,mhn->mh", x, x)
    first = detectors[fast[0]]
    e_min, margin, rot = first._e_min, first._margin, np.asarray(first._rot)
    last_e = np.fromiter((detectors[i]._hist[-1].e for i in fast), np.float64, len(fast))
    loud = np.stack((last_e + energies[:, 0] >= e_min, energies[:, 0] + energies[:, 1] >= e_min), 1)
    rect = np.dot(x, _BASES_8000.rect).view(np.complex128)          # (m, 2, 8)
    loud_l = loud.tolist()
    zeros = [0j] * 8
    lasts: list[list[complex]] = []
    for (loud0, _), i in zip(loud_l, fast):
        if not loud0:
            lasts.append(zeros)
            continue
        last = detectors[i]._hist[-1]
        if last.rect is None:
            last.rect = np.dot(last.x, _BASES_8000.rect).view(np.complex128).tolist()
        lasts.append(last.rect)
    last_rect = np.array(lasts, np.complex128)
    passes = loud.copy()
    for w, (a, b) in enumerate(((last_rect, rect[:, 0]), (rect[:, 0], rect[:, 1]))):
        mag = np.abs(a + rot * b)
        rows, cols = np.sort(mag[:, :4], 1), np.sort(mag[:, 4:], 1)
        grouped = (rows[:, 3] >= margin * rows[:, 2]) & (cols[:, 3] >= margin * cols[:, 2])
        passes[:, w] &= grouped
    rect_lists = rect.tolist()
    energy_l = energies.tolist()
    for j, (i, passed, (loud0, loud1), (e0, e1)) in enumerate(zip(fast, passes.any(1).tolist(), loud_l, energy_l)):
        d = detectors[i]
        if passed:
            out[i] = d.feed(frames[i])
            continue
        block = x[j]
        h0, h1 = _Half(block, 0, e0), _Half(block, 1, e1)
        if loud0 or loud1:
            h0.rect, h1.rect = rect_lists[j]
        hist = d._hist
        hist.append(h0)
        hist.append(h1)
        d._n += 2
        st = d._stats
        n_loud = loud0 + loud1
        st["windows"] += 2
        st["quiet"] += 2 - n_loud
        st["groups"] += n_loud
    return out

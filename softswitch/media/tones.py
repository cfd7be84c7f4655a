"""Call-progress tones (dial, ringback, busy, congestion, call waiting, beep) per country.

Tones are written the way Asterisk's ``indications.conf`` writes them, so operators can paste
values from there: ``440+480/2000,0/4000`` is 440 Hz plus 480 Hz for 2 s, then 4 s of silence,
repeated. One cadence cycle is rendered into an int16 array when the source is created, so
``read()`` costs a slice; segment edges get short raised-cosine ramps because a tone switched on
or off mid-wave is heard as a click.

Semantics (as documented in indications.conf): the first pass plays every segment; later passes
repeat only the segments without ``!``; if every segment has ``!`` the tone ends after one pass.
A segment without ``/duration`` lasts until the tone is stopped, so it must be the last one.
Modulated tones (``f1*f2``) are not supported and are rejected.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from .players import FRAME, RATE

RAMP_MS = 3
MAX_FREQ = RATE // 2 - 1          # a tone must stay below the 4 kHz Nyquist of 8 kHz audio
MAX_SEGMENT_MS = 60_000
_CONTINUOUS_BLOCK = RATE          # 1 s holds a whole number of cycles of any integer frequency


@dataclass(frozen=True)
class Segment:
    freqs: tuple[int, ...]        # summed sines; empty is silence
    duration_ms: int | None       # None: until stopped
    once: bool = False            # '!': not repeated after the first pass


@dataclass(frozen=True)
class ToneSpec:
    segments: tuple[Segment, ...]

    @property
    def finite(self) -> bool:
        """True when the tone ends by itself (every segment marked '!' and timed)."""
        return all(s.once and s.duration_ms is not None for s in self.segments)


# ---------------------------------------------------------------------------- parsing

def _fail(text: str, pos: int, why: str) -> ValueError:
    return ValueError(f"bad tone {text!r} at position {pos}: {why}")


def parse_tone(text: str) -> ToneSpec:
    """Parse an indications.conf tone list; ValueError names the string, the position and why."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"bad tone {text!r}: empty tone string")
    segments: list[Segment] = []
    n = len(text)
    i = 0

    def number(what: str) -> int:
        nonlocal i
        start = i
        while i < n and text[i].isdigit():
            i += 1
        if i == start:
            got = repr(text[i]) if i < n else "end of string"
            raise _fail(text, i, f"expected {what}, found {got}")
        return int(text[start:i])

    def spaces() -> None:
        nonlocal i
        while i < n and text[i] in " \t":
            i += 1

    while True:
        spaces()
        elem_pos = i
        if segments and segments[-1].duration_ms is None:
            raise _fail(text, elem_pos, "the previous segment has no duration (plays forever), "
                                        "so nothing can follow it")
        once = i < n and text[i] == "!"
        if once:
            i += 1
        freqs: list[int] = []
        while True:
            pos = i
            f = number("a frequency in Hz")
            if f > MAX_FREQ:
                raise _fail(text, pos, f"frequency {f} Hz is above {MAX_FREQ} Hz (8 kHz audio)")
            if f:
                freqs.append(f)
            if i < n and text[i] == "+":
                i += 1
                continue
            break
        if i < n and text[i] == "*":
            raise _fail(text, i, "modulated tones ('f1*f2') are not supported; use 'f1+f2'")
        duration: int | None = None
        if i < n and text[i] == "/":
            i += 1
            pos = i
            duration = number("a duration in ms")
            if not 0 < duration <= MAX_SEGMENT_MS:
                raise _fail(text, pos, f"duration must be 1..{MAX_SEGMENT_MS} ms (got {duration})")
        spaces()
        if i < n and text[i] != ",":
            raise _fail(text, i, f"unexpected character {text[i]!r}")
        segments.append(Segment(tuple(freqs), duration, once))
        if i >= n:
            break
        i += 1  # the comma
    return ToneSpec(tuple(segments))


# ---------------------------------------------------------------------------- country tables

def _table(**tones: str) -> Mapping[str, str]:
    return MappingProxyType(tones)


# Values from Asterisk's configs/samples/indications.conf.sample ("ring" is named ringback here).
_GB = _table(dial="350+440", ringback="400+450/400,0/200,400+450/400,0/2000", busy="400/375,0/375",
             congestion="400/400,0/350,400/225,0/525", callwaiting="400/100,0/4000")

COUNTRY_TONES: Mapping[str, Mapping[str, str]] = MappingProxyType({
    "au": _table(dial="413+438", ringback="413+438/400,0/200,413+438/400,0/2000", busy="425/375,0/375",
                 congestion="425/375,0/375,420/375,0/375", callwaiting="425/200,0/200,425/200,0/4400"),
    "br": _table(dial="425", ringback="425/1000,0/4000", busy="425/250,0/250",
                 congestion="425/250,0/250,425/750,0/250", callwaiting="425/50,0/1000"),
    "cn": _table(dial="450", ringback="450/1000,0/4000", busy="450/350,0/350",
                 congestion="450/700,0/700", callwaiting="450/400,0/4000"),
    "de": _table(dial="425", ringback="425/1000,0/4000", busy="425/480,0/480", congestion="425/240,0/240",
                 callwaiting="!425/200,!0/200,!425/200,!0/5000," * 4 + "!425/200,!0/200,!425/200,0"),
    "es": _table(dial="425", ringback="425/1500,0/3000", busy="425/200,0/200",
                 congestion="425/200,0/200,425/200,0/200,425/200,0/600",
                 callwaiting="425/175,0/175,425/175,0/3500"),
    "fr": _table(dial="440", ringback="440/1500,0/3500", busy="440/500,0/500", congestion="440/250,0/250",
                 callwaiting="440/300,0/10000"),
    "gb": _GB,
    "uk": _GB,
    # Asterisk writes India's dial and ringback as 400*25 (400 Hz modulated at 25 Hz); modulation
    # is not supported here, so the plain 400 Hz carrier keeps the cadence.
    "in": _table(dial="400", ringback="400/400,0/200,400/400,0/2000", busy="400/750,0/750",
                 congestion="400/250,0/250", callwaiting="400/200,0/100,400/200,0/7500"),
    "it": _table(dial="425/200,0/200,425/600,0/1000", ringback="425/1000,0/4000", busy="425/500,0/500",
                 congestion="425/200,0/200", callwaiting="425/400,0/100,425/250,0/100,425/150,0/14000"),
    # Japan's ringback/call waiting are 400 Hz warbled at 15-16 Hz; Asterisk approximates that
    # by adding a 15/16 Hz component, kept here as published.
    "jp": _table(dial="400", ringback="400+15/1000,0/2000", busy="400/500,0/500", congestion="400/500,0/500",
                 callwaiting="400+16/500,0/8000"),
    "nl": _table(dial="425", ringback="425/1000,0/4000", busy="425/500,0/500", congestion="425/250,0/250",
                 callwaiting="425/500,0/9500"),
    "ru": _table(dial="425", ringback="425/1000,0/4000", busy="425/350,0/350", congestion="425/175,0/175",
                 callwaiting="425/200,0/5000"),
    "us": _table(dial="350+440", ringback="440+480/2000,0/4000", busy="480+620/500,0/500",
                 congestion="480+620/250,0/250", callwaiting="440/300,0/10000"),
})

COMMON_TONES: Mapping[str, str] = _table(beep="!1000/250")
TONE_ALIASES: Mapping[str, str] = _table(ring="ringback", callwait="callwaiting")


def tone_string(name: str, country: str = "us", overrides: Mapping[str, str] | None = None) -> str:
    """The tone list for ``name``: overrides first, then the country's table, then common tones."""
    key = country.lower()
    table = COUNTRY_TONES.get(key)
    if table is None:
        raise ValueError(f"unknown tone country {country!r} (known: {', '.join(sorted(COUNTRY_TONES))})")
    canon = TONE_ALIASES.get(name, name)
    for k, v in (overrides or {}).items():
        if TONE_ALIASES.get(k, k) == canon:
            return v
    text = table.get(canon) or COMMON_TONES.get(canon)
    if text is None:
        known = sorted({*table, *COMMON_TONES, *(overrides or {})})
        raise ValueError(f"unknown tone {name!r} for country {key!r} (known: {', '.join(known)})")
    return text


# ---------------------------------------------------------------------------- rendering

@dataclass(frozen=True, eq=False)
class ToneTable:
    """A rendered tone: ``buf[:loop_start]`` plays once, then ``buf[loop_start:loop_start+loop_len]``
    repeats. ``buf`` carries ``FRAME`` extra samples past the loop so every frame is one slice."""

    buf: np.ndarray
    loop_start: int
    loop_len: int      # 0: the tone ends at len(buf)


def _amplitude(level_dbfs: float) -> float:
    if not level_dbfs <= 0.0:
        raise ValueError(f"level_dbfs must be <= 0 (got {level_dbfs})")
    return 32767.0 * 10.0 ** (level_dbfs / 20.0)


def _ramp(n: int) -> np.ndarray:
    """Raised-cosine fade-in of n samples, from just above 0 to just below 1."""
    return 0.5 - 0.5 * np.cos(np.pi * (np.arange(n) + 0.5) / n)


def _sines(freqs: tuple[int, ...], n: int, amp: float) -> np.ndarray:
    t = np.arange(n) * (2 * np.pi / RATE)
    out = np.zeros(n)
    for f in freqs:
        out += np.sin(f * t)
    return out * amp


def render_tone(spec: ToneSpec, level_dbfs: float = -13.0) -> ToneTable:
    """Render ``spec`` once; each frequency component peaks at ``level_dbfs`` (re a full-scale sine)."""
    amp = _amplitude(level_dbfs)
    ramp_n = RATE * RAMP_MS // 1000
    rendered: dict[tuple[tuple[int, ...], int], np.ndarray] = {}

    def timed(seg: Segment) -> np.ndarray:
        assert seg.duration_ms is not None
        key = (seg.freqs, seg.duration_ms)
        if key not in rendered:
            n = RATE * seg.duration_ms // 1000
            x = _sines(seg.freqs, n, amp)
            if seg.freqs:
                r = _ramp(min(ramp_n, n // 2))
                x[:len(r)] *= r
                x[n - len(r):] *= r[::-1]
            rendered[key] = x
        return rendered[key]

    segs = spec.segments
    if segs[-1].duration_ms is None:                  # ... then one segment forever
        block = _sines(segs[-1].freqs, _CONTINUOUS_BLOCK, amp)
        first_block = block.copy()
        first_block[:ramp_n] *= _ramp(ramp_n)
        intro = [timed(s) for s in segs[:-1]] + [first_block]
        cycle = [block]
    else:
        n_once = next((i for i, s in enumerate(segs) if not s.once), len(segs))
        if all(not s.once for s in segs[n_once:]):    # '!' only as a prefix: no duplicate pass
            intro = [timed(s) for s in segs[:n_once]]
        else:
            intro = [timed(s) for s in segs]
        cycle = [timed(s) for s in segs if not s.once]
    head = np.concatenate(intro) if intro else np.zeros(0)
    if cycle:
        loop = np.concatenate(cycle)
        loop = np.tile(loop, -(-FRAME // len(loop)))  # at least one frame long
        body = np.concatenate((head, loop, loop[:FRAME]))
        loop_len = len(loop)
    else:
        body = np.concatenate((head, np.zeros(-len(head) % FRAME)))
        loop_len = 0
    buf = np.clip(np.rint(body), -32768, 32767).astype(np.int16)
    buf.flags.writeable = False
    return ToneTable(buf, len(head), loop_len)


class ToneCache:
    """Rendered tones shared by every call playing them (ringback for 500 calls is one array).

    Owned by the application (e.g. the media engine); bounded LRU by entries.
    """

    def __init__(self, max_items: int = 64) -> None:
        self.max_items = max_items
        self._tables: OrderedDict[tuple[ToneSpec, float], ToneTable] = OrderedDict()

    def get(self, spec: ToneSpec, level_dbfs: float = -13.0) -> ToneTable:
        key = (spec, float(level_dbfs))
        table = self._tables.get(key)
        if table is None:
            table = self._tables[key] = render_tone(spec, level_dbfs)
            while len(self._tables) > self.max_items:
                self._tables.popitem(last=False)
        else:
            self._tables.move_to_end(key)
        return table

    def __len__(self) -> int:
        return len(self._tables)


class ToneSource:
    """Plays a tone (a ``Source``), optionally cut after ``duration_ms`` with a short fade-out."""

    def __init__(self, spec: ToneSpec, level_dbfs: float = -13.0, duration_ms: int | None = None,
                 table: ToneTable | None = None) -> None:
        if duration_ms is not None and duration_ms < 0:
            raise ValueError(f"duration_ms must be >= 0 (got {duration_ms})")
        self.spec = spec
        self.level_dbfs = level_dbfs
        self.duration_ms = duration_ms
        t = table if table is not None else render_tone(spec, level_dbfs)
        self._buf = t.buf
        self._loop_len = t.loop_len
        self._loop_end: float = t.loop_start + t.loop_len if t.loop_len else math.inf
        self._stop: float = math.inf if t.loop_len else len(t.buf)
        self._left: float = math.inf if duration_ms is None else RATE * duration_ms // 1000
        self._pos = 0

    def read(self) -> np.ndarray | None:
        pos = self._pos
        if pos >= self._stop:
            return None
        if self._left < FRAME:
            return self._cut()
        nxt = pos + FRAME
        if nxt >= self._loop_end:
            nxt -= self._loop_len
        self._pos = nxt
        self._left -= FRAME
        return self._buf[pos:pos + FRAME]

    def _cut(self) -> np.ndarray | None:
        """The last, partial frame when duration_ms ends mid-frame: fade out, then zeros."""
        k = int(self._left)
        self._left = 0
        self._stop = 0
        if k <= 0:
            return None
        pos = self._pos
        x = self._buf[pos:pos + FRAME].astype(np.float64)
        x[k:] = 0.0
        r = _ramp(min(k, RATE * RAMP_MS // 1000))
        x[k - len(r):k] *= r[::-1]
        out = np.rint(x).astype(np.int16)
        out.flags.writeable = False
        return out


def tone_source(name: str, country: str = "us", overrides: Mapping[str, str] | None = None,
                level_dbfs: float = -13.0, duration_ms: int | None = None,
                cache: ToneCache | None = None) -> ToneSource:
    """A ``ToneSource`` for a named tone of ``country``; ValueError names an unknown tone or country."""
    spec = parse_tone(tone_string(name, country, overrides))
    table = cache.get(spec, level_dbfs) if cache is not None else None
    return ToneSource(spec, level_dbfs, duration_ms, table)

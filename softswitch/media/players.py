"""Audio sources for terminated media: prompts, music on hold, silence and sequences of them.

The media clock pulls one 20 ms frame from each playing source per tick, for hundreds of calls on
one core, so ``read()`` only slices arrays that were prepared beforehand: all decoding, mixing and
resampling happens when a prompt is loaded (``load_wav``, in a worker thread), never per frame.
Frames handed out are read-only views shared with the prompt cache, not copies.
"""

from __future__ import annotations

import math
import os
import struct
import threading
import wave
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Protocol, runtime_checkable

import numpy as np

from .resample import resample, to_int16

RATE = 8000
FRAME = 160  # samples per 20 ms at 8 kHz
FRAME_MS = 20

_SILENT_FRAME = np.zeros(FRAME, dtype=np.int16)
_SILENT_FRAME.flags.writeable = False

_WAVE_FORMAT_PCM = 1
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE
_FORMAT_NAMES = MappingProxyType({2: "Microsoft ADPCM", 3: "IEEE float", 6: "A-law", 7: "mu-law",
                                  0x11: "IMA ADPCM", 0x55: "MP3"})


@runtime_checkable
class Source(Protocol):
    def read(self) -> np.ndarray | None:
        """Exactly ``FRAME`` int16 samples, or None once finished (and on every later call)."""
        ...


def _readonly(samples: np.ndarray) -> np.ndarray:
    view = samples.view()
    view.flags.writeable = False
    return view


def _check_pcm(samples: np.ndarray) -> np.ndarray:
    samples = np.asarray(samples)
    if samples.ndim != 1 or samples.dtype != np.int16:
        raise ValueError(f"expected 1-D int16 samples at 8 kHz, got {samples.dtype} with shape {samples.shape}")
    return _readonly(samples)


class BufferSource:
    """Plays a precomputed 8 kHz int16 array once, or looped (music on hold).

    Looping is seamless (a frame that crosses the end continues from the start); the final frame
    of the final pass is padded with zeros. ``max_loops`` bounds the number of passes.
    """

    def __init__(self, samples: np.ndarray, loop: bool = False, max_loops: int | None = None) -> None:
        if max_loops is not None:
            if not loop:
                raise ValueError("max_loops needs loop=True")
            if max_loops < 1:
                raise ValueError(f"max_loops must be >= 1 (got {max_loops})")
        self._samples = _check_pcm(samples)
        self._n = len(self._samples)
        passes = 1 if not loop else max_loops  # None: loop forever
        # samples still to play; float inf for an endless loop keeps read() to one comparison
        self._left: float = math.inf if passes is None else float(self._n * passes)
        if self._n == 0:
            self._left = 0.0
        self._off = 0

    def read(self) -> np.ndarray | None:
        off = self._off
        end = off + FRAME
        if end <= self._n and self._left >= FRAME:  # the common case: one slice
            self._off = end if end < self._n else 0
            self._left -= FRAME
            return self._samples[off:end]
        if self._left <= 0:
            return None
        return self._wrap()

    def _wrap(self) -> np.ndarray:
        """A frame that crosses the end of the array or the end of playback (once per pass)."""
        count = int(min(FRAME, self._left))
        index = (self._off + np.arange(count)) % self._n
        out = np.zeros(FRAME, dtype=np.int16)
        out[:count] = self._samples[index]
        self._off = int((self._off + count) % self._n)
        self._left -= FRAME if count == FRAME else self._left
        out.flags.writeable = False
        return out


class SilenceSource:
    """Silence for ``duration_ms`` (rounded up to whole frames), or forever when None."""

    def __init__(self, duration_ms: int | None = None) -> None:
        if duration_ms is not None and duration_ms < 0:
            raise ValueError(f"duration_ms must be >= 0 (got {duration_ms})")
        self._left: float = math.inf if duration_ms is None else -(-duration_ms // FRAME_MS)

    def read(self) -> np.ndarray | None:
        if self._left <= 0:
            return None
        self._left -= 1
        return _SILENT_FRAME


class SequenceSource:
    """Plays sources one after another with no gap frame between them.

    ``sources`` is consumed lazily, so a generator can build each source only when it is due.
    """

    def __init__(self, sources: Iterable[Source]) -> None:
        self._sources: Iterator[Source] = iter(sources)
        self._current: Source | None = None
        self._done = False

    def read(self) -> np.ndarray | None:
        while not self._done:
            if self._current is None:
                self._current = next(self._sources, None)
                if self._current is None:
                    self._done = True
                    return None
            frame = self._current.read()
            if frame is not None:
                return frame
            self._current = None
        return None


# ---------------------------------------------------------------------------- WAV loading

class PromptError(Exception):
    """A prompt file that cannot be played; the message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(f"prompt {path}: {problem}")
        self.path = Path(path)
        self.problem = problem


@dataclass(frozen=True)
class _Pcm:
    data: bytes
    channels: int
    width: int
    rate: int
    frames: int       # as declared by the header


def _read_with_wave(path: Path) -> _Pcm:
    with wave.open(str(path), "rb") as w:
        channels, width, rate, frames = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
        data = w.readframes(frames)
    return _Pcm(data, channels, width, rate, frames)


def _read_extensible(path: Path) -> _Pcm:
    """WAVE_FORMAT_EXTENSIBLE with a PCM subformat (what ffmpeg/sox write for 24-bit or >2 channels).

    Python 3.11's ``wave`` rejects that format tag although the samples are plain PCM.
    """
    with open(path, "rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            raise wave.Error("file does not start with RIFF id")
        fmt: tuple[int, int, int] | None = None
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                raise EOFError("no data chunk")
            cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"fmt ":
                body = f.read(size + (size & 1))
                if len(body) < 40:
                    raise EOFError("truncated fmt chunk")
                channels, rate = struct.unpack("<HI", body[2:8])
                bits = struct.unpack("<H", body[14:16])[0]
                sub = struct.unpack("<H", body[24:26])[0]
                if sub != _WAVE_FORMAT_PCM:
                    raise wave.Error(f"unknown format: {sub}")
                fmt = (channels, -(-bits // 8), rate)
            elif cid == b"data":
                if fmt is None:
                    raise wave.Error("data chunk before fmt chunk")
                channels, width, rate = fmt
                if channels < 1 or width < 1:
                    raise wave.Error("bad # of channels or sample width")
                data = f.read(size)
                return _Pcm(data, channels, width, rate, size // (channels * width))
            else:
                f.seek(size + (size & 1), os.SEEK_CUR)


def _decode(pcm: _Pcm) -> np.ndarray:
    """Interleaved little-endian PCM to float64 frames x channels, full scale = 1.0."""
    raw = np.frombuffer(pcm.data, dtype=np.uint8)
    if pcm.width == 1:                                   # WAV 8-bit is unsigned, centred on 128
        x = (raw.astype(np.float64) - 128.0) / 128.0
    elif pcm.width == 2:
        x = np.frombuffer(pcm.data, dtype="<i2") / 32768.0
    elif pcm.width == 3:
        b = raw.reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = (v << 8) >> 8                                # sign-extend 24 -> 32 bits
        x = v / 8388608.0
    elif pcm.width == 4:
        x = np.frombuffer(pcm.data, dtype="<i4") / 2147483648.0
    else:
        raise AssertionError(pcm.width)
    return x.reshape(-1, pcm.channels)


def load_wav(path: str | Path) -> np.ndarray:
    """A WAV file as 8 kHz mono int16, uncached.

    Accepts 8/16/24/32-bit integer PCM, any channel count (mixed down by averaging) and any
    sample rate (resampled with an anti-aliasing filter). This reads and converts the whole file,
    which takes milliseconds to seconds: call it in a worker thread (``asyncio.to_thread``), never
    on the event loop. Raises PromptError naming the file and the problem.
    """
    path = Path(path)
    try:
        try:
            pcm = _read_with_wave(path)
        except wave.Error as exc:
            if str(exc) != f"unknown format: {_WAVE_FORMAT_EXTENSIBLE}":
                raise
            pcm = _read_extensible(path)
    except FileNotFoundError:
        raise PromptError(path, "file not found") from None
    except IsADirectoryError:
        raise PromptError(path, "is a directory, not a WAV file") from None
    except PermissionError:
        raise PromptError(path, "permission denied") from None
    except wave.Error as exc:
        msg = str(exc)
        if msg.startswith("unknown format: "):
            tag = int(msg.rsplit(" ", 1)[1])
            name = _FORMAT_NAMES.get(tag, f"format tag {tag}")
            raise PromptError(path, f"unsupported WAV encoding {name} (only integer PCM is supported)") from None
        raise PromptError(path, f"not a WAV file ({msg})") from None
    except (EOFError, struct.error) as exc:
        raise PromptError(path, f"not a WAV file or truncated header ({exc or 'unexpected end of file'})") from None
    except OSError as exc:
        raise PromptError(path, f"cannot read ({exc.strerror or exc})") from None
    if pcm.width not in (1, 2, 3, 4):
        raise PromptError(path, f"unsupported sample width {pcm.width * 8} bits (8/16/24/32-bit PCM only)")
    if pcm.channels < 1:
        raise PromptError(path, "declares no channels")
    if pcm.rate <= 0:
        raise PromptError(path, f"invalid sample rate {pcm.rate}")
    frame_bytes = pcm.channels * pcm.width
    have = len(pcm.data) // frame_bytes
    if have < pcm.frames or len(pcm.data) % frame_bytes:
        raise PromptError(path, f"truncated: header declares {pcm.frames} frames, file holds "
                                f"{len(pcm.data) / frame_bytes:g}")
    if have == 0:
        raise PromptError(path, "contains no audio")
    if pcm.width == 2 and pcm.channels == 1 and pcm.rate == RATE:  # already telephone format
        out = np.frombuffer(pcm.data, dtype="<i2").astype(np.int16)
    else:
        x = _decode(pcm)
        mono = x[:, 0] if pcm.channels == 1 else x.mean(axis=1)
        if pcm.rate != RATE:
            mono = resample(mono, pcm.rate, RATE)
        out = to_int16(mono * 32768.0)
    return _readonly(out)


class PromptCache:
    """Loads WAV prompts converted to 8 kHz mono int16, cached by (path, mtime, size).

    Bounded LRU by total samples, so a few long music-on-hold files cannot grow memory without
    limit; a prompt larger than the whole budget is returned but not kept. Editing a file (new
    mtime or size) makes the next load read it again. ``load`` is meant to run in worker threads
    (it reads files), so the index is guarded by a lock; two threads missing on the same file at
    once both read it, which is harmless. Returned arrays are read-only and shared.
    """

    def __init__(self, max_samples: int = 8000 * 60 * 30,
                 loader: Callable[[Path], np.ndarray] = load_wav) -> None:
        if max_samples < 0:
            raise ValueError(f"max_samples must be >= 0 (got {max_samples})")
        self.max_samples = max_samples
        self._loader = loader
        self._entries: OrderedDict[tuple[str, int, int], np.ndarray] = OrderedDict()
        self._total = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def load(self, path: str | Path) -> np.ndarray:
        path = Path(path)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise PromptError(path, "file not found") from None
        except OSError as exc:
            raise PromptError(path, f"cannot read ({exc.strerror or exc})") from None
        name = str(path.resolve())
        key = (name, st.st_mtime_ns, st.st_size)
        with self._lock:
            pcm = self._entries.get(key)
            if pcm is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return pcm
            self.misses += 1
        pcm = _readonly(self._loader(path))
        with self._lock:
            for old in [k for k in self._entries if k[0] == name]:  # stale versions of this file
                self._total -= len(self._entries.pop(old))
            if len(pcm) <= self.max_samples:
                self._entries[key] = pcm
                self._total += len(pcm)
                while self._total > self.max_samples:
                    _, evicted = self._entries.popitem(last=False)
                    self._total -= len(evicted)
        return pcm

    @property
    def total_samples(self) -> int:
        return self._total

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._total = 0

"""Crash-safe WAV files for call recordings: write, repair after a crash, read back, expire.

A recording is written incrementally to ``<final>.part`` and atomically renamed to its final name on close, so
a finished name always holds a complete WAV. The header is written at open with the sizes still zero and
refreshed (one ``pwrite`` of the whole header) about once per second of audio and at every fsync point, so a
file left by ``kill -9`` is already readable by naive readers up to that point; ``repair`` recomputes the sizes
from the file length on the next start. The data chunk is always last, which is what makes that possible.

Everything here is blocking file I/O meant for a worker thread (``asyncio.to_thread``); a writer is not
thread-safe, the caller serialises the calls on one writer. OS errors (disk full, permission denied, I/O
errors) surface as ``RecordingError`` naming the file; the writer then refuses further writes but ``close``
still finalises what reached the disk, so a disk-full mid-call leaves a valid, shorter WAV.
"""

from __future__ import annotations

import errno
import logging
import os
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from softswitch.media.g711 import ALAW_DECODE, ULAW_DECODE, ULAW_ENCODE

__all__ = ["FORMATS", "FSYNC_POLICIES", "RecordingError", "RepairResult", "WavFormatError", "WavWriter",
           "find_parts", "read_wav", "repair", "repair_all", "retention"]

log = logging.getLogger("softswitch.recorder")

FORMATS = ("pcm16", "ulaw")
FSYNC_POLICIES = ("always", "interval", "close", "never")
PART = ".part"
BAD = ".bad"

_PCM, _FLOAT, _ALAW, _MULAW, _EXTENSIBLE = 1, 3, 6, 7, 0xFFFE
_LITTLE = sys.byteorder == "little"
_UINT16 = np.dtype(np.uint16)
_INT16 = np.dtype(np.int16)


class RecordingError(OSError):
    """An OS error on a recording file; keeps ``errno`` (ENOSPC, EACCES…) and names the file and the action."""

    def __init__(self, path: Path | str, action: str, exc: OSError) -> None:
        text = exc.strerror or str(exc)
        code = errno.errorcode.get(exc.errno or 0, "")
        super().__init__(exc.errno, f"recording {path}: cannot {action}: {text}" + (f" ({code})" if code else ""))
        self.path = Path(path)

    def __str__(self) -> str:  # the message alone: "[Errno 28]" adds nothing to "No space left on device (ENOSPC)"
        return self.strerror or super().__str__()


class WavFormatError(ValueError):
    """A file that is not a WAV we can decode; the message names the file and the problem."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem


def _header(fmt: str, channels: int, rate: int, data_len: int) -> bytes:
    """The whole header up to the data chunk's payload. μ-law has the 18-byte fmt and the fact chunk that
    non-PCM formats need; the RIFF size counts the pad byte only once it is written (see ``close``)."""
    width = 2 if fmt == "pcm16" else 1
    block = channels * width
    if fmt == "pcm16":
        body = b"WAVE" + struct.pack("<4sIHHIIHH", b"fmt ", 16, _PCM, channels, rate, rate * block, block, 16)
    else:
        body = (b"WAVE" + struct.pack("<4sIHHIIHHH", b"fmt ", 18, _MULAW, channels, rate, rate * block, block, 8, 0)
                + struct.pack("<4sII", b"fact", 4, data_len // block))
    body += struct.pack("<4sI", b"data", data_len)
    return struct.pack("<4sI", b"RIFF", len(body) + data_len) + body


def _exists(path: Path) -> FileExistsError:
    return FileExistsError(errno.EEXIST, f"recording {path}: file exists, not overwritten", str(path))


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class WavWriter:
    """One WAV recording (1 or 2 channels, 8 kHz by default) written to ``path.part``, renamed to ``path`` on close.

    ``fsync``: "always" after every write, "interval" when ``fsync_interval_s`` (by ``clock``) has passed since the
    last, "close" only when finishing, "never" not even then (the rename is still atomic against a process crash,
    not against power loss). The header sizes are refreshed at every fsync point and every ``header_interval_s`` of
    audio, a single pwrite, so a killed process leaves a file that reads up to that point even before ``repair``.
    """

    def __init__(self, path: Path, channels: int, *, fmt: str = "pcm16", rate: int = 8000, fsync: str = "close",
                 fsync_interval_s: float = 5.0, clock: Callable[[], float] = time.monotonic,
                 header_interval_s: float = 1.0, mode: int = 0o640) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown recording format {fmt!r} (one of {', '.join(FORMATS)})")
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"unknown fsync policy {fsync!r} (one of {', '.join(FSYNC_POLICIES)})")
        if channels not in (1, 2):
            raise ValueError(f"channels must be 1 or 2 (got {channels})")
        if rate <= 0:
            raise ValueError(f"rate must be > 0 (got {rate})")
        self.path = Path(path)
        self.part = self.path.with_name(self.path.name + PART)
        self.channels, self.fmt, self.rate, self.fsync = channels, fmt, rate, fsync
        self.block_align = channels * (2 if fmt == "pcm16" else 1)
        self._fsync_interval = fsync_interval_s
        self._clock = clock
        self._header_every = max(1, int(header_interval_s * rate)) * self.block_align  # bytes of audio
        self.bytes_written = 0  # data bytes that reached the file (a failed write may leave a partial frame)
        self.error: RecordingError | None = None
        self._closed = False
        if self.path.exists():
            raise _exists(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RecordingError(self.path.parent, "create the directory", exc) from exc
        try:
            self._fd = os.open(self.part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        except FileExistsError:
            raise _exists(self.part) from None
        except OSError as exc:
            raise RecordingError(self.part, "create", exc) from exc
        self._head_len = len(_header(fmt, channels, rate, 0))
        try:
            self._write_all(_header(fmt, channels, rate, 0))
        except OSError as exc:  # nothing recorded yet: do not leave a headerless .part behind
            os.close(self._fd)
            self._closed = True
            self.part.unlink(missing_ok=True)
            raise RecordingError(self.part, "write the header", exc) from exc
        self.bytes_written = 0
        self._next_header = self._header_every
        self._last_sync = clock()

    # ------------------------------------------------------------------ properties

    @property
    def frames_written(self) -> int:
        """Whole sample frames on file (per channel sample count)."""
        return self.bytes_written // self.block_align

    @property
    def duration_s(self) -> float:
        return self.frames_written / self.rate

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ writing

    def _write_all(self, data: bytes | np.ndarray) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            self.bytes_written += n
            view = view[n:]

    def _encode(self, samples: np.ndarray) -> bytes | np.ndarray:
        if not isinstance(samples, np.ndarray) or samples.dtype != _INT16:
            raise TypeError(f"recording {self.path}: expected int16 samples, got "
                            f"{getattr(samples, 'dtype', type(samples).__name__)}")
        if not (samples.ndim == 2 and samples.shape[1] == self.channels or samples.ndim == 1 and self.channels == 1):
            raise ValueError(f"recording {self.path}: expected shape (n, {self.channels})"
                             f"{' or (n,)' if self.channels == 1 else ''}, got {samples.shape}")
        if self.fmt == "ulaw":
            return ULAW_ENCODE.take(samples.view(_UINT16)).tobytes()
        if not _LITTLE:
            samples = samples.astype("<i2")
        return np.ascontiguousarray(samples).reshape(-1).view(np.uint8)

    def write(self, samples: np.ndarray) -> None:
        """Append int16 frames, shape (n, channels) or (n,) for mono. Raises RecordingError on an OS error, and
        again (at once) on every later write: the file stays as far as it got, for ``close`` to finalise."""
        if self.error is not None:
            raise self.error
        if self._closed:
            raise ValueError(f"recording {self.path}: write after close")
        data = self._encode(samples)
        try:
            self._write_all(data)
            if self.fsync == "always" or (self.fsync == "interval"
                                          and self._clock() - self._last_sync >= self._fsync_interval):
                self._sync()
            elif self.bytes_written >= self._next_header:
                self._refresh_header()
        except OSError as exc:
            self.error = RecordingError(self.part, "write", exc)
            log.error("%s", self.error)
            raise self.error from exc

    def _refresh_header(self) -> None:
        os.pwrite(self._fd, _header(self.fmt, self.channels, self.rate, self.frames_written * self.block_align), 0)
        self._next_header = self.bytes_written + self._header_every

    def _sync(self) -> None:
        self._refresh_header()
        os.fsync(self._fd)
        self._last_sync = self._clock()

    def flush(self) -> None:
        """Refresh the header and fsync now, whatever the policy (e.g. on a call event worth keeping)."""
        if self.error is not None:
            raise self.error
        try:
            self._sync()
        except OSError as exc:
            self.error = RecordingError(self.part, "fsync", exc)
            raise self.error from exc

    # ------------------------------------------------------------------ finishing

    def close(self) -> Path:
        """Finalise the header, fsync, rename ``.part`` to the final name, fsync the directory; returns the final
        path. After a write error this still finalises the frames that reached the disk (a partial trailing frame
        is cut). If finalising itself fails, raises RecordingError and leaves the ``.part`` for ``repair``."""
        if self._closed:
            if self.error is not None and not self.path.exists():
                raise self.error
            return self.path
        self._closed = True
        action = "finalise"
        try:
            data_len = self.frames_written * self.block_align
            if data_len != self.bytes_written:  # a failed write left part of a frame
                os.ftruncate(self._fd, self._head_len + data_len)
                self.bytes_written = data_len
            pad = data_len & 1
            if pad:  # RIFF chunks are word aligned: odd data (μ-law mono) gets a pad byte outside the data size
                try:
                    os.pwrite(self._fd, b"\0", self._head_len + data_len)
                except OSError:  # no room for one byte: drop the last sample instead (shrinking needs no space)
                    data_len -= self.block_align
                    self.bytes_written = data_len
                    os.ftruncate(self._fd, self._head_len + data_len)
                    pad = 0
            head = bytearray(_header(self.fmt, self.channels, self.rate, data_len))
            head[4:8] = struct.pack("<I", len(head) - 8 + data_len + pad)
            os.pwrite(self._fd, head, 0)
            if self.fsync != "never":
                action = "fsync"
                os.fsync(self._fd)
            action = "close"
            fd, self._fd = self._fd, -1
            os.close(fd)
            action = "rename"
            os.replace(self.part, self.path)
            if self.fsync != "never":
                action = "fsync the directory of"
                _fsync_dir(self.path.parent)
        except OSError as exc:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
            err = RecordingError(self.part, action, exc)
            self.error = self.error or err
            log.error("%s", err)
            if action == "fsync the directory of":  # renamed already: the file is complete, only durability is unsure
                return self.path
            raise err from exc
        return self.path

    def abort(self) -> None:
        """Close without finalising and keep the ``.part`` (the caller decides: ``repair`` it, or delete it)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._refresh_header()  # best effort, so the .part reads as far as it got
        except OSError:
            pass
        os.close(self._fd)
        self._fd = -1

    def __enter__(self) -> WavWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:  # never finalise implicitly (that would hide a missing close); just free the fd
        fd = getattr(self, "_fd", -1)
        if fd >= 0 and not getattr(self, "_closed", True):
            try:
                os.close(fd)
            except OSError:
                pass


# ---------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class _Layout:
    tag: int  # format tag; WAVE_FORMAT_EXTENSIBLE resolved to its subformat
    channels: int
    rate: int
    bits: int
    block_align: int
    data_off: int  # first data byte
    data_size: int  # as declared
    riff_size: int
    fact_off: int | None  # offset of the fact chunk's sample count


def _parse(f, path: Path) -> _Layout:
    """Walk the chunks up to ``data``; raises WavFormatError for anything that is not a usable WAV header."""
    head = f.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise WavFormatError(path, "not a RIFF/WAVE file" if len(head) >= 12 else "shorter than a WAV header")
    riff_size = struct.unpack_from("<I", head, 4)[0]
    fmt: tuple[int, int, int, int, int] | None = None
    fact_off: int | None = None
    pos = 12
    while True:
        chunk = f.read(8)
        if len(chunk) < 8:
            raise WavFormatError(path, "no data chunk (truncated header)")
        cid, size = chunk[:4], struct.unpack_from("<I", chunk, 4)[0]
        pos += 8
        if cid == b"fmt ":
            body = f.read(min(size, 1 << 16))
            if size < 16 or len(body) < 16:
                raise WavFormatError(path, "truncated fmt chunk")
            tag, channels, rate, _, block, bits = struct.unpack_from("<HHIIHH", body)
            if tag == _EXTENSIBLE:
                if len(body) < 40:
                    raise WavFormatError(path, "truncated WAVE_FORMAT_EXTENSIBLE fmt chunk")
                tag = struct.unpack_from("<H", body, 24)[0]  # first two bytes of the subformat GUID
            fmt = (tag, channels, rate, bits, block)
        elif cid == b"fact":
            fact_off = pos
        elif cid == b"data":
            if fmt is None:
                raise WavFormatError(path, "data chunk before fmt chunk")
            tag, channels, rate, bits, block = fmt
            if channels < 1 or block < 1 or rate < 1:
                raise WavFormatError(path, f"invalid fmt: {channels} channels, block align {block}, rate {rate}")
            return _Layout(tag, channels, rate, bits, block, pos, size, riff_size, fact_off)
        pos += size + (size & 1)
        f.seek(pos)


_TO_INT16: dict[tuple[int, int], Callable[[bytes], np.ndarray]] = {
    (_PCM, 8): lambda b: ((np.frombuffer(b, np.uint8).astype(np.int16) - 128) << 8).astype(np.int16),
    (_PCM, 16): lambda b: np.frombuffer(b, "<i2").astype(np.int16),
    (_PCM, 24): lambda b: np.frombuffer(b, np.uint8).reshape(-1, 3)[:, 1:].copy().view("<i2").reshape(-1)
    .astype(np.int16),
    (_PCM, 32): lambda b: (np.frombuffer(b, "<i4") >> 16).astype(np.int16),
    (_FLOAT, 32): lambda b: np.clip(np.rint(np.frombuffer(b, "<f4") * 32768.0), -32768, 32767).astype(np.int16),
    (_FLOAT, 64): lambda b: np.clip(np.rint(np.frombuffer(b, "<f8") * 32768.0), -32768, 32767).astype(np.int16),
    (_MULAW, 8): lambda b: ULAW_DECODE.take(np.frombuffer(b, np.uint8)),
    (_ALAW, 8): lambda b: ALAW_DECODE.take(np.frombuffer(b, np.uint8)),
}


def read_wav(path: Path | str) -> tuple[int, int, np.ndarray]:
    """``(rate, channels, samples)`` with samples int16 of shape (n, channels), from a PCM (8/16/24/32-bit,
    float), μ-law or A-law WAV, WAVE_FORMAT_EXTENSIBLE included. Reads what is there when the declared data size
    overruns the file (a crashed ``.part``), to whole frames. Raises WavFormatError or OSError."""
    path = Path(path)
    with open(path, "rb") as f:
        lay = _parse(f, path)
        decode = _TO_INT16.get((lay.tag, lay.bits))
        if decode is None:
            raise WavFormatError(path, f"unsupported encoding: format tag {lay.tag}, {lay.bits} bits")
        if lay.block_align != lay.channels * (lay.bits // 8):
            raise WavFormatError(path, f"block align {lay.block_align} does not match {lay.channels} x {lay.bits} "
                                       "bits")
        raw = f.read(lay.data_size)
    raw = raw[:len(raw) - len(raw) % lay.block_align]
    return lay.rate, lay.channels, decode(raw).reshape(-1, lay.channels)


# ---------------------------------------------------------------------------- crash recovery


@dataclass(frozen=True)
class RepairResult:
    """What ``repair`` made of one ``.part``: ``path`` is the final WAV, or the ``.part.bad`` when ``problem``."""

    path: Path
    seconds: float
    frames: int
    truncated_bytes: int  # a partial trailing sample frame that was cut
    problem: str | None = None


def _free_name(final: Path) -> Path:
    if not final.exists():
        return final
    n = 1
    while (alt := final.with_name(f"{final.stem}.recovered-{n}{final.suffix}")).exists():
        n += 1
    return alt


def _set_aside(part: Path, problem: str) -> RepairResult:
    bad = part.with_name(part.name + BAD)
    n = 1
    while bad.exists():
        bad = part.with_name(f"{part.name}{BAD}-{n}")
        n += 1
    try:
        os.replace(part, bad)
    except OSError as exc:
        problem += f"; cannot rename to {bad.name}: {exc.strerror or exc}"
        bad = part
    log.warning("recording %s not recoverable: %s", part, problem)
    return RepairResult(bad, 0.0, 0, 0, problem)


def repair(part: Path) -> RepairResult:
    """Turn a ``.part`` orphaned by a crash into a valid WAV under its final name (``name.recovered-N.wav`` if taken).

    The data length comes from the file size (our data chunk is last), cut to whole frames; the RIFF, data and
    fact sizes are rewritten. A header that cannot be parsed (crash before it was complete) or any OS error gives
    a result with ``problem`` set; the unreadable file is renamed ``*.part.bad``, never deleted. Never raises for
    one bad file, so a start-up sweep carries on.
    """
    part = Path(part)
    if not part.name.endswith(PART):
        return RepairResult(part, 0.0, 0, 0, "not a .part file")
    try:
        with open(part, "r+b") as f:
            try:
                lay = _parse(f, part)
            except WavFormatError as exc:
                f.close()
                return _set_aside(part, exc.problem)
            fd = f.fileno()
            size = os.fstat(fd).st_size
            avail = max(0, size - lay.data_off)
            finished = lay.riff_size == size - 8 and lay.data_size <= avail <= lay.data_size + 1
            data_len = lay.data_size if finished else avail - avail % lay.block_align  # finished: crashed at rename
            truncated = avail - data_len - (data_len & 1 if finished else 0)
            pad = data_len & 1
            os.ftruncate(fd, lay.data_off + data_len)
            if pad:
                os.pwrite(fd, b"\0", lay.data_off + data_len)
            frames = data_len // lay.block_align
            os.pwrite(fd, struct.pack("<I", lay.data_off - 8 + data_len + pad), 4)
            os.pwrite(fd, struct.pack("<I", data_len), lay.data_off - 4)
            if lay.fact_off is not None:
                os.pwrite(fd, struct.pack("<I", frames), lay.fact_off)
            os.fsync(fd)
        final = _free_name(part.with_name(part.name[:-len(PART)]))
        os.replace(part, final)
        _fsync_dir(final.parent)
    except OSError as exc:
        problem = f"cannot repair: {exc.strerror or exc}"
        log.error("recording %s: %s", part, problem)
        return RepairResult(part, 0.0, 0, 0, problem)
    result = RepairResult(final, frames / lay.rate, frames, truncated)
    log.warning("recording %s repaired after a crash: %.2f s kept as %s%s", part, result.seconds, final.name,
                f", {truncated} trailing bytes cut" if truncated else "")
    return result


def find_parts(directory: Path, pattern: str = "*.wav" + PART) -> list[Path]:
    """Every orphaned recording (``*.wav.part``) under ``directory``, recursively, sorted; none if the directory
    does not exist. Other ``.part`` files (a sidecar's ``x.json.part``) are not WAVs and are left to their owner."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.rglob(pattern) if p.is_file())


def repair_all(directory: Path) -> list[RepairResult]:
    """``repair`` every orphaned ``.part`` under ``directory``: the start-up sweep (only before writers start)."""
    return [repair(p) for p in find_parts(directory)]


# ---------------------------------------------------------------------------- retention


def retention(directory: Path, days: float, now: float | None = None) -> list[Path]:
    """Delete finished recordings (``*.wav``) last modified more than ``days`` ago, with their ``.json`` sidecars
    (``x.json`` or ``x.wav.json``); ``.part`` and ``.part.bad`` files are never touched. Returns what was deleted;
    files that cannot be deleted are logged and skipped."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    cutoff = (time.time() if now is None else now) - days * 86400.0
    deleted: list[Path] = []
    for wav in sorted(directory.rglob("*.wav")):
        try:
            if not wav.is_file() or wav.stat().st_mtime >= cutoff:
                continue
        except OSError:
            continue  # vanished meanwhile
        for victim in (wav, wav.with_suffix(".json"), wav.with_name(wav.name + ".json")):
            try:
                os.unlink(victim)
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.error("retention: cannot delete %s: %s", victim, exc.strerror or exc)
                if victim == wav:
                    break  # keep the sidecar of a recording that stays
                continue
            deleted.append(victim)
    return deleted

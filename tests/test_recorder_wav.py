"""The recorder's file layer on real files: round trips, header bytes, crash repair, disk full, EACCES, retention."""

from __future__ import annotations

import errno
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from softswitch.media.g711 import ULAW_DECODE, ULAW_ENCODE
from softswitch.recorder.wav import (FORMATS, RecordingError, WavFormatError, WavWriter, find_parts, read_wav,
                                     repair, repair_all, retention)

REPO = Path(__file__).resolve().parent.parent
FRAME = 160


def signal_frames(n_frames: int, channels: int, seed: int = 1) -> np.ndarray:
    """Loud random int16 audio, (n_frames * 160, channels), full range so μ-law's clipping is exercised too."""
    rng = np.random.default_rng(seed)
    return rng.integers(-32768, 32768, size=(n_frames * FRAME, channels)).astype(np.int16)


def ulaw_roundtrip(x: np.ndarray) -> np.ndarray:
    return ULAW_DECODE[ULAW_ENCODE[x.view(np.uint16)]]


def expected(x: np.ndarray, fmt: str) -> np.ndarray:
    return x if fmt == "pcm16" else ulaw_roundtrip(x)


def record(path: Path, audio: np.ndarray, fmt: str, chunk: int = FRAME, **kw) -> Path:
    with WavWriter(path, audio.shape[1], fmt=fmt, **kw) as w:
        for i in range(0, len(audio), chunk):
            w.write(audio[i:i + chunk])
    return w.path


# ---------------------------------------------------------------------------- round trips and headers


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("channels", [1, 2])
def test_round_trip(tmp_path: Path, fmt: str, channels: int) -> None:
    audio = signal_frames(50, channels)
    final = record(tmp_path / "call.wav", audio, fmt)
    rate, ch, got = read_wav(final)
    assert (rate, ch) == (8000, channels)
    assert got.dtype == np.int16 and got.shape == audio.shape
    np.testing.assert_array_equal(got, expected(audio, fmt))
    if fmt == "pcm16":  # any reader: the stdlib's
        with wave.open(str(final), "rb") as w:
            assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (channels, 2, 8000,
                                                                                                len(audio))
            assert w.readframes(len(audio)) == audio.astype("<i2").tobytes()


def test_mono_accepts_1d_and_duration(tmp_path: Path) -> None:
    audio = signal_frames(3, 1)[:, 0]
    w = WavWriter(tmp_path / "m.wav", 1)
    w.write(audio)
    w.write(audio.reshape(-1, 1))
    assert w.frames_written == 960 and w.bytes_written == 1920 and w.duration_s == pytest.approx(0.12)
    w.close()
    np.testing.assert_array_equal(read_wav(tmp_path / "m.wav")[2][:, 0], np.concatenate([audio, audio]))


def test_non_contiguous_input(tmp_path: Path) -> None:
    both = signal_frames(2, 4)
    final = record(tmp_path / "nc.wav", both[:, ::2], "pcm16")  # strided columns 0 and 2
    np.testing.assert_array_equal(read_wav(final)[2], both[:, ::2])


def test_header_pcm16_stereo_bytes(tmp_path: Path) -> None:
    audio = signal_frames(7, 2)
    data = record(tmp_path / "p.wav", audio, "pcm16").read_bytes()
    n = len(audio) * 4
    assert len(data) == 44 + n
    assert data[0:4] == b"RIFF" and struct.unpack("<I", data[4:8])[0] == len(data) - 8
    assert data[8:16] == b"WAVEfmt " and struct.unpack("<I", data[16:20])[0] == 16
    tag, ch, rate, byte_rate, block, bits = struct.unpack("<HHIIHH", data[20:36])
    assert (tag, ch, rate, byte_rate, block, bits) == (1, 2, 8000, 32000, 4, 16)
    assert data[36:40] == b"data" and struct.unpack("<I", data[40:44])[0] == n
    assert data[44:] == audio.astype("<i2").tobytes()


def test_header_ulaw_stereo_bytes(tmp_path: Path) -> None:
    audio = signal_frames(7, 2)
    data = record(tmp_path / "u.wav", audio, "ulaw").read_bytes()
    n = len(audio) * 2
    assert len(data) == 58 + n
    assert data[0:4] == b"RIFF" and struct.unpack("<I", data[4:8])[0] == len(data) - 8
    assert data[8:16] == b"WAVEfmt " and struct.unpack("<I", data[16:20])[0] == 18
    tag, ch, rate, byte_rate, block, bits, cb = struct.unpack("<HHIIHHH", data[20:38])
    assert (tag, ch, rate, byte_rate, block, bits, cb) == (7, 2, 8000, 16000, 2, 8, 0)
    assert data[38:42] == b"fact" and struct.unpack("<II", data[42:50]) == (4, len(audio))
    assert data[50:54] == b"data" and struct.unpack("<I", data[54:58])[0] == n
    assert data[58:] == ULAW_ENCODE[audio.view(np.uint16)].tobytes()  # interleaved L R L R, encoded by our table
    np.testing.assert_array_equal(ULAW_DECODE[np.frombuffer(data[58:], np.uint8)].reshape(-1, 2),
                                  ulaw_roundtrip(audio))


def test_ulaw_mono_odd_length_is_padded(tmp_path: Path) -> None:
    audio = signal_frames(2, 1)[:161]  # 161 samples: odd data length
    data = record(tmp_path / "odd.wav", audio, "ulaw").read_bytes()
    assert struct.unpack("<I", data[54:58])[0] == 161  # data size excludes the pad byte
    assert len(data) == 58 + 162 and len(data) % 2 == 0 and data[-1] == 0
    assert struct.unpack("<I", data[4:8])[0] == len(data) - 8  # RIFF size includes it
    assert struct.unpack("<I", data[46:50])[0] == 161
    rate, ch, got = read_wav(tmp_path / "odd.wav")
    assert got.shape == (161, 1)
    np.testing.assert_array_equal(got, ulaw_roundtrip(audio))


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="format"):
        WavWriter(tmp_path / "a.wav", 2, fmt="mp3")
    with pytest.raises(ValueError, match="fsync"):
        WavWriter(tmp_path / "a.wav", 2, fsync="sometimes")
    with pytest.raises(ValueError, match="channels"):
        WavWriter(tmp_path / "a.wav", 3)
    w = WavWriter(tmp_path / "a.wav", 2)
    with pytest.raises(TypeError, match="int16"):
        w.write(np.zeros((160, 2)))
    with pytest.raises(ValueError, match="shape"):
        w.write(np.zeros(160, np.int16))
    w.write(np.zeros((0, 2), np.int16))
    assert w.close() == tmp_path / "a.wav" and w.close() == tmp_path / "a.wav"  # idempotent
    with pytest.raises(ValueError, match="after close"):
        w.write(np.zeros((160, 2), np.int16))
    assert read_wav(tmp_path / "a.wav")[2].shape == (0, 2)


# ---------------------------------------------------------------------------- .part and the atomic rename


def test_part_then_atomic_rename(tmp_path: Path) -> None:
    final = tmp_path / "deep" / "dir" / "c.wav"
    w = WavWriter(final, 2, fmt="ulaw")
    part = final.with_name("c.wav.part")
    assert w.part == part and part.exists() and not final.exists()  # parent dirs created
    w.write(signal_frames(5, 2))
    assert part.exists() and not final.exists()
    assert w.close() == final
    assert final.exists() and not part.exists()
    assert find_parts(tmp_path) == []


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    (tmp_path / "x.wav").write_bytes(b"old")
    with pytest.raises(FileExistsError, match="x.wav"):
        WavWriter(tmp_path / "x.wav", 2)
    assert (tmp_path / "x.wav").read_bytes() == b"old"
    (tmp_path / "y.wav.part").write_bytes(b"crashed")
    with pytest.raises(FileExistsError, match="y.wav.part"):
        WavWriter(tmp_path / "y.wav", 2)
    assert (tmp_path / "y.wav.part").read_bytes() == b"crashed"


def test_abort_keeps_a_readable_part(tmp_path: Path) -> None:
    audio = signal_frames(4, 2)
    w = WavWriter(tmp_path / "a.wav", 2)
    w.write(audio)
    w.abort()
    assert not (tmp_path / "a.wav").exists()
    with wave.open(str(tmp_path / "a.wav.part"), "rb") as r:  # header refreshed by abort
        assert r.getnframes() == len(audio)
    assert repair(tmp_path / "a.wav.part").frames == len(audio)


def test_header_sizes_refreshed_about_every_second(tmp_path: Path) -> None:
    """Without any fsync, a killed process still leaves sizes at most ~1 s stale for naive readers."""
    w = WavWriter(tmp_path / "h.wav", 2, fsync="never")
    w.write(signal_frames(40, 2))  # 0.8 s: not yet
    with wave.open(str(w.part), "rb") as r:
        assert r.getnframes() == 0
    w.write(signal_frames(20, 2))  # 1.2 s total
    with wave.open(str(w.part), "rb") as r:
        assert r.getnframes() == 60 * FRAME
    w.close()


# ---------------------------------------------------------------------------- fsync policies


def count_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return calls


@pytest.mark.parametrize("policy,during,at_close", [("always", 10, 2), ("close", 0, 2), ("never", 0, 0)])
def test_fsync_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy: str, during: int,
                      at_close: int) -> None:
    calls = count_fsyncs(monkeypatch)
    w = WavWriter(tmp_path / "f.wav", 2, fsync=policy)
    for _ in range(10):
        w.write(signal_frames(1, 2))
    assert len(calls) == during
    w.close()
    assert len(calls) == during + at_close  # the file and its directory


def test_fsync_interval_uses_the_clock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = count_fsyncs(monkeypatch)
    now = [100.0]
    w = WavWriter(tmp_path / "i.wav", 2, fsync="interval", fsync_interval_s=5.0, clock=lambda: now[0])
    w.write(signal_frames(1, 2))
    now[0] = 104.9
    w.write(signal_frames(1, 2))
    assert calls == []
    now[0] = 105.0
    w.write(signal_frames(1, 2))
    assert len(calls) == 1
    with wave.open(str(w.part), "rb") as r:  # the fsync point refreshed the header
        assert r.getnframes() == 3 * FRAME
    now[0] = 109.0
    w.write(signal_frames(1, 2))
    assert len(calls) == 1
    now[0] = 110.0
    w.write(signal_frames(1, 2))
    assert len(calls) == 2
    w.close()


# ---------------------------------------------------------------------------- crash and repair

CRASH_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    from softswitch.recorder.wav import WavWriter
    path, fmt, frames = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rng = np.random.default_rng(7)
    audio = rng.integers(-32768, 32768, size=(frames * 160, 2)).astype(np.int16)
    w = WavWriter(path, 2, fmt=fmt, fsync="always")
    for i in range(frames):
        w.write(audio[i * 160:(i + 1) * 160])
    os.kill(os.getpid(), signal.SIGKILL)  # mid-stream: no close, no finally, no atexit
""")


@pytest.mark.parametrize("fmt", FORMATS)
def test_kill_9_then_repair(tmp_path: Path, fmt: str) -> None:
    frames = 37
    final = tmp_path / "rec" / "crash.wav"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, "-c", CRASH_SCRIPT, str(final), fmt, str(frames)], env=env,
                          capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    part = final.with_name("crash.wav.part")
    assert find_parts(tmp_path) == [part] and not final.exists()
    audio = np.random.default_rng(7).integers(-32768, 32768, size=(frames * FRAME, 2)).astype(np.int16)
    # before repair, the header refreshed at each fsync point already makes it readable
    np.testing.assert_array_equal(read_wav(part)[2], expected(audio, fmt))

    [result] = repair_all(tmp_path)
    assert result.path == final and result.problem is None
    assert result.frames == frames * FRAME and result.truncated_bytes == 0
    assert result.seconds == pytest.approx(frames * 0.02)
    assert not part.exists()
    rate, ch, got = read_wav(final)
    assert (rate, ch) == (8000, 2)
    np.testing.assert_array_equal(got, expected(audio, fmt))
    if fmt == "pcm16":
        with wave.open(str(final), "rb") as w:
            assert w.getnframes() == frames * FRAME


@pytest.mark.parametrize("fmt", FORMATS)
def test_repair_stale_header_and_partial_frame(tmp_path: Path, fmt: str) -> None:
    """A copy taken while writing (sizes still zero in the header) plus half a frame at the end."""
    audio = signal_frames(10, 2)
    w = WavWriter(tmp_path / "live.wav", 2, fmt=fmt, fsync="never", header_interval_s=3600)
    w.write(audio)
    crashed = tmp_path / "copy.wav.part"
    crashed.write_bytes(w.part.read_bytes() + b"\x01")  # one byte of the next stereo frame
    w.close()
    with open(crashed, "rb") as f:
        assert read_wav(f.name)[2].shape == (0, 2)  # sizes stale at zero: what repair is for
    result = repair(crashed)
    assert result.path == tmp_path / "copy.wav" and result.truncated_bytes == 1
    assert result.frames == len(audio)
    np.testing.assert_array_equal(read_wav(result.path)[2], expected(audio, fmt))
    data = result.path.read_bytes()
    assert struct.unpack("<I", data[4:8])[0] == len(data) - 8
    if fmt == "ulaw":
        assert struct.unpack("<I", data[46:50])[0] == len(audio)  # fact rewritten


def test_repair_ulaw_mono_odd_and_pcm16_mid_sample(tmp_path: Path) -> None:
    mono = signal_frames(1, 1)[:101]
    w = WavWriter(tmp_path / "m.wav", 1, fmt="ulaw")
    w.write(mono)
    w.abort()
    result = repair(tmp_path / "m.wav.part")
    data = result.path.read_bytes()
    assert result.frames == 101 and len(data) % 2 == 0 and struct.unpack("<I", data[54:58])[0] == 101
    assert struct.unpack("<I", data[4:8])[0] == len(data) - 8

    stereo = signal_frames(2, 2)
    w = WavWriter(tmp_path / "s.wav", 2)
    w.write(stereo)
    w.abort()
    part = tmp_path / "s.wav.part"
    with open(part, "ab") as f:
        f.write(b"\x11\x22\x33")  # left sample and half of the right one
    result = repair(part)
    assert (result.frames, result.truncated_bytes) == (len(stereo), 3)
    np.testing.assert_array_equal(read_wav(result.path)[2], stereo)


def test_repair_of_a_file_finished_but_not_renamed(tmp_path: Path) -> None:
    """Crash between the final header write and the rename: the pad byte must not become a sample."""
    mono = signal_frames(1, 1)[:33]
    final = record(tmp_path / "f.wav", mono, "ulaw")
    part = tmp_path / "f.wav.part"
    os.replace(final, part)
    before = part.read_bytes()
    result = repair(part)
    assert (result.frames, result.truncated_bytes, result.path) == (33, 0, final)
    assert final.read_bytes() == before


def test_repair_name_taken_gives_recovered_n(tmp_path: Path) -> None:
    for name in ("a.wav", "a.recovered-1.wav"):
        (tmp_path / name).write_bytes(b"keep")
    w = WavWriter(tmp_path / "b.wav", 2)
    w.write(signal_frames(1, 2))
    w.abort()
    os.replace(w.part, tmp_path / "a.wav.part")
    result = repair(tmp_path / "a.wav.part")
    assert result.path == tmp_path / "a.recovered-2.wav" and result.frames == FRAME
    assert (tmp_path / "a.wav").read_bytes() == b"keep"


@pytest.mark.parametrize("content", [b"", b"garbage that is not a wav file at all",
                                     b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00"])  # cut inside the header
def test_unreadable_part_set_aside(tmp_path: Path, content: bytes) -> None:
    part = tmp_path / "x.wav.part"
    part.write_bytes(content)
    result = repair(part)
    assert result.problem and result.seconds == 0 and result.frames == 0
    assert result.path == tmp_path / "x.wav.part.bad"
    assert result.path.read_bytes() == content and not part.exists()
    assert find_parts(tmp_path) == []  # a .part.bad is not picked up again
    part.write_bytes(content)  # a second one does not clobber the first
    assert repair(part).path == tmp_path / "x.wav.part.bad-1"


def test_repair_all_carries_on_past_bad_files(tmp_path: Path) -> None:
    (tmp_path / "a.wav.part").write_bytes(b"")
    w = WavWriter(tmp_path / "sub" / "b.wav", 2)
    w.write(signal_frames(2, 2))
    w.abort()
    (tmp_path / "c.wav.part").write_bytes(b"junk")
    (tmp_path / "c.json.part").write_text("{}")  # a sidecar in progress: not a recording, not touched
    assert find_parts(tmp_path) == [tmp_path / "a.wav.part", tmp_path / "c.wav.part",
                                    tmp_path / "sub" / "b.wav.part"]
    results = repair_all(tmp_path)
    assert [r.problem is None for r in results] == [False, False, True]
    assert results[2].frames == 2 * FRAME and results[2].path == tmp_path / "sub" / "b.wav"
    assert find_parts(tmp_path / "nowhere") == []
    assert (tmp_path / "c.json.part").read_text() == "{}"


# ---------------------------------------------------------------------------- disk full and permissions


def fail_writes_after(monkeypatch: pytest.MonkeyPatch, fd_of, budget: int, code: int = errno.ENOSPC) -> None:
    """os.write on the writer's fd succeeds for ``budget`` bytes (the last one short), then raises ``code``."""
    real = os.write
    left = [budget]

    def write(fd: int, data) -> int:
        if fd != fd_of():
            return real(fd, data)
        if left[0] <= 0:
            raise OSError(code, os.strerror(code))
        n = real(fd, memoryview(data)[:left[0]])
        left[0] -= n
        return n

    monkeypatch.setattr(os, "write", write)


@pytest.mark.parametrize("fmt", FORMATS)
def test_disk_full_leaves_a_valid_shorter_wav(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    audio = signal_frames(10, 2)
    w = WavWriter(tmp_path / "full.wav", 2, fmt=fmt)
    budget = 3 * FRAME * w.block_align + 3  # 3 frames fit, then part of a sample frame
    fail_writes_after(monkeypatch, lambda: w._fd, budget)
    w.write(audio[:FRAME])
    w.write(audio[FRAME:2 * FRAME])
    w.write(audio[2 * FRAME:3 * FRAME])
    with pytest.raises(RecordingError) as info:
        w.write(audio[3 * FRAME:4 * FRAME])
    err = info.value
    assert isinstance(err, OSError) and err.errno == errno.ENOSPC
    assert str(w.part) in str(err) and "No space left on device" in str(err) and "ENOSPC" in str(err)
    assert w.error is err
    t = time.perf_counter()
    with pytest.raises(RecordingError) as again:  # failed state: at once, same error
        w.write(audio[4 * FRAME:5 * FRAME])
    assert again.value is err and time.perf_counter() - t < 0.01
    monkeypatch.undo()
    assert w.close() == tmp_path / "full.wav"
    rate, ch, got = read_wav(tmp_path / "full.wav")
    np.testing.assert_array_equal(got, expected(audio[:3 * FRAME + 3 // w.block_align], fmt))
    data = (tmp_path / "full.wav").read_bytes()
    assert struct.unpack("<I", data[4:8])[0] == len(data) - 8
    if fmt == "pcm16":
        with wave.open(str(tmp_path / "full.wav"), "rb") as r:
            assert r.getnframes() == 3 * FRAME


def test_disk_full_no_room_for_the_pad_byte(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    audio = signal_frames(1, 1)[:100]
    w = WavWriter(tmp_path / "p.wav", 1, fmt="ulaw")
    fail_writes_after(monkeypatch, lambda: w._fd, 99)
    with pytest.raises(RecordingError):
        w.write(audio)
    real_pwrite = os.pwrite

    def pwrite(fd: int, data, offset: int) -> int:
        if len(data) == 1:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    final = w.close()
    data = final.read_bytes()
    assert struct.unpack("<I", data[54:58])[0] == 98 and len(data) == 58 + 98  # last sample dropped, not the pad
    np.testing.assert_array_equal(read_wav(final)[2][:, 0], ulaw_roundtrip(audio[:98, 0]))


def test_close_failure_keeps_the_part(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = WavWriter(tmp_path / "e.wav", 2)
    w.write(signal_frames(2, 2))

    def fsync(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(RecordingError, match="Input/output error") as info:
        w.close()
    assert info.value.errno == errno.EIO and "e.wav.part" in str(info.value)
    monkeypatch.undo()
    assert w.part.exists() and not w.path.exists()
    with pytest.raises(RecordingError):
        w.close()
    assert repair(w.part).frames == 2 * FRAME


def test_header_write_fails_no_part_left(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.write

    def write(fd: int, data) -> int:
        if fd > 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)
    with pytest.raises(RecordingError, match="header"):
        WavWriter(tmp_path / "h.wav", 2)
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.geteuid() == 0:  # root ignores directory modes: make the OS say what it would say to anyone else
            real = os.open

            def fake_open(path, flags, *args, **kw):
                if str(path).startswith(str(locked)) and flags & os.O_CREAT:
                    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
                return real(path, flags, *args, **kw)

            monkeypatch.setattr(os, "open", fake_open)
        with pytest.raises(RecordingError) as info:
            WavWriter(locked / "p.wav", 2)
        err = info.value
        assert err.errno == errno.EACCES and isinstance(err, OSError)
        assert str(locked / "p.wav.part") in str(err) and "Permission denied" in str(err)
        monkeypatch.undo()
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


# ---------------------------------------------------------------------------- reading others' WAVs


def test_read_wav_extensible_24bit_and_8bit(tmp_path: Path) -> None:
    x = np.array([[0, -32768], [32767, 1234]], np.int16)
    lo = np.zeros((2, 2, 1), np.uint8) + 0x5A  # extra low byte, dropped on reading
    body24 = np.concatenate([lo, x.astype("<i2").view(np.uint8).reshape(2, 2, 2)], axis=2).tobytes()
    sub = struct.pack("<H", 1) + bytes.fromhex("000000001000800000aa00389b71")
    fmt = struct.pack("<HHIIHHHHI", 0xFFFE, 2, 16000, 16000 * 6, 6, 24, 22, 24, 3) + sub
    riff = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"LIST" + struct.pack("<I", 3) + b"abc\0"
    riff += b"data" + struct.pack("<I", len(body24)) + body24
    (tmp_path / "ext.wav").write_bytes(b"RIFF" + struct.pack("<I", len(riff)) + riff)
    rate, ch, got = read_wav(tmp_path / "ext.wav")
    assert (rate, ch) == (16000, 2)
    np.testing.assert_array_equal(got, x)

    with wave.open(str(tmp_path / "u8.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(8000)
        w.writeframes(bytes([0, 128, 255]))
    np.testing.assert_array_equal(read_wav(tmp_path / "u8.wav")[2][:, 0], [-32768, 0, 127 << 8])


def test_read_wav_rejects_non_wav(tmp_path: Path) -> None:
    (tmp_path / "n.wav").write_bytes(b"ID3 not a wave file")
    with pytest.raises(WavFormatError, match="n.wav"):
        read_wav(tmp_path / "n.wav")
    fmt = struct.pack("<HHIIHH", 0x55, 1, 8000, 1000, 1, 0)
    riff = b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", 0)
    (tmp_path / "mp3.wav").write_bytes(b"RIFF" + struct.pack("<I", len(riff)) + riff)
    with pytest.raises(WavFormatError, match="unsupported encoding"):
        read_wav(tmp_path / "mp3.wav")


# ---------------------------------------------------------------------------- retention


def test_retention_deletes_only_old_finished_recordings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    now = 1_800_000_000.0
    day = 86400.0
    files = {
        "old.wav": 10, "old.json": 10, "sub/old2.wav": 8, "sub/old2.wav.json": 8, "sub/old2-left.wav": 8,
        "new.wav": 1, "new.json": 1, "old-crash.wav.part": 30, "old-crash.wav.part.bad": 30, "stuck.wav": 9,
        "unrelated.json": 30,
    }
    for name, age in files.items():
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
        os.utime(p, (now - age * day, now - age * day))
    real = os.unlink

    def unlink(path, *a, **kw):
        if Path(path).name == "stuck.wav":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real(path, *a, **kw)

    monkeypatch.setattr(os, "unlink", unlink)
    deleted = retention(tmp_path, days=7, now=now)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in deleted) == [
        "old.json", "old.wav", "sub/old2-left.wav", "sub/old2.wav", "sub/old2.wav.json"]
    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert left == ["new.json", "new.wav", "old-crash.wav.part", "old-crash.wav.part.bad", "stuck.wav",
                    "unrelated.json"]
    assert retention(tmp_path / "missing", days=1) == []

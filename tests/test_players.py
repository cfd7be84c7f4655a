"""Prompt loading (WAV widths, channels, rates), resampling, and the frame sources built on them."""

from __future__ import annotations

import os
import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from softswitch.media.players import (FRAME, BufferSource, PromptCache, PromptError, SequenceSource,
                                      SilenceSource, Source, load_wav)
from softswitch.media.resample import resample

REPO = Path(__file__).resolve().parent.parent
WELCOME = REPO / "config" / "prompts" / "welcome.wav"


# ---------------------------------------------------------------------------- helpers

def pcm_bytes(x: np.ndarray, width: int) -> bytes:
    """Float frames x channels in [-1, 1] as interleaved little-endian PCM of ``width`` bytes."""
    flat = x.reshape(-1)
    if width == 1:
        return np.clip(np.rint(flat * 127 + 128), 0, 255).astype(np.uint8).tobytes()
    if width == 2:
        return np.rint(flat * 32767).astype("<i2").tobytes()
    if width == 3:
        v = np.rint(flat * 8388607).astype("<i4")
        return v.view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    return np.rint(flat * 2147483647).astype("<i4").tobytes()


def write_wav(path: Path, x: np.ndarray, width: int, rate: int) -> Path:
    x = x[:, None] if x.ndim == 1 else x
    with wave.open(str(path), "wb") as w:
        w.setnchannels(x.shape[1])
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(pcm_bytes(x, width))
    return path


def sine(freq: float, rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    return amp * np.sin(2 * np.pi * freq * np.arange(int(round(rate * seconds))) / rate)


def peak_hz(x: np.ndarray, rate: int) -> float:
    x = np.asarray(x, dtype=np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    k = int(np.argmax(spectrum))
    if 0 < k < len(spectrum) - 1:  # parabolic interpolation between bins
        a, b, c = np.log(spectrum[k - 1: k + 2] + 1e-12)
        k = k + 0.5 * (a - c) / (a - 2 * b + c)
    return k * rate / len(x)


def amplitude(x: np.ndarray) -> float:
    """Amplitude of a steady sine from its RMS, ignoring 50 ms at each end (filter edges)."""
    mid = np.asarray(x[400:-400], dtype=np.float64)
    return float(np.sqrt(np.mean(mid ** 2)) * np.sqrt(2))


def frames(source, limit: int = 100_000) -> list[np.ndarray]:
    out = []
    for _ in range(limit):
        f = source.read()
        if f is None:
            return out
        out.append(f)
    raise AssertionError(f"source did not finish within {limit} frames")


def riff(fmt_body: bytes, data: bytes) -> bytes:
    chunks = b"fmt " + struct.pack("<I", len(fmt_body)) + fmt_body + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


# ---------------------------------------------------------------------------- resample

@pytest.mark.parametrize("src", [16000, 44100, 48000, 22050, 11025, 32000])
def test_resample_keeps_a_1khz_sine(src):
    x = sine(1000, src, 1.0, amp=1.0)
    y = resample(x, src, 8000)
    assert y.dtype == np.float64
    assert abs(len(y) - round(len(x) * 8000 / src)) <= 1
    assert abs(peak_hz(y, 8000) - 1000) < 1.0
    gain_db = 20 * np.log10(amplitude(y))
    assert abs(gain_db) <= 0.5, f"{src} Hz -> 8 kHz changed a 1 kHz sine by {gain_db:.2f} dB"


def test_resample_rejects_aliasing():
    """5 kHz at 16 kHz would fold to 3 kHz at 8 kHz; the low-pass must remove it (>= 50 dB)."""
    y = resample(sine(5000, 16000, 1.0, amp=1.0), 16000, 8000)
    residual_db = 20 * np.log10(amplitude(y) + 1e-12)
    assert residual_db <= -50, f"alias only {residual_db:.1f} dB down"
    # and without the filter it would be there at full level: the check itself can fail
    naive = sine(5000, 16000, 1.0, amp=1.0)[::2]
    assert 20 * np.log10(amplitude(naive)) > -1


@pytest.mark.parametrize("src,dst,n", [(44100, 8000, 12345), (48000, 8000, 7), (22050, 8000, 1),
                                       (11025, 8000, 999), (16000, 8000, 3201), (8000, 8000, 500),
                                       (8000, 16000, 333), (8000, 44100, 101)])
def test_resample_length(src, dst, n):
    y = resample(np.random.default_rng(1).standard_normal(n), src, dst)
    assert abs(len(y) - round(n * dst / src)) <= 1


def test_resample_upsamples_and_keeps_time_alignment():
    y = resample(sine(1000, 8000, 1.0, amp=1.0), 8000, 16000)
    assert len(y) == 16000
    assert abs(peak_hz(y, 16000) - 1000) < 1.0
    assert abs(20 * np.log10(amplitude(y))) <= 0.5
    impulse = np.zeros(4410)
    impulse[2205] = 1.0
    assert abs(int(np.argmax(resample(impulse, 44100, 8000))) - 400) <= 1  # 2205/44100 s = sample 400


def test_resample_identity_and_errors():
    x = np.arange(10, dtype=np.int16)
    y = resample(x, 8000, 8000)
    assert y.dtype == np.float64 and np.array_equal(y, x)
    assert len(resample(np.zeros(0), 44100, 8000)) == 0
    with pytest.raises(ValueError):
        resample(x, 0, 8000)
    with pytest.raises(ValueError):
        resample(np.zeros((2, 2)), 16000, 8000)


# ---------------------------------------------------------------------------- load_wav

@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_load_wav_formats(tmp_path, width, channels, rate):
    x = sine(440, rate, 1.0)
    path = write_wav(tmp_path / "p.wav", np.repeat(x[:, None], channels, axis=1), width, rate)
    pcm = load_wav(path)
    assert pcm.dtype == np.int16 and pcm.ndim == 1
    assert abs(len(pcm) - 8000) <= 1, "duration not preserved"
    assert abs(peak_hz(pcm, 8000) - 440) < 1.0
    level_db = 20 * np.log10(amplitude(pcm) / (0.5 * 32768))
    assert abs(level_db) <= 0.5, f"level changed by {level_db:.2f} dB"
    assert not pcm.flags.writeable


def test_load_wav_mixes_channels_down(tmp_path):
    x = sine(440, 8000, 1.0, amp=0.8)
    stereo = np.stack([x, np.zeros_like(x)], axis=1)  # left only
    pcm = load_wav(write_wav(tmp_path / "s.wav", stereo, 2, 8000))
    assert abs(amplitude(pcm) - 0.4 * 32768) < 0.01 * 32768


def test_load_wav_8bit_is_unsigned(tmp_path):
    path = tmp_path / "u8.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(8000)
        w.writeframes(bytes([128, 128, 255, 0, 192]))
    assert load_wav(path).tolist() == [0, 0, 32512, -32768, 16384]


def test_load_wav_24bit_sign_extension(tmp_path):
    values = [-8388608, -65536, -256, 0, 256, 65536, 8388607]
    raw = b"".join(v.to_bytes(3, "little", signed=True) for v in values)
    path = tmp_path / "s24.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(3)
        w.setframerate(8000)
        w.writeframes(raw)
    assert load_wav(path).tolist() == [-32768, -256, -1, 0, 1, 256, 32767]


def test_load_wav_extensible_pcm(tmp_path):
    """ffmpeg and sox tag 24-bit/multichannel PCM as WAVE_FORMAT_EXTENSIBLE, which 3.11's wave rejects."""
    x = sine(440, 16000, 0.5)
    data = pcm_bytes(x[:, None], 3)
    sub_pcm = struct.pack("<IHH8s", 1, 0, 0x10, b"\x80\x00\x00\xaa\x00\x38\x9b\x71")
    fmt = struct.pack("<HHIIHHHHI", 0xFFFE, 1, 16000, 16000 * 3, 3, 24, 22, 24, 4) + sub_pcm
    path = tmp_path / "ext.wav"
    path.write_bytes(riff(fmt, data))
    pcm = load_wav(path)
    assert abs(len(pcm) - 4000) <= 1
    assert abs(peak_hz(pcm, 8000) - 440) < 2.0


def test_prompt_error_missing(tmp_path):
    path = tmp_path / "nope.wav"
    with pytest.raises(PromptError) as info:
        load_wav(path)
    assert str(path) in str(info.value) and "not found" in str(info.value)
    assert info.value.path == path


@pytest.mark.parametrize("content,why", [
    (b"", "not a WAV"),
    (b"this is not audio at all, just some text" * 10, "not a WAV"),
    (bytes(range(256)) * 8, "not a WAV"),
])
def test_prompt_error_garbage(tmp_path, content, why):
    path = tmp_path / "garbage.wav"
    path.write_bytes(content)
    with pytest.raises(PromptError) as info:
        load_wav(path)
    assert str(path) in str(info.value) and why in str(info.value)


def test_prompt_error_truncated(tmp_path):
    full = write_wav(tmp_path / "full.wav", sine(440, 8000, 1.0), 2, 8000).read_bytes()
    path = tmp_path / "cut.wav"
    path.write_bytes(full[: len(full) // 2])
    with pytest.raises(PromptError) as info:
        load_wav(path)
    assert str(path) in str(info.value) and "truncated" in str(info.value)
    head_only = tmp_path / "head.wav"
    head_only.write_bytes(full[:30])
    with pytest.raises(PromptError, match="head.wav"):
        load_wav(head_only)


def test_prompt_error_float_and_empty_and_directory(tmp_path):
    fmt = struct.pack("<HHIIHH", 3, 1, 8000, 32000, 4, 32)
    path = tmp_path / "float.wav"
    path.write_bytes(riff(fmt, np.zeros(100, dtype="<f4").tobytes()))
    with pytest.raises(PromptError, match="IEEE float"):
        load_wav(path)
    empty = write_wav(tmp_path / "empty.wav", np.zeros(0), 2, 8000)
    with pytest.raises(PromptError, match="no audio"):
        load_wav(empty)
    with pytest.raises(PromptError, match="directory"):
        load_wav(tmp_path)


def test_shipped_welcome_prompt():
    with wave.open(str(WELCOME)) as w:
        assert (w.getframerate(), w.getsampwidth(), w.getnchannels()) == (22050, 2, 1)
    assert WELCOME.stat().st_size < 300_000
    pcm = load_wav(WELCOME)
    assert 2.0 <= len(pcm) / 8000 <= 8.0
    assert np.sqrt(np.mean(pcm.astype(np.float64) ** 2)) > 500, "welcome.wav is (nearly) silent"


# ---------------------------------------------------------------------------- sources

def test_buffer_source_once_pads_last_frame():
    samples = np.arange(1, 401, dtype=np.int16)  # 2.5 frames
    src = BufferSource(samples)
    out = frames(src)
    assert [len(f) for f in out] == [FRAME] * 3
    assert np.array_equal(np.concatenate(out), np.concatenate([samples, np.zeros(80, np.int16)]))
    assert all(f.dtype == np.int16 and not f.flags.writeable for f in out)
    assert src.read() is None and src.read() is None
    assert isinstance(src, Source) and isinstance(SilenceSource(), Source)


def test_buffer_source_exact_frames_no_extra():
    samples = np.arange(320, dtype=np.int16)
    assert len(frames(BufferSource(samples))) == 2
    assert frames(BufferSource(np.zeros(0, np.int16))) == []


@pytest.mark.parametrize("n", [400, 160, 50, 1000])
def test_buffer_source_loops_seamlessly(n):
    samples = np.arange(1, n + 1, dtype=np.int16)
    src = BufferSource(samples, loop=True, max_loops=3)
    out = np.concatenate(frames(src))
    expected = np.tile(samples, 3)
    assert np.array_equal(out[: len(expected)], expected)
    assert len(out) == -(-len(expected) // FRAME) * FRAME and not out[len(expected):].any()
    endless = BufferSource(samples, loop=True)
    got = np.concatenate([endless.read() for _ in range(200)])
    assert np.array_equal(got, np.resize(samples, 200 * FRAME))


def test_buffer_source_rejects_bad_input():
    with pytest.raises(ValueError):
        BufferSource(np.zeros(10, dtype=np.float32))
    with pytest.raises(ValueError):
        BufferSource(np.zeros(10, dtype=np.int16), max_loops=2)
    with pytest.raises(ValueError):
        BufferSource(np.zeros(10, dtype=np.int16), loop=True, max_loops=0)


def test_buffer_source_does_not_copy_the_prompt():
    samples = np.arange(1600, dtype=np.int16)
    frame = BufferSource(samples).read()
    assert np.shares_memory(frame, samples)


def test_silence_source():
    assert len(frames(SilenceSource(50))) == 3  # rounded up to whole frames
    assert len(frames(SilenceSource(40))) == 2
    assert frames(SilenceSource(0)) == []
    forever = SilenceSource()
    assert all(forever.read() is not None for _ in range(1000))
    f = forever.read()
    assert len(f) == FRAME and not f.any() and not f.flags.writeable
    with pytest.raises(ValueError):
        SilenceSource(-1)


def test_sequence_source_plays_in_order_without_gaps():
    a = np.full(200, 1, np.int16)
    b = np.full(160, 2, np.int16)
    seq = SequenceSource([BufferSource(a), SilenceSource(40), BufferSource(np.zeros(0, np.int16)), BufferSource(b)])
    out = frames(seq)
    assert len(out) == 2 + 2 + 1
    flat = np.concatenate(out)
    assert flat[:200].tolist() == [1] * 200 and not flat[200:640].any() and flat[640:].tolist() == [2] * 160
    assert seq.read() is None


def test_sequence_source_is_lazy():
    built = []

    def gen():
        for i in range(3):
            built.append(i)
            yield SilenceSource(20)

    seq = SequenceSource(gen())
    assert built == []
    seq.read()
    assert built == [0]
    assert len(frames(seq)) == 2 and built == [0, 1, 2]


# ---------------------------------------------------------------------------- PromptCache

class CountingLoader:
    def __init__(self) -> None:
        self.calls: list[Path] = []

    def __call__(self, path: Path) -> np.ndarray:
        self.calls.append(Path(path))
        return load_wav(path)


def test_prompt_cache_hit_does_not_reread(tmp_path):
    path = write_wav(tmp_path / "a.wav", sine(440, 16000, 0.5), 2, 16000)
    loader = CountingLoader()
    cache = PromptCache(loader=loader)
    first = cache.load(path)
    second = cache.load(str(path))
    assert second is first and len(loader.calls) == 1
    assert not first.flags.writeable
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    third = cache.load(path)
    assert len(loader.calls) == 2 and third is not first
    assert len(cache) == 1, "the stale version must be dropped"
    assert cache.total_samples == len(third)


def test_prompt_cache_notices_content_change(tmp_path):
    path = write_wav(tmp_path / "a.wav", sine(440, 8000, 0.5), 2, 8000)
    cache = PromptCache()
    before = cache.load(path)
    st = path.stat()
    write_wav(path, sine(440, 8000, 1.0), 2, 8000)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime, different size
    assert len(cache.load(path)) == 2 * len(before)


def test_prompt_cache_lru_bound(tmp_path):
    paths = {n: write_wav(tmp_path / f"{n}.wav", sine(440, 8000, 1.0), 2, 8000) for n in "abcd"}
    loader = CountingLoader()
    cache = PromptCache(max_samples=20_000, loader=loader)  # room for two 1 s prompts
    cache.load(paths["a"])
    cache.load(paths["b"])
    cache.load(paths["a"])          # a is now the most recently used
    cache.load(paths["c"])          # evicts b
    assert cache.total_samples <= 20_000 and len(cache) == 2
    assert [p.name for p in loader.calls] == ["a.wav", "b.wav", "c.wav"]
    cache.load(paths["a"])
    assert len(loader.calls) == 3, "a should still be cached"
    cache.load(paths["b"])
    assert len(loader.calls) == 4, "b should have been evicted"


def test_prompt_cache_keeps_nothing_bigger_than_the_budget(tmp_path):
    path = write_wav(tmp_path / "long.wav", sine(440, 8000, 1.0), 2, 8000)
    cache = PromptCache(max_samples=4000)
    assert len(cache.load(path)) == 8000
    assert len(cache) == 0 and cache.total_samples == 0


def test_prompt_cache_errors_name_the_file(tmp_path):
    cache = PromptCache()
    with pytest.raises(PromptError, match="missing.wav.*not found"):
        cache.load(tmp_path / "missing.wav")
    bad = tmp_path / "bad.wav"
    bad.write_text("nope")
    with pytest.raises(PromptError, match="bad.wav"):
        cache.load(bad)
    assert len(cache) == 0

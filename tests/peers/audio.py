"""Audio fixtures and measurements for media tests.

Everything on the wire is 8 kHz G.711, so fixtures are 8 kHz mono 16-bit WAVs:
``espeak`` (speech via espeak-ng, band-limited to 300–3400 Hz with sox, like a phone),
``tone_wav`` (pure numpy). ``normalised_xcorr_peak`` answers "is the audio that came
out of the call the audio that went in?": G.711 plus a jitter buffer changes samples
and adds delay, but keeps the waveform, so the normalised cross-correlation stays high
(≈0.9+) at some lag, while unrelated audio or silence stays near 0.
"""

from __future__ import annotations

import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

from . import require_binary

TELEPHONE_RATE = 8000


def espeak(text: str, path: Path, voice: str = "en-us", speed: int = 150,
           pad_seconds: tuple[float, float] = (0.0, 0.0)) -> Path:
    """Speak ``text`` into an 8 kHz mono s16 telephone-band WAV at ``path``.

    ``pad_seconds`` adds (leading, trailing) silence. Needs espeak-ng and sox
    (PeerMissingError names the apt package when absent).
    """
    espeak_bin = require_binary("espeak-ng")
    sox_bin = require_binary("sox")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="espeak-") as tmp:
        raw = Path(tmp) / "raw.wav"
        _run([espeak_bin, "-v", voice, "-s", str(speed), "-w", str(raw), text])
        effects = ["sinc", "300-3400"]
        if any(pad_seconds):
            effects += ["pad", f"{pad_seconds[0]:g}", f"{pad_seconds[1]:g}"]
        _run([sox_bin, str(raw), "-r", str(TELEPHONE_RATE), "-c", "1", "-b", "16", "-e", "signed-integer",
              str(path), *effects])
    return path


def _run(cmd: list[str]) -> None:
    """Run a fixture tool; raise with its stderr (why: a silent failure = empty WAV)."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")


def write_wav(path: Path, samples: np.ndarray, rate: int = TELEPHONE_RATE) -> Path:
    """Write int16 samples (shape (n,) or (n, channels)) as a PCM WAV."""
    data = np.asarray(samples)
    if data.dtype != np.int16:
        raise TypeError(f"write_wav wants int16 samples, got {data.dtype}")
    channels = 1 if data.ndim == 1 else data.shape[1]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(data.astype("<i2").tobytes())
    return path


def tone_wav(path: Path, freq: float, seconds: float, rate: int = TELEPHONE_RATE,
             amplitude: float = 0.5) -> Path:
    """A sine tone WAV (mono s16); ``amplitude`` is a fraction of full scale."""
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    samples = np.round(amplitude * 32767 * np.sin(2 * np.pi * freq * t)).astype(np.int16)
    return write_wav(path, samples, rate)


def read_wav(path: Path) -> tuple[int, np.ndarray, int]:
    """``(rate, int16 samples, channels)``; samples shape (n,) mono or (n, channels).

    8-bit WAVs (unsigned) are widened to int16 so callers compare like with like.
    """
    with wave.open(str(path), "rb") as wav:
        rate = wav.getframerate()
        channels = wav.getnchannels()
        width = wav.getsampwidth()
        frames = wav.readframes(wav.getnframes())
    if width == 2:
        data = np.frombuffer(frames, dtype="<i2").astype(np.int16)
    elif width == 1:
        data = ((np.frombuffer(frames, dtype=np.uint8).astype(np.int16) - 128) << 8).astype(np.int16)
    else:
        raise ValueError(f"{path}: unsupported sample width {width} bytes")
    if channels > 1:
        data = data.reshape(-1, channels)
    return rate, data, channels


def u8_to_int16(data: bytes) -> np.ndarray:
    """8-bit unsigned PCM (pyVoIP's audio API) to int16."""
    return ((np.frombuffer(data, dtype=np.uint8).astype(np.int16) - 128) << 8).astype(np.int16)


def int16_to_u8(samples: np.ndarray) -> bytes:
    """int16 to 8-bit unsigned PCM (what pyVoIP's write_audio expects)."""
    return ((np.asarray(samples, dtype=np.int16).astype(np.int32) >> 8) + 128).astype(np.uint8).tobytes()


def normalised_xcorr_peak(a: np.ndarray, b: np.ndarray, max_lag_samples: int) -> tuple[float, int]:
    """Peak of the normalised cross-correlation of ``a`` and ``b`` within ±max_lag.

    Both signals are mean-removed; the result is divided by ``sqrt(Σa²·Σb²)`` so a
    signal against itself gives 1.0 at lag 0. ``lag > 0`` means ``b`` is *late*:
    ``b[n] ≈ a[n - lag]`` (e.g. network + jitter-buffer delay). Silence gives 0.0.
    """
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.size == 0 or y.size == 0:
        return 0.0, 0
    x = x - x.mean()
    y = y - y.mean()
    norm = np.sqrt(np.dot(x, x) * np.dot(y, y))
    if norm == 0.0:
        return 0.0, 0
    n = x.size + y.size - 1
    nfft = 1 << (n - 1).bit_length()
    # c[k] = Σ x[m] y[m + k]; negative k wrap to the end of the circular result
    corr = np.fft.irfft(np.conj(np.fft.rfft(x, nfft)) * np.fft.rfft(y, nfft), nfft)
    max_pos = min(max_lag_samples, y.size - 1)
    max_neg = min(max_lag_samples, x.size - 1)
    lags = np.concatenate([np.arange(-max_neg, 0), np.arange(0, max_pos + 1)])
    values = np.concatenate([corr[nfft - max_neg:], corr[:max_pos + 1]])
    best = int(np.argmax(values))
    return float(values[best] / norm), int(lags[best])


def rms_dbfs(x: np.ndarray) -> float:
    """RMS level in dBFS for int16-scaled samples (full-scale sine ≈ -3 dBFS; silence -inf)."""
    data = np.asarray(x, dtype=np.float64).ravel()
    if data.size == 0:
        return float("-inf")
    rms = np.sqrt(np.mean(data * data))
    return float(20 * np.log10(rms / 32768.0)) if rms > 0 else float("-inf")

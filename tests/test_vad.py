"""Speech detector: real synthesised speech (espeak-ng) for timing, a scripted VAD for the hysteresis."""

from __future__ import annotations

import shutil
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from softswitch.media.vad import SpeechDetector, talk_time

RATE = 8000
FRAME = 160
SENTENCE = "The quick brown fox jumps over the lazy dog"


@dataclass
class Run:
    events: list[tuple[float, str]]  # (time the frame that produced it ended, event)
    detector: SpeechDetector


def run(detector: SpeechDetector, pcm: np.ndarray) -> Run:
    frames = pcm[: len(pcm) // FRAME * FRAME].reshape(-1, FRAME)
    events = [((i + 1) * FRAME / RATE, e) for i, f in enumerate(frames) if (e := detector.feed(f)) is not None]
    return Run(events, detector)


def dbfs_noise(level_dbfs: float, seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.round(rng.standard_normal(int(seconds * RATE)) * 32768 * 10 ** (level_dbfs / 20)).astype(np.int16)


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> np.ndarray:
    """The sentence as 8 kHz int16, as espeak-ng says it (with whatever lead-in/tail it adds)."""
    missing = [tool for tool in ("espeak-ng", "sox") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{' and '.join(missing)} needed to synthesise test speech (apt-get install espeak-ng sox)")
    tmp: Path = tmp_path_factory.mktemp("vad")
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(tmp / "out.wav"), SENTENCE],
                   check=True, capture_output=True, timeout=60)
    subprocess.run(["sox", str(tmp / "out.wav"), "-r", str(RATE), "-c", "1", "-b", "16", "-e", "signed-integer",
                    str(tmp / "out8k.wav")], check=True, capture_output=True, timeout=60)
    with wave.open(str(tmp / "out8k.wav")) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (RATE, 1, 2)
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.int16)
    assert len(pcm) > RATE and np.abs(pcm).max() > 3000  # espeak really said something
    return pcm


def padded(pcm: np.ndarray) -> tuple[np.ndarray, float, float]:
    """1 s of silence either side; onset/offset (s) where the signal first/last reaches -40 dB re its peak."""
    sig = np.concatenate([np.zeros(RATE, np.int16), pcm, np.zeros(RATE, np.int16)])
    loud = np.flatnonzero(np.abs(sig.astype(np.int32)) >= np.abs(sig.astype(np.int32)).max() / 100)
    return sig, loud[0] / RATE, loud[-1] / RATE


@pytest.mark.parametrize("gain_db", [0, -20], ids=["espeak-level", "quiet-talker"])
def test_speech_start_near_onset_and_one_end_after_it(speech, gain_db):
    sig, onset, offset = padded(np.round(speech * 10 ** (gain_db / 20)).astype(np.int16))
    assert 0.99 < onset < 1.3  # the padding is where we put it
    r = run(SpeechDetector(), sig)
    kinds = [e for _, e in r.events]
    assert kinds == ["speech_start", "speech_end"], r.events
    (start, _), (end, _) = r.events
    assert onset <= start <= onset + 0.100, (onset, start)
    hangover = 15 * FRAME / RATE
    assert offset < end <= offset + hangover + 0.100, (offset, end)
    assert not r.detector.speaking
    assert r.detector.total_frames == len(sig) // FRAME
    voiced_s = r.detector.voiced_frames * 0.02
    assert 0.5 * (offset - onset) < voiced_s <= end - start + 0.1  # most of the sentence, none of the padding


def test_silence_gives_no_events():
    r = run(SpeechDetector(), np.zeros(3 * RATE, np.int16))
    assert r.events == [] and r.detector.voiced_frames == 0 and r.detector.total_frames == 150


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("aggressiveness", [0, 2, 3])
def test_low_noise_gives_no_speech_start(seed, aggressiveness):
    """-60 dBFS hiss, from a cold start and again after digital silence (when webrtcvad is most gullible)."""
    sig = np.concatenate([dbfs_noise(-60, 2, seed), np.zeros(RATE, np.int16), dbfs_noise(-60, 2, seed + 10)])
    r = run(SpeechDetector(aggressiveness=aggressiveness), sig)
    assert r.events == [] and not r.detector.speaking


def test_low_tone_gives_no_speech_start():
    t = np.arange(3 * RATE) / RATE
    hum = np.round(np.sin(2 * np.pi * 440 * t) * 32768 * 10 ** (-60 / 20)).astype(np.int16)  # -60 dBFS peak
    assert run(SpeechDetector(), hum).events == []


# --- the hysteresis, with a scripted VAD -----------------------------------------------------------

class ScriptedVad:
    def __init__(self, flags: str) -> None:
        self.flags = iter(flags)

    def is_speech(self, buf: bytes, rate: int) -> bool:
        assert len(buf) == 2 * FRAME and rate == RATE
        return next(self.flags) == "1"


LOUD = np.full(FRAME, 3000, np.int16)  # -21 dBFS: well over the level floor


def scripted(flags: str, frame: np.ndarray = LOUD, **kwargs) -> list[tuple[int, str]]:
    d = SpeechDetector(**kwargs)
    vad = ScriptedVad(flags)
    d._process = lambda _handle, rate, buf, _n: vad.is_speech(buf, rate)  # type: ignore[assignment]
    return [(i, e) for i in range(len(flags)) if (e := d.feed(frame)) is not None]


def test_start_needs_start_frames_consecutive_voiced():
    assert scripted("110110" + "0" * 20) == []
    assert scripted("0111") == [(3, "speech_start")]
    assert scripted("011111", start_frames=5) == [(5, "speech_start")]


def test_end_needs_hangover_frames_unvoiced_after_speech():
    flags = "111" + "0" * 14 + "1" + "0" * 15
    assert scripted(flags) == [(2, "speech_start"), (len(flags) - 1, "speech_end")]  # a 14-frame pause is no end
    assert scripted("11" + "0" * 5, start_frames=2, hangover_frames=5) == [(1, "speech_start"), (6, "speech_end")]


def test_counters_and_talk_time():
    flags = "0111" + "0" * 15 + "11"
    d = SpeechDetector()
    vad = ScriptedVad(flags)
    d._process = lambda _handle, rate, buf, _n: vad.is_speech(buf, rate)  # type: ignore[assignment]
    for _ in flags:
        d.feed(LOUD)
    assert (d.total_frames, d.voiced_frames, d.speaking) == (len(flags), 5, False)
    assert d.talk_seconds == pytest.approx(0.1)
    assert talk_time([c == "1" for c in flags]) == pytest.approx(0.1)
    assert talk_time([True, False, True], frame_ms=10) == pytest.approx(0.02) and talk_time([]) == 0


def test_frames_under_the_level_floor_are_not_voiced():
    quiet = np.full(FRAME, round(32768 * 10 ** (-60 / 20)), np.int16)
    assert scripted("1" * 10, frame=quiet) == []
    assert scripted("1" * 10, frame=quiet, min_level_dbfs=-70) == [(2, "speech_start")]


@pytest.mark.parametrize("bad", [np.zeros(159, np.int16), np.zeros(320, np.int16), np.zeros(160, np.float32),
                                 [0] * 160])
def test_rejects_anything_but_one_20ms_int16_frame(bad):
    with pytest.raises(ValueError):
        SpeechDetector().feed(bad)


def test_wideband_frames_are_320_samples():
    d = SpeechDetector(sample_rate=16000)
    assert d.frame_samples == 320 and d.feed(np.zeros(320, np.int16)) is None


@pytest.mark.parametrize("kwargs", [{"aggressiveness": 4}, {"sample_rate": 11025}, {"start_frames": 0},
                                    {"hangover_frames": 0}])
def test_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        SpeechDetector(**kwargs)

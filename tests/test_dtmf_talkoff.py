"""Talk-off: speech and music must not produce DTMF digits in the in-band detector.

Speech is real synthesis (espeak-ng, several voices and rates, band-limited to the telephone band
and resampled to 8 kHz with sox); music is synthesised here: notes of the tempered scale with
harmonics, envelopes and vibrato, chords pairing notes that sit on DTMF row and column
frequencies. Both also go through G.711. Positive controls prove the same pipeline does hear keys.
"""

from __future__ import annotations

import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from softswitch.media.dtmf import KEYPAD, InbandDetector
from test_dtmf import detect, dtmf, g711, silence, to_int16

FS = 8000

TEXTS = {
    "en-us": "Thank you for calling the customer service center. Your call is important to us. "
             "Please listen carefully, as our menu options have recently changed. For billing "
             "questions, press one. To report a fault on your line, press two. To speak with an "
             "operator, stay on the line. Our opening hours are Monday to Friday, eight thirty in "
             "the morning until six in the evening.",
    "en-gb": "The quick brown fox jumps over the lazy dog, while the weather in London remains "
             "cloudy with occasional showers. Would you like a cup of tea? Seven hundred and "
             "ninety-four thousand, three hundred and twelve pounds were spent on the new bridge. "
             "Whose idea was it to paint the ceiling purple, anyway?",
    "en-us+f3": "Hello! Hi there, how are you doing today? I wanted to ask about my order, number "
                "four five six, seven eight nine. It was supposed to arrive last Tuesday, but "
                "nothing came. Could you please check the status and call me back at your "
                "earliest convenience? Thanks so much, have a wonderful afternoon.",
    "en-us+m3": "In the beginning the universe was created. This has made a lot of people very "
                "angry and been widely regarded as a bad move. Mississippi, Massachusetts, "
                "Connecticut. She sells sea shells by the sea shore. Zero, one, two, three, four, "
                "five, six, seven, eight, nine, star, pound.",
    "cmn": "您好，欢迎致电客户服务中心。请在听到提示音后说出您的问题。我们的营业时间是周一至周五，"
           "上午九点到下午六点。谢谢您的耐心等待。",
}
RATES = (130, 155, 180)


def _read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (FS, 1, 2), path
        return np.frombuffer(w.readframes(w.getnframes()), np.int16)


@pytest.fixture(scope="session")
def speech(tmp_path_factory) -> np.ndarray:
    """>= 60 s of synthetic speech at 8 kHz, telephone band, peaks at -1 dBFS."""
    espeak, sox = shutil.which("espeak-ng"), shutil.which("sox")
    if espeak is None or sox is None:
        pytest.fail("talk-off needs espeak-ng and sox installed (apt-get install espeak-ng sox)")
    tmp = tmp_path_factory.mktemp("speech")
    parts = []
    for i, (voice, text) in enumerate(TEXTS.items()):
        for rate in RATES:
            raw, tel = tmp / f"{i}_{rate}.wav", tmp / f"{i}_{rate}_8k.wav"
            subprocess.run([espeak, "-v", voice, "-s", str(rate), "-w", str(raw), text],
                           check=True, capture_output=True)
            subprocess.run([sox, str(raw), "-r", "8000", "-c", "1", "-b", "16", str(tel),
                            "sinc", "300-3400", "gain", "-n", "-1"], check=True, capture_output=True)
            parts.append(_read_wav(tel))
    pcm = np.concatenate(parts)
    assert len(pcm) >= 60 * FS, f"only {len(pcm) / FS:.0f} s of speech"
    return pcm


NOTE_NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]


def note_hz(name: str, octave: int) -> float:
    return 440.0 * 2 ** ((NOTE_NAMES.index(name) + 12 * (octave + 1) - 69) / 12)


# tempered notes on or next to DTMF frequencies: F5 698.5 (697), F#5 740, G5 784 (770),
# G#5 830.6, A5 880 (852), A#5 932.3 (941), B5 987.8; D6 1174.7, D#6 1244.5 (1209),
# E6 1318.5 (1336), F6 1396.9, F#6 1480 (1477), G6 1568, G#6 1661.2 (1633)
LOW = [note_hz(n, 5) for n in ("F", "F#", "G", "G#", "A", "A#", "B")]
HIGH = [note_hz(n, 6) for n in ("D", "D#", "E", "F", "F#", "G", "G#")]


def _note(f: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """One instrument note: 3-6 harmonics decaying, attack/decay envelope, vibrato."""
    t = np.arange(n) / FS
    depth, rate = rng.uniform(0.002, 0.01), rng.uniform(4.0, 7.0)
    phase = 2 * np.pi * np.cumsum(f * (1 + depth * np.sin(2 * np.pi * rate * t + rng.uniform(0, 6)))) / FS
    decay = rng.uniform(0.35, 0.75)
    tone = sum(decay ** (k - 1) * np.sin(k * phase + rng.uniform(0, 6))
               for k in range(1, int(rng.integers(3, 7)) + 1) if k * f < FS / 2)
    attack = int(rng.uniform(0.005, 0.03) * FS)
    env = np.exp(-t * rng.uniform(0.5, 4.0))
    env[:attack] *= np.linspace(0, 1, attack)
    env[-80:] *= np.linspace(1, 0, 80)
    return tone * env


@pytest.fixture(scope="session")
def music() -> np.ndarray:
    """60 s of melodies and chords, peaks at -1 dBFS; seeded."""
    rng = np.random.default_rng(4733)
    scale = [note_hz(n, o) for o in (4, 5, 6) for n in NOTE_NAMES]
    out, total = [], 0
    while total < 62 * FS:
        n = int(rng.uniform(0.12, 0.9) * FS)
        kind = rng.integers(3)
        if kind == 0:      # melody note, anywhere on the scale
            seg = _note(float(rng.choice(scale)), n, rng)
        elif kind == 1:    # a DTMF-like pair: a low note with a high note
            low, high = float(rng.choice(LOW)), float(rng.choice(HIGH))
            seg = _note(low, n, rng) + rng.uniform(0.4, 1.6) * _note(high, n, rng)
        else:              # a triad-ish chord over a bass note
            root = float(rng.choice(scale[:24]))
            seg = sum(_note(root * 2 ** (s / 12), n, rng) for s in (0, 4, 7, 12 + int(rng.integers(0, 12))))
        out.append(seg / np.max(np.abs(seg)) * rng.uniform(0.1, 0.9))
        total += n
    x = np.concatenate(out)
    return to_int16(x / np.max(np.abs(x)) * 32768 * 10 ** (-1 / 20))


def frames_of(pcm: np.ndarray) -> InbandDetector:
    """Feed in 20 ms frames; fail on any digit, naming where it was heard."""
    det = InbandDetector()
    for i in range(0, len(pcm) - 159, 160):
        ev = det.feed(pcm[i:i + 160])
        assert ev is None, f"false digit {ev} at {i / FS:.2f} s, detector stats {det.stats()}"
    return det


@pytest.mark.parametrize("codec", ["linear", "g711"])
@pytest.mark.parametrize("gain_db", [0, -12])
def test_speech_gives_no_digits(speech, codec, gain_db):
    pcm = to_int16(speech * 10 ** (gain_db / 20))
    det = frames_of(g711(pcm) if codec == "g711" else pcm)
    st = det.stats()
    print(f"\nspeech {len(pcm) / FS:.0f} s {codec} {gain_db} dB: {st}")
    assert st["windows"] >= len(pcm) // 80 - 2 and st["quiet"] < 0.8 * st["windows"], "the speech is heard"


@pytest.mark.parametrize("codec", ["linear", "g711"])
def test_music_gives_no_digits(music, codec):
    det = frames_of(g711(music) if codec == "g711" else music)
    print(f"\nmusic {len(music) / FS:.0f} s {codec}: {det.stats()}")
    assert det.stats()["quiet"] < det.stats()["windows"] / 4


def _with_keys(audio: np.ndarray, keys: str, rng: np.random.Generator) -> np.ndarray:
    """The audio cut at even intervals with a key press (in 50 ms of silence) at each cut."""
    pieces = np.array_split(audio.astype(np.float64), len(keys) + 1)
    out = [pieces[0]]
    for key, piece in zip(keys, pieces[1:]):
        press = dtmf(key, rng.integers(45, 80), rng.uniform(-20, -8), rng=rng)
        out += [silence(50), press, silence(50), piece]
    return to_int16(np.concatenate(out))


@pytest.mark.parametrize("source", ["speech", "music"])
def test_positive_control_keys_between_the_audio_are_heard(request, source):
    rng = np.random.default_rng(99)
    keys = "".join(rng.choice(list(KEYPAD), 16))
    pcm = _with_keys(request.getfixturevalue(source), keys, rng)
    events, det = detect(g711(pcm))
    assert "".join(e.digit for e in events) == keys, det.stats()

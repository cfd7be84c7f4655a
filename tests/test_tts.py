"""EspeakTts against the real espeak-ng: audio format, disk and memory caching, dedupe, errors.

espeak-ng is a hard requirement of these tests (Debian package 'espeak-ng'); when it is missing
they fail, they do not skip. Coroutines run with asyncio.run (no pytest async plugin).
"""

from __future__ import annotations

import asyncio
import shutil
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from softswitch.media.tts import EspeakTts, TtsEngine, TtsError

ESPEAK = shutil.which("espeak-ng")
SHORT = "Hello."
LONG = ("Thank you for calling. All of our agents are busy helping other customers; "
        "please stay on the line and your call will be answered in the order it was received.")


def real_espeak() -> str:
    assert ESPEAK, "espeak-ng is not installed: apt-get install espeak-ng (these tests need it)"
    return ESPEAK


def counting_wrapper(tmp_path: Path) -> tuple[str, Path]:
    """A stand-in binary that records each invocation, then runs the real espeak-ng."""
    count = tmp_path / "spawns.log"
    script = tmp_path / "espeak-counting"
    script.write_text(f'#!/bin/sh\necho "$$" >> "{count}"\nexec "{real_espeak()}" "$@"\n')
    script.chmod(0o755)
    return str(script), count


def spawns(count: Path) -> int:
    return len(count.read_text().splitlines()) if count.exists() else 0


def rms(pcm: np.ndarray) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))


def test_espeak_ng_is_installed():
    real_espeak()


def test_synthesizes_8khz_audio_that_grows_with_text(tmp_path):
    tts = EspeakTts(tmp_path / "cache", binary=real_espeak())
    assert isinstance(tts, TtsEngine)

    async def main():
        return await tts.synthesize(SHORT), await tts.synthesize(LONG)

    short, long = asyncio.run(main())
    for pcm in (short, long):
        assert pcm.dtype == np.int16 and pcm.ndim == 1
        assert rms(pcm) > 300, "speech is (nearly) silent"
        assert not pcm.flags.writeable
    assert 0.2 < len(short) / 8000 < 3.0
    assert len(long) > 4 * len(short)
    # 8 kHz with the resampler's anti-aliasing: nothing left at the very top of the band
    spec = np.abs(np.fft.rfft(long.astype(np.float64)))
    freqs = np.fft.rfftfreq(len(long), 1 / 8000)
    assert spec[freqs > 3900].max() < 0.01 * spec.max()


def test_rate_and_voice_change_the_audio(tmp_path):
    tts = EspeakTts(tmp_path, binary=real_espeak())

    async def main():
        return (await tts.synthesize(LONG, rate=120), await tts.synthesize(LONG, rate=300),
                await tts.synthesize(SHORT, voice="de"))

    slow, fast, german = asyncio.run(main())
    assert len(slow) > 1.5 * len(fast)
    assert len(german) > 0


def test_caches_in_memory_and_on_disk(tmp_path):
    binary, count = counting_wrapper(tmp_path)
    cache = tmp_path / "cache"
    tts = EspeakTts(cache, voice="en-us", rate=150, binary=binary)

    async def main():
        first = await tts.synthesize("Please enter your PIN.")
        again = await tts.synthesize("Please enter your PIN.")
        return first, again

    first, again = asyncio.run(main())
    assert spawns(count) == 1 and tts.spawns == 1
    assert again is first and tts.memory_hits == 1

    files = [p for p in cache.iterdir() if not p.name.startswith(".")]
    assert [p.name for p in files] == [f"{EspeakTts.cache_key('en-us', 150, 'Please enter your PIN.')}.wav"]
    assert len(files[0].stem) == 64
    with wave.open(str(files[0])) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        assert w.getnframes() == len(first)
    assert not any(p.name.startswith(".") for p in cache.iterdir()), "temporary files left behind"

    # a new engine (say, after a restart) finds it on disk and does not spawn
    fresh = EspeakTts(cache, binary=binary)
    from_disk = asyncio.run(fresh.synthesize("Please enter your PIN."))
    assert spawns(count) == 1 and fresh.disk_hits == 1
    assert np.array_equal(from_disk, first)

    # any part of the key changing means a new synthesis
    asyncio.run(fresh.synthesize("Please enter your PIN.", rate=170))
    asyncio.run(fresh.synthesize("Please enter your PIN.", voice="en-gb"))
    asyncio.run(fresh.synthesize("Please enter your PIN!"))
    assert spawns(count) == 4


def test_memory_lru_is_bounded(tmp_path):
    binary, count = counting_wrapper(tmp_path)
    tts = EspeakTts(tmp_path / "cache", binary=binary, max_memory_items=2)

    async def main():
        for text in ("one", "two", "three", "one"):
            await tts.synthesize(text)

    asyncio.run(main())
    assert spawns(count) == 3          # "one" came back from disk, not from espeak
    assert tts.disk_hits == 1 and tts.memory_hits == 0


def test_unusable_cache_file_is_resynthesized(tmp_path):
    binary, count = counting_wrapper(tmp_path)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / f"{EspeakTts.cache_key('en-us', 150, 'Goodbye.')}.wav").write_bytes(b"garbage")
    pcm = asyncio.run(EspeakTts(cache, binary=binary).synthesize("Goodbye."))
    assert spawns(count) == 1 and rms(pcm) > 300


def test_concurrent_identical_requests_share_one_synthesis(tmp_path):
    binary, count = counting_wrapper(tmp_path)
    tts = EspeakTts(tmp_path / "cache", binary=binary)

    async def main():
        same = await asyncio.gather(*(tts.synthesize("Your call is important to us.") for _ in range(6)))
        different = await asyncio.gather(*(tts.synthesize(f"Option {i}.") for i in range(3)))
        return same, different

    same, different = asyncio.run(main())
    assert all(pcm is same[0] for pcm in same)
    assert spawns(count) == 1 + 3
    assert all(rms(p) > 300 for p in different) and not np.array_equal(different[0], different[1])


def test_a_cancelled_caller_does_not_cancel_the_shared_synthesis(tmp_path):
    binary, count = counting_wrapper(tmp_path)
    tts = EspeakTts(tmp_path / "cache", binary=binary)

    async def main():
        quitter = asyncio.create_task(tts.synthesize(LONG))
        stayer = asyncio.create_task(tts.synthesize(LONG))
        await asyncio.sleep(0.01)
        quitter.cancel()
        pcm = await stayer
        with pytest.raises(asyncio.CancelledError):
            await quitter
        return pcm

    pcm = asyncio.run(main())
    assert len(pcm) > 8000 and spawns(count) == 1


def test_text_that_looks_like_options_is_spoken(tmp_path):
    tts = EspeakTts(tmp_path, binary=real_espeak())
    pcm = asyncio.run(tts.synthesize("-s 999 --help"))
    assert len(pcm) > 0.5 * 8000 and rms(pcm) > 300


@pytest.mark.parametrize("text", ["", "   \n\t"])
def test_empty_text_is_a_value_error(tmp_path, text):
    binary, count = counting_wrapper(tmp_path)
    with pytest.raises(ValueError, match="empty"):
        asyncio.run(EspeakTts(tmp_path / "cache", binary=binary).synthesize(text))
    assert spawns(count) == 0


def test_missing_binary_message(tmp_path, monkeypatch):
    empty_path = tmp_path / "bin"
    empty_path.mkdir()
    monkeypatch.setenv("PATH", str(empty_path))
    with pytest.raises(TtsError) as info:
        asyncio.run(EspeakTts(tmp_path / "cache").synthesize("hello"))
    assert str(info.value) == ("espeak-ng not found: install the Debian package 'espeak-ng' "
                               "(apt-get install espeak-ng)")
    monkeypatch.undo()
    with pytest.raises(TtsError, match="not found.*apt-get install espeak-ng"):
        asyncio.run(EspeakTts(tmp_path / "cache", binary=str(tmp_path / "nope")).synthesize("hello"))


def test_engine_failure_reports_stderr(tmp_path):
    tts = EspeakTts(tmp_path / "cache", binary=real_espeak())
    with pytest.raises(TtsError) as info:
        asyncio.run(tts.synthesize("hello", voice="xx-no-such-voice"))
    assert "exit 1" in str(info.value) and "voice does not exist" in str(info.value)
    assert not any(p.suffix == ".wav" for p in (tmp_path / "cache").iterdir())


def test_timeout_kills_the_process(tmp_path):
    script = tmp_path / "slow-espeak"
    script.write_text("#!/bin/sh\nexec sleep 30\n")
    script.chmod(0o755)
    tts = EspeakTts(tmp_path / "cache", binary=str(script), timeout_s=0.5)
    start = time.monotonic()
    with pytest.raises(TtsError, match="timed out after 0.5 s"):
        asyncio.run(tts.synthesize("hello"))
    assert time.monotonic() - start < 5


def test_output_without_audio_is_an_error(tmp_path):
    script = tmp_path / "mute-espeak"
    script.write_text('#!/bin/sh\n: > "$6"\n')  # argv: -v V -s R -w FILE -- TEXT
    script.chmod(0o755)
    with pytest.raises(TtsError, match="no usable audio"):
        asyncio.run(EspeakTts(tmp_path / "cache", binary=str(script)).synthesize("hello"))


def test_does_not_block_the_event_loop(tmp_path):
    """While espeak runs, other coroutines (the media clock) keep getting scheduled."""
    tts = EspeakTts(tmp_path / "cache", binary=real_espeak())

    async def main():
        ticks = 0
        done = False

        async def ticker():
            nonlocal ticks
            while not done:
                ticks += 1
                await asyncio.sleep(0.005)

        t = asyncio.create_task(ticker())
        start = time.monotonic()
        await tts.synthesize(LONG * 3)
        elapsed = time.monotonic() - start
        done = True
        await t
        return ticks, elapsed

    ticks, elapsed = asyncio.run(main())
    assert ticks >= 0.3 * elapsed / 0.005, f"only {ticks} ticks in {elapsed:.2f} s"


def test_speech_starts_without_espeaks_leading_silence(tmp_path):
    """espeak-ng writes ~40 ms of silence before speaking; prompts start within 5 ms of their speech."""
    import asyncio

    import numpy as np

    from softswitch.media.tts import EspeakTts
    pcm = asyncio.run(EspeakTts(tmp_path, "en-us", 150).synthesize("Credit card, got it."))
    first = int(np.flatnonzero(np.abs(pcm.astype(np.int32)) > 64)[0])
    assert first <= 40, f"speech starts {first / 8:.1f} ms into the prompt"

"""Real espeak-ng telephone speech through PocketSphinxEngine (fails, never skips, without pocketsphinx)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from asr.engine import AsrEvent
from asr.eval import synth
from asr.keywords import KeywordSet

# Imports fine without pocketsphinx; the engine fixture then raises "pip install pocketsphinx" in every test.
from asr.pocketsphinx_engine import PocketSphinxEngine, UnknownWordsError

FRAME = 160
KW = KeywordSet({
    "card": ["credit card"],
    "bank": ["bank account"],
    "agent": ["agent", "operator", "customer service"],
})


@pytest.fixture(scope="module")
def engine() -> PocketSphinxEngine:
    eng = PocketSphinxEngine()
    yield eng
    eng.shutdown()


def _frames(audio: np.ndarray) -> list[np.ndarray]:
    pad = (-len(audio)) % FRAME
    audio = np.concatenate([audio, np.zeros(pad, np.int16)])
    return [audio[i:i + FRAME] for i in range(0, len(audio), FRAME)]


def _noise(seconds: float, dbfs: float = -70.0) -> np.ndarray:
    rng = np.random.default_rng(1)
    return (rng.standard_normal(int(8000 * seconds)) * 32768 * 10 ** (dbfs / 20)).astype(np.int16)


async def _gather(engine: PocketSphinxEngine, audio: np.ndarray, **kw: int) -> tuple[list[AsrEvent], float]:
    """Feed like the media path (one frame per tick); returns events up to the terminal one."""
    session = engine.open(KW, **kw)
    handoff = 0.0  # time of the feed() that ends the utterance: a blocking decode would show up here
    events: list[AsrEvent] = []
    for frame in _frames(audio):
        was_done = session.done
        t = time.perf_counter()
        session.feed(frame)
        if session.done and not was_done:
            handoff = time.perf_counter() - t
        await asyncio.sleep(0)
    while True:
        ev = await asyncio.wait_for(session.events.get(), timeout=20)
        events.append(ev)
        if ev.kind in ("final", "no_input"):
            break
    await session.close()
    return events, handoff


@pytest.mark.parametrize("voice,rate,text,branch", [
    ("en-us", 160, "credit card", "card"),
    ("en-gb", 130, "bank account", "bank"),
    ("en-us+f3", 160, "credit card", "card"),
    ("en-gb", 160, "customer service", "agent"),
    ("en-us+m3", 190, "operator", "agent"),
    ("en-us", 130, "agent", "agent"),
])
def test_keyword_recognised_to_branch(engine: PocketSphinxEngine, voice: str, rate: int, text: str,
                                      branch: str) -> None:
    audio = np.concatenate([_noise(0.5), synth(text, voice, rate), _noise(1.5)])
    events, handoff = asyncio.run(_gather(engine, audio))
    kinds = [e.kind for e in events]
    assert kinds == ["speech_start", "final"], kinds
    final = events[-1]
    assert final.branch == branch, final
    assert 0.0 < final.score <= 1.0
    assert 0.3 <= final.start_s < final.end_s
    assert 0 < handoff < 1e-3, f"feed() that ended the utterance took {handoff * 1e3:.2f} ms"


def test_feed_is_cheap(engine: PocketSphinxEngine) -> None:
    async def go() -> list[float]:
        session = engine.open(KW, no_input_ms=60000)
        times = []
        for frame in _frames(np.concatenate([_noise(0.3), synth("credit card"), _noise(0.3)])):
            t = time.perf_counter()
            session.feed(frame)
            times.append(time.perf_counter() - t)
        await session.close()
        return times

    times = asyncio.run(go())
    assert float(np.median(times)) < 1e-3 and float(np.percentile(times, 95)) < 1e-3, times


def test_silence_gives_no_input(engine: PocketSphinxEngine) -> None:
    events, _ = asyncio.run(_gather(engine, _noise(3.0), no_input_ms=2000))
    assert [e.kind for e in events] == ["no_input"]
    assert events[0].end_s == pytest.approx(2.0)


def test_digital_silence_gives_no_input(engine: PocketSphinxEngine) -> None:
    events, _ = asyncio.run(_gather(engine, np.zeros(8000 * 2, np.int16), no_input_ms=1000))
    assert [e.kind for e in events] == ["no_input"]


def test_long_utterance_gives_too_long_then_final(engine: PocketSphinxEngine) -> None:
    speech = synth("I would like to talk to somebody about my credit card and also my bank account "
                   "because there is a problem with both of them", "en-us", 130)
    assert len(speech) > 8000 * 3
    events, _ = asyncio.run(_gather(engine, np.concatenate([_noise(0.3), speech, _noise(1.0)]),
                                    max_utterance_ms=2000))
    kinds = [e.kind for e in events]
    assert kinds == ["speech_start", "too_long", "final"], kinds
    assert events[1].end_s - events[1].start_s == pytest.approx(2.0, abs=0.05)


def test_out_of_grammar_speech_is_not_a_keyword(engine: PocketSphinxEngine) -> None:
    audio = np.concatenate([_noise(0.3), synth("hello", "en-us", 150), _noise(1.5)])
    events, _ = asyncio.run(_gather(engine, audio))
    assert events[-1].kind == "final" and events[-1].branch is None, events[-1]


def test_unknown_grammar_word_is_a_clear_error(engine: PocketSphinxEngine) -> None:
    async def go() -> None:
        engine.open(KeywordSet({"x": ["credit card"], "y": ["zorblatt account"]}))

    with pytest.raises(UnknownWordsError, match="zorblatt"):
        asyncio.run(go())


def test_feed_rejects_wrong_frame(engine: PocketSphinxEngine) -> None:
    async def go() -> None:
        s = engine.open(KW)
        s.feed(np.zeros(320, np.int16))

    with pytest.raises(ValueError, match="160"):
        asyncio.run(go())

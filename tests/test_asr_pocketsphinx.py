"""Real espeak-ng telephone speech through PocketSphinxEngine (fails, never skips, without pocketsphinx)."""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np
import pytest

from asr.engine import PARTIAL, AsrEvent
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


async def _gather(engine: PocketSphinxEngine, audio: np.ndarray, keywords: KeywordSet = KW,
                  **kw: int) -> tuple[list[AsrEvent], float]:
    """Feed like the media path (one frame per tick); returns the events up to the terminal one (partials
    left out) and the slowest feed() (a blocking decode, early or final, would show up there)."""
    session = engine.open(keywords, **kw)
    slowest = 0.0
    events: list[AsrEvent] = []
    for frame in _frames(audio):
        t = time.perf_counter()
        session.feed(frame)
        slowest = max(slowest, time.perf_counter() - t)
        await asyncio.sleep(0)
    while True:
        ev = await asyncio.wait_for(session.events.get(), timeout=20)
        if ev.kind != PARTIAL:
            events.append(ev)
        if ev.kind in ("final", "no_input"):
            break
    await session.close()
    return events, slowest


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
    assert handoff < 2e-3, f"slowest feed() took {handoff * 1e3:.2f} ms"
    assert final.end_s < final.decided_s <= final.end_s + 0.72, final


def test_keyword_decided_before_the_full_endpoint_in_real_time(engine: PocketSphinxEngine) -> None:
    """Trailing silence arrives in real time: the FINAL must come from the tentative endpoint, well before
    the 700 ms one (the decision latency budget is 300 ms from the end of speech)."""
    async def go() -> tuple[AsrEvent, float]:
        session = engine.open(KW, end_silence_ms=700, early_silence_ms=240)
        for frame in _frames(np.concatenate([_noise(0.3), synth("operator", "en-us", 160)])):
            session.feed(frame)
        loop = asyncio.get_running_loop()
        for frame in _frames(_noise(1.0)):
            session.feed(frame)
            await asyncio.sleep(0.02)
            while not session.events.empty():
                ev = session.events.get_nowait()
                if ev.kind == "final":
                    latency = loop.time() - ev.speech_end_time
                    await session.close()
                    return ev, latency
        raise AssertionError("no final within 1 s of silence")

    final, latency = asyncio.run(go())
    assert final.branch == "agent" and final.early, final
    assert latency < 0.5, f"{latency * 1e3:.0f} ms from the last voiced frame to the final"


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


@pytest.mark.parametrize("text,voice,rate", [
    ("can I speak to a manager", "en-us", 150),
    ("cancel my subscription", "en-gb", 160),
    ("where is my order", "en-us", 150),
])
def test_forced_keyword_is_rejected(engine: PocketSphinxEngine, text: str, voice: str, rate: int) -> None:
    """The closed grammar forces these onto a keyword ("agent", "operator"); rejection turns them into a
    no-match: a FINAL with branch None, no text to re-match, what was heard in ``hypothesis``."""
    audio = np.concatenate([_noise(0.3), synth(text, voice, rate), _noise(1.5)])
    events, _ = asyncio.run(_gather(engine, audio))
    final = events[-1]
    assert final.kind == "final" and final.branch is None and final.text == "", final
    assert final.hypothesis == "operator" and "not 'operator'" in final.rejected, final
    plain = PocketSphinxEngine(executor=engine.executor, rejection="none")  # what rejection saves us from
    events, _ = asyncio.run(_gather(plain, np.concatenate([_noise(0.3), synth(text, voice, rate), _noise(1.5)])))
    assert events[-1].branch == "agent", events[-1]


def test_unknown_words_drop_the_phrase_with_one_warning(engine: PocketSphinxEngine,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    bank = KeywordSet({"card": ["credit card"], "agent": ["customer service", "客服"], "x": ["zorblatt account"]})
    caplog.set_level(logging.WARNING, logger="asr")

    async def go() -> list[AsrEvent]:
        engine.open(bank)
        audio = np.concatenate([_noise(0.3), synth("credit card", "en-us", 160), _noise(1.5)])
        return (await _gather(engine, audio, bank))[0]

    events = asyncio.run(go())
    assert events[-1].branch == "card"
    warnings = [r for r in caplog.records if r.name == "asr" and r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]  # once per phrase set, not per open()
    msg = warnings[0].getMessage()
    assert "客服" in msg and "zorblatt" in msg and "credit card" not in msg
    grammar = engine.grammar_for(bank)
    assert "customer service" in grammar and "客" not in grammar and "zorblatt" not in grammar
    assert engine.unknown_words(bank) == ["zorblatt", "客", "服"]


def test_no_sayable_phrase_is_a_clear_error(engine: PocketSphinxEngine) -> None:
    async def go() -> None:
        engine.open(KeywordSet({"x": ["客服"], "y": ["zorblatt account"]}))

    with pytest.raises(UnknownWordsError, match="zorblatt.*客"):
        asyncio.run(go())


def test_bad_rejection_setting() -> None:
    with pytest.raises(ValueError, match="rejection"):
        PocketSphinxEngine(rejection="magic")


def test_feed_rejects_wrong_frame(engine: PocketSphinxEngine) -> None:
    async def go() -> None:
        s = engine.open(KW)
        s.feed(np.zeros(320, np.int16))

    with pytest.raises(ValueError, match="160"):
        asyncio.run(go())


def test_decoder_processes_keep_the_event_loop_responsive() -> None:
    """PocketSphinx holds the GIL while it decodes: in-process threads stall an event loop for the whole
    decode. With ``processes`` the loop keeps its 20 ms media ticks while utterances are decoded, and the
    results are the same."""
    words = synth(", ".join(["credit card"] * 5), "en-us", 150)  # one ~5 s utterance: a long decode
    speech = np.concatenate([np.zeros(4000, np.int16), words, np.zeros(8000, np.int16)])

    async def lag_while_decoding(eng: PocketSphinxEngine) -> tuple[float, list[str | None]]:
        loop = asyncio.get_running_loop()
        lags: list[float] = []
        stop = False

        async def ticker() -> None:
            while not stop:
                t = loop.time()
                await asyncio.sleep(0.005)
                lags.append(loop.time() - t - 0.005)
        task = asyncio.ensure_future(ticker())
        await asyncio.sleep(0.05)
        branches = []
        for _ in range(3):
            events, _slowest = await _gather(eng, speech, max_utterance_ms=20000)
            branches.append(events[-1].branch)
        stop = True
        await task
        return max(lags), branches

    threaded, in_processes = PocketSphinxEngine(), PocketSphinxEngine(processes=1)
    try:
        lag_threads, got_threads = asyncio.run(lag_while_decoding(threaded))
        lag_processes, got_processes = asyncio.run(lag_while_decoding(in_processes))
    finally:
        threaded.shutdown()
        in_processes.shutdown()
    print(f"[measured] max loop lag while decoding: threads {lag_threads * 1000:.1f} ms, "
          f"processes {lag_processes * 1000:.1f} ms")
    assert got_processes == got_threads, (got_processes, got_threads)
    assert lag_processes < 0.025, f"the loop stalled {lag_processes * 1000:.0f} ms with decoder processes"

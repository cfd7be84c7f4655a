"""EndpointedSession's tentative (early) endpoint with espeak speech and a scripted decoder."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from asr.engine import FINAL, PARTIAL, AsrEvent, EndpointedSession
from asr.eval import synth

FRAME = 160


def _noise(seconds: float, dbfs: float = -70.0) -> np.ndarray:
    rng = np.random.default_rng(7)
    return (rng.standard_normal(int(8000 * seconds)) * 32768 * 10 ** (dbfs / 20)).astype(np.int16)


def _frames(audio: np.ndarray) -> list[np.ndarray]:
    audio = np.concatenate([audio, np.zeros((-len(audio)) % FRAME, np.int16)])
    return [audio[i:i + FRAME] for i in range(0, len(audio), FRAME)]


@pytest.fixture(scope="module")
def word() -> np.ndarray:
    return synth("operator", "en-us", 160)


@pytest.fixture(scope="module")
def executor() -> ThreadPoolExecutor:
    ex = ThreadPoolExecutor(max_workers=2)
    yield ex
    ex.shutdown()


class Scripted:
    """Decode stand-in: answers by call number; records the audio length of each call."""

    def __init__(self, branches: list[str | None], gate: threading.Event | None = None) -> None:
        self.branches = branches
        self.calls: list[int] = []
        self.gate = gate

    def __call__(self, audio: np.ndarray, start_s: float, end_s: float) -> AsrEvent:
        i = len(self.calls)
        self.calls.append(len(audio))
        if self.gate is not None and i == 0:
            assert self.gate.wait(10)
        branch = self.branches[min(i, len(self.branches) - 1)]
        return AsrEvent(FINAL, text=branch or "", branch=branch, hypothesis=f"call{i}", start_s=start_s, end_s=end_s)


async def _run(session: EndpointedSession, audio: np.ndarray, *, until_final: bool = True) -> list[AsrEvent]:
    """Feed in real time-ish steps (yielding after each frame so decode callbacks can land)."""
    events: list[AsrEvent] = []
    for frame in _frames(audio):
        session.feed(frame)
        await asyncio.sleep(0.002)
        while not session.events.empty():
            events.append(session.events.get_nowait())
    if until_final:
        while not any(e.kind == FINAL for e in events):
            events.append(await asyncio.wait_for(session.events.get(), 10))
    await session.close()
    while not session.events.empty():
        events.append(session.events.get_nowait())
    return events


def test_accepted_tentative_result_ends_the_gather_early(word: np.ndarray, executor: ThreadPoolExecutor) -> None:
    dec = Scripted(["agent"])

    async def go() -> tuple[list[AsrEvent], EndpointedSession]:
        s = EndpointedSession(dec, executor, end_silence_ms=700, early_silence_ms=240)
        # espeak ends the word with ~340 ms of silence; 200 ms more stay short of the 700 ms endpoint.
        return await _run(s, np.concatenate([_noise(0.4), word, _noise(0.2)])), s

    events, session = asyncio.run(go())
    kinds = [e.kind for e in events]
    assert kinds == ["speech_start", PARTIAL, FINAL], kinds
    final = events[-1]
    assert final.branch == "agent" and final.early and events[1].early
    assert len(dec.calls) == 1
    # Decided 240 ms after the last voiced frame (plus at most a frame of rounding).
    assert 0.22 <= final.decided_s - final.end_s <= 0.28, final
    assert final.speech_end_time is not None and final.decode_ms >= 0
    assert session.done


def test_rejected_tentative_result_waits_for_the_full_endpoint_and_is_reused(
        word: np.ndarray, executor: ThreadPoolExecutor) -> None:
    dec = Scripted([None])

    async def go() -> list[AsrEvent]:
        s = EndpointedSession(dec, executor, end_silence_ms=700, early_silence_ms=240)
        return await _run(s, np.concatenate([_noise(0.4), word, _noise(1.2)]))

    events = asyncio.run(go())
    kinds = [e.kind for e in events]
    assert kinds == ["speech_start", PARTIAL, FINAL], kinds
    final = events[-1]
    assert final.branch is None and not final.early
    assert len(dec.calls) == 1, "the full endpoint saw the same audio: no second decode"
    assert final.hypothesis == "call0"


def test_tentative_result_is_dropped_when_speech_resumes(word: np.ndarray, executor: ThreadPoolExecutor) -> None:
    gate = threading.Event()
    dec = Scripted(["agent", "agent"], gate)

    async def go() -> list[AsrEvent]:
        s = EndpointedSession(dec, executor, end_silence_ms=700, early_silence_ms=240)
        events: list[AsrEvent] = []
        first = np.concatenate([_noise(0.4), word, _noise(0.1)])  # a pause: 440 ms of silence
        events += await _run_partial(s, first)
        for _ in range(500):  # the tentative decode starts in a worker thread (and blocks on the gate)
            if dec.calls:
                break
            await asyncio.sleep(0.01)
        assert len(dec.calls) == 1
        for frame in _frames(word[:len(word) // 2]):  # the caller goes on talking
            s.feed(frame)
        gate.set()
        await asyncio.sleep(0.2)  # the stale result lands now and must be dropped
        events += await _run(s, np.concatenate([word, _noise(1.0)]))
        return events

    events = asyncio.run(go())
    finals = [e for e in events if e.kind == FINAL]
    partials = [e for e in events if e.kind == PARTIAL]
    assert len(finals) == 1 and all(p.hypothesis != "call0" for p in partials), events
    assert finals[0].hypothesis == "call1"
    assert dec.calls[1] > dec.calls[0]  # the later decode saw the whole utterance


async def _run_partial(session: EndpointedSession, audio: np.ndarray) -> list[AsrEvent]:
    events: list[AsrEvent] = []
    for frame in _frames(audio):
        session.feed(frame)
        await asyncio.sleep(0)
        while not session.events.empty():
            events.append(session.events.get_nowait())
    return events


def test_without_early_endpoint_one_decode_at_the_full_endpoint(word: np.ndarray,
                                                                executor: ThreadPoolExecutor) -> None:
    dec = Scripted(["agent"])

    async def go() -> list[AsrEvent]:
        s = EndpointedSession(dec, executor, end_silence_ms=700, early_silence_ms=None)
        return await _run(s, np.concatenate([_noise(0.4), word, _noise(1.2)]))

    events = asyncio.run(go())
    assert [e.kind for e in events] == ["speech_start", FINAL]
    final = events[-1]
    assert not final.early and len(dec.calls) == 1
    assert 0.68 <= final.decided_s - final.end_s <= 0.74, final


def test_early_endpoint_not_shorter_than_full_is_ignored(word: np.ndarray, executor: ThreadPoolExecutor) -> None:
    dec = Scripted(["agent"])

    async def go() -> list[AsrEvent]:
        s = EndpointedSession(dec, executor, end_silence_ms=300, early_silence_ms=400)
        return await _run(s, np.concatenate([_noise(0.4), word, _noise(0.8)]))

    events = asyncio.run(go())
    assert [e.kind for e in events] == ["speech_start", FINAL] and len(dec.calls) == 1


def test_negative_early_silence_rejected(executor: ThreadPoolExecutor) -> None:
    async def go() -> None:
        EndpointedSession(Scripted([None]), executor, early_silence_ms=-1)

    with pytest.raises(ValueError, match="early_silence_ms"):
        asyncio.run(go())


def test_full_endpoint_waits_for_the_tentative_decode_of_the_same_audio(
        word: np.ndarray, executor: ThreadPoolExecutor) -> None:
    gate = threading.Event()
    dec = Scripted([None], gate)

    async def go() -> list[AsrEvent]:
        s = EndpointedSession(dec, executor, end_silence_ms=700, early_silence_ms=240)
        events = await _run_partial(s, np.concatenate([_noise(0.4), word, _noise(1.0)]))
        assert s.done and not any(e.kind == FINAL for e in events)  # full endpoint passed, decode blocked
        gate.set()
        events.append(await asyncio.wait_for(s.events.get(), 10))
        await s.close()
        return events

    events = asyncio.run(go())
    assert [e.kind for e in events] == ["speech_start", FINAL], events
    final = events[-1]
    assert len(dec.calls) == 1 and final.hypothesis == "call0" and not final.early
    assert 0.68 <= final.decided_s - final.end_s <= 0.74, final  # decided at the full endpoint


def test_failed_tentative_decode_falls_back_to_a_full_decode(word: np.ndarray,
                                                             executor: ThreadPoolExecutor) -> None:
    calls: list[int] = []

    def flaky(audio: np.ndarray, start_s: float, end_s: float) -> AsrEvent:
        calls.append(len(audio))
        if len(calls) == 1:
            raise RuntimeError("decoder hiccup")
        return AsrEvent(FINAL, text="agent", branch="agent", start_s=start_s, end_s=end_s)

    async def go() -> list[AsrEvent]:
        s = EndpointedSession(flaky, executor, end_silence_ms=700, early_silence_ms=240)
        return await _run(s, np.concatenate([_noise(0.4), word, _noise(1.2)]))

    events = asyncio.run(go())
    assert [e.kind for e in events] == ["speech_start", FINAL] and events[-1].branch == "agent", events
    assert len(calls) == 2

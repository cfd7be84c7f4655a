"""The streaming recogniser interface the IVR interpreter uses, plus the shared endpointing logic.

The media path hands over one 20 ms frame at a time from the event loop, so ``feed`` must only buffer
and run the VAD (microseconds). Decoding takes tens to hundreds of milliseconds and runs in a thread
pool the engine owns; results come back as ``AsrEvent`` objects on an ``asyncio.Queue``.

Two endpoints keep the decision fast without cutting callers off: after ``early_silence_ms`` of trailing
silence the utterance so far is decoded *tentatively*; an accepted keyword ends the gather there (a FINAL
with ``early=True``), anything else is only a PARTIAL and the session keeps listening until the normal
``end_silence_ms`` endpoint. A tentative result that comes back after the caller has started talking
again is discarded; one for exactly the audio the full endpoint would decode is reused as the FINAL.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from asr.keywords import KeywordSet
from softswitch.media.vad import FRAME_MS, SPEECH_END, SPEECH_START, SpeechDetector

__all__ = ["AsrEngine", "AsrEvent", "AsrSession", "EndpointedSession", "SPEECH_START_EVENT", "PARTIAL",
           "FINAL", "NO_INPUT", "TOO_LONG", "EARLY_SILENCE_MS"]

SPEECH_START_EVENT = "speech_start"
PARTIAL = "partial"
FINAL = "final"
NO_INPUT = "no_input"
TOO_LONG = "too_long"

SAMPLE_RATE = 8000
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000
EARLY_SILENCE_MS = 200  # default tentative endpoint; 0 or None disables it (docs/asr.md: latency)
KEEP_TRAILING_FRAMES = 10  # trailing silence handed to the decoder (the rest of the hangover is dropped)


@dataclass(frozen=True)
class AsrEvent:
    """One recogniser event. Times ending in ``_s`` are seconds of audio since the session opened.

    A FINAL with ``branch=None`` is a no-match: either nothing matched a keyword or the engine rejected
    what its grammar forced onto one (out-of-grammar speech). For a rejection ``text`` stays empty (so
    nobody re-matches it onto a branch) and ``hypothesis`` says what the decoder heard, ``rejected`` why.
    """

    kind: str  # "speech_start" | "partial" | "final" | "no_input" | "too_long"
    text: str = ""
    branch: str | None = None
    phrase: str | None = None
    score: float = 0.0
    start_s: float = 0.0
    end_s: float = 0.0  # end of speech (the last voiced frame), not the moment the endpoint fired
    hypothesis: str = ""  # raw decoder output, also for rejected utterances
    rejected: str = ""  # why the engine rejected a keyword hypothesis ("" if it did not)
    early: bool = False  # decided at the tentative endpoint (early_silence_ms), not the full one
    # Audio position when the decision was taken: the decode's start, or for a tentative no-match reused as
    # the FINAL, the full endpoint. decided_s - end_s is the endpointing part of the decision latency.
    decided_s: float = 0.0
    decode_ms: float = 0.0  # wall time of that decode in the worker thread
    speech_end_time: float | None = None  # loop.time() when the last voiced frame was fed (latency origin)


class AsrSession(Protocol):
    """One per gather: frames in, events out."""

    events: asyncio.Queue[AsrEvent]

    def feed(self, pcm: np.ndarray) -> None: ...

    async def close(self) -> None: ...


class AsrEngine(Protocol):
    def open(self, keywords: KeywordSet, *, no_input_ms: int = 5000, end_silence_ms: int = 700,
             max_utterance_ms: int = 10000, early_silence_ms: int | None = None) -> AsrSession: ...


# Runs in a worker thread: 8 kHz int16 utterance (with some leading context) -> final event.
Decode = Callable[[np.ndarray, float, float], AsrEvent]


@dataclass(eq=False)
class EndpointedSession:
    """VAD endpointing shared by engines; the engine supplies ``decode`` (called off the event loop).

    The session ends itself after the first of: a final result, no speech within ``no_input_ms``, or
    speech longer than ``max_utterance_ms`` (that utterance is still decoded: a caller who talks over
    the prompt for 10 s may well have said the keyword; the ``too_long`` event comes first).
    Later frames are ignored; the interpreter opens a new session for the next gather.

    With ``early_silence_ms`` (shorter than ``end_silence_ms``) a pause of that length starts a tentative
    decode of the utterance so far (``decode_tentative`` if given, else ``decode``). Its result goes on
    the queue as a PARTIAL; if it names a branch it is also the FINAL (``early=True``) and the session
    ends without waiting for the full endpoint. Results for audio the caller has since added to (speech
    resumed) are dropped; at most one tentative decode runs at a time.
    """

    decode: Decode
    executor: Executor | None
    no_input_ms: int = 5000
    end_silence_ms: int = 700
    max_utterance_ms: int = 10000
    pre_roll_ms: int = 200  # audio kept from before the VAD fired: the onset it needed to decide
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.get_running_loop)
    events: asyncio.Queue[AsrEvent] = field(default_factory=asyncio.Queue)
    early_silence_ms: int | None = EARLY_SILENCE_MS
    decode_tentative: Decode | None = None
    done: bool = field(default=False, init=False)
    decodes: int = field(default=0, init=False)  # decodes started (tentative and final), for cost accounting
    _vad: SpeechDetector = field(init=False, repr=False)
    _frames: list[np.ndarray] = field(default_factory=list, init=False, repr=False)
    _n: int = field(default=0, init=False, repr=False)  # frames fed
    _start_frame: int | None = field(default=None, init=False, repr=False)
    _task: asyncio.Future[AsrEvent] | None = field(default=None, init=False, repr=False)
    _trailing: int = field(default=0, init=False, repr=False)  # unvoiced frames since the last voiced one
    _last_voiced: int = field(default=0, init=False, repr=False)  # frame count at the last voiced frame
    _last_voiced_time: float | None = field(default=None, init=False, repr=False)
    _early_frames: int = field(default=0, init=False, repr=False)
    _tentative: asyncio.Future[AsrEvent] | None = field(default=None, init=False, repr=False)
    _tentative_upto: int = field(default=-1, init=False, repr=False)  # _last_voiced that decode saw
    _tentative_result: AsrEvent | None = field(default=None, init=False, repr=False)  # a no-match, kept
    _awaiting_tentative: bool = field(default=False, init=False, repr=False)
    _final_decided_s: float = field(default=0.0, init=False, repr=False)

    def __post_init__(self) -> None:
        if min(self.no_input_ms, self.end_silence_ms, self.max_utterance_ms) <= 0:
            raise ValueError("timeouts must be positive")
        if self.early_silence_ms is not None and self.early_silence_ms < 0:
            raise ValueError("early_silence_ms must not be negative")
        self._vad = SpeechDetector(hangover_frames=max(1, self.end_silence_ms // FRAME_MS))
        early = (self.early_silence_ms or 0) // FRAME_MS
        # A tentative endpoint at or beyond the full one would only duplicate it.
        self._early_frames = early if 0 < early < self._vad.hangover_frames else 0

    def feed(self, pcm: np.ndarray) -> None:
        if self.done:
            return
        voiced_before = self._vad.voiced_frames
        edge = self._vad.feed(pcm)  # validates the frame size and dtype
        self._n += 1
        self._frames.append(pcm.copy())
        now_s = self._n * FRAME_MS / 1000
        if self._vad.voiced_frames != voiced_before:
            self._trailing = 0
            self._last_voiced = self._n
            self._last_voiced_time = self.loop.time()
        else:
            self._trailing += 1
        if self._start_frame is None:
            keep = self.pre_roll_ms // FRAME_MS + self._vad.start_frames
            if len(self._frames) > keep:
                del self._frames[:-keep]
            if edge == SPEECH_START:
                self._start_frame = self._n - self._vad.start_frames
                self.events.put_nowait(AsrEvent(SPEECH_START_EVENT, start_s=self._start_frame * FRAME_MS / 1000,
                                                end_s=now_s))
            elif self._n * FRAME_MS >= self.no_input_ms:
                self.done = True
                self.events.put_nowait(AsrEvent(NO_INPUT, end_s=now_s))
            return
        start_s = self._start_frame * FRAME_MS / 1000
        if edge == SPEECH_END:
            end_s = now_s - self._vad.hangover_frames * FRAME_MS / 1000
            if (self._tentative_upto == self._last_voiced and self.decode_tentative is None
                    and (self._tentative_result is not None or self._tentative is not None)):
                # The tentative decode saw exactly this utterance with the same trailing context, and
                # decided the same way: its result is the final one. Saves a second decode per no-match.
                self.done = True
                self._frames = []
                self._final_decided_s = now_s
                if self._tentative_result is not None:
                    self.events.put_nowait(dataclasses.replace(self._tentative_result, kind=FINAL, early=False,
                                                               decided_s=now_s))
                    self._tentative_result = None
                else:  # still decoding: _deliver_tentative emits its result as the FINAL
                    self._awaiting_tentative = True
                return
            # The hangover frames are trailing silence: keep a little, drop the rest.
            tail = max(0, self._vad.hangover_frames - KEEP_TRAILING_FRAMES)
            self._finish(self._frames[:len(self._frames) - tail], start_s, end_s)
        elif (self._n - self._start_frame) * FRAME_MS >= self.max_utterance_ms:
            self.events.put_nowait(AsrEvent(TOO_LONG, start_s=start_s, end_s=now_s))
            self._finish(self._frames, start_s, now_s)
        elif (self._early_frames and self._trailing == self._early_frames and self._tentative is None
              and self._last_voiced > self._tentative_upto):
            tail = max(0, self._trailing - KEEP_TRAILING_FRAMES)
            self._tentative_upto = self._last_voiced
            self._tentative_result = None
            self.decodes += 1
            self._tentative = self.loop.run_in_executor(
                self.executor, self._join_and_decode, self._frames[:len(self._frames) - tail], start_s,
                self._last_voiced * FRAME_MS / 1000, now_s, self._last_voiced_time, True)
            self._tentative.add_done_callback(self._deliver_tentative)

    def _finish(self, frames: list[np.ndarray], start_s: float, end_s: float) -> None:
        self.done = True
        self._frames = []
        self.decodes += 1
        # Even joining the frames is left to the worker: this runs inside feed(), on the event loop.
        self._task = self.loop.run_in_executor(self.executor, self._join_and_decode, frames, start_s, end_s,
                                               self._n * FRAME_MS / 1000, self._last_voiced_time)
        self._task.add_done_callback(self._deliver)

    def _join_and_decode(self, frames: list[np.ndarray], start_s: float, end_s: float, decided_s: float,
                         speech_end_time: float | None, tentative: bool = False) -> AsrEvent:
        t0 = time.perf_counter()
        audio = np.concatenate(frames) if frames else np.zeros(0, np.int16)
        decode = (self.decode_tentative or self.decode) if tentative else self.decode
        ev = decode(audio, start_s, end_s)
        return dataclasses.replace(ev, decided_s=decided_s, decode_ms=round((time.perf_counter() - t0) * 1e3, 2),
                                   speech_end_time=speech_end_time)

    def _deliver(self, fut: asyncio.Future[AsrEvent]) -> None:
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None:  # surface decoder failures instead of leaving the gather waiting forever
            self.events.put_nowait(AsrEvent(FINAL, text=f"<error: {exc}>"))
            return
        self.events.put_nowait(dataclasses.replace(fut.result(), kind=FINAL))

    def _deliver_tentative(self, fut: asyncio.Future[AsrEvent]) -> None:
        self._tentative = None
        if fut.cancelled():
            return
        if self.done:
            # Already decided or closed (then this result is stale), or the full endpoint fired on the very
            # audio this decode saw and waits for it.
            if self._awaiting_tentative:
                self._awaiting_tentative = False
                if fut.exception() is not None:
                    self._deliver(fut)
                else:
                    self.events.put_nowait(dataclasses.replace(fut.result(), kind=FINAL,
                                                               decided_s=self._final_decided_s))
            return
        if fut.exception() is not None:
            return  # the full endpoint decodes again and reports a failure then
        if self._last_voiced > self._tentative_upto:
            return  # the caller went on talking: this decode saw only part of the utterance
        ev = fut.result()
        self.events.put_nowait(dataclasses.replace(ev, kind=PARTIAL, early=True))
        if ev.branch is not None:
            self.done = True
            self._frames = []
            self.events.put_nowait(dataclasses.replace(ev, kind=FINAL, early=True))
        else:
            self._tentative_result = ev

    async def close(self) -> None:
        self.done = True
        for task in (self._task, self._tentative):
            if task is not None and not task.done():
                try:
                    await task
                except Exception:  # already reported through the queue by _deliver
                    pass

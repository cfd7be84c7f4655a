"""The streaming recogniser interface the IVR interpreter uses, plus the shared endpointing logic.

The media path hands over one 20 ms frame at a time from the event loop, so ``feed`` must only buffer
and run the VAD (microseconds). Decoding takes tens to hundreds of milliseconds and runs in a thread
pool the engine owns; results come back as ``AsrEvent`` objects on an ``asyncio.Queue``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from asr.keywords import KeywordSet
from softswitch.media.vad import FRAME_MS, SPEECH_END, SPEECH_START, SpeechDetector

__all__ = ["AsrEngine", "AsrEvent", "AsrSession", "EndpointedSession", "SPEECH_START_EVENT", "PARTIAL",
           "FINAL", "NO_INPUT", "TOO_LONG"]

SPEECH_START_EVENT = "speech_start"
PARTIAL = "partial"
FINAL = "final"
NO_INPUT = "no_input"
TOO_LONG = "too_long"

SAMPLE_RATE = 8000
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000


@dataclass(frozen=True)
class AsrEvent:
    kind: str  # "speech_start" | "partial" | "final" | "no_input" | "too_long"
    text: str = ""
    branch: str | None = None
    phrase: str | None = None
    score: float = 0.0
    start_s: float = 0.0
    end_s: float = 0.0


class AsrSession(Protocol):
    """One per gather: frames in, events out."""

    events: asyncio.Queue[AsrEvent]

    def feed(self, pcm: np.ndarray) -> None: ...

    async def close(self) -> None: ...


class AsrEngine(Protocol):
    def open(self, keywords: KeywordSet, *, no_input_ms: int = 5000, end_silence_ms: int = 700,
             max_utterance_ms: int = 10000) -> AsrSession: ...


# Runs in a worker thread: 8 kHz int16 utterance (with some leading context) -> final event.
Decode = Callable[[np.ndarray, float, float], AsrEvent]


@dataclass(eq=False)
class EndpointedSession:
    """VAD endpointing shared by engines; the engine supplies ``decode`` (called off the event loop).

    The session ends itself after the first of: a final result, no speech within ``no_input_ms``, or
    speech longer than ``max_utterance_ms`` (that utterance is still decoded: a caller who talks over
    the prompt for 10 s may well have said the keyword; the ``too_long`` event comes first).
    Later frames are ignored; the interpreter opens a new session for the next gather.
    """

    decode: Decode
    executor: Executor | None
    no_input_ms: int = 5000
    end_silence_ms: int = 700
    max_utterance_ms: int = 10000
    pre_roll_ms: int = 200  # audio kept from before the VAD fired: the onset it needed to decide
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.get_running_loop)
    events: asyncio.Queue[AsrEvent] = field(default_factory=asyncio.Queue)
    done: bool = field(default=False, init=False)
    _vad: SpeechDetector = field(init=False, repr=False)
    _frames: list[np.ndarray] = field(default_factory=list, init=False, repr=False)
    _n: int = field(default=0, init=False, repr=False)  # frames fed
    _start_frame: int | None = field(default=None, init=False, repr=False)
    _task: asyncio.Future[AsrEvent] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if min(self.no_input_ms, self.end_silence_ms, self.max_utterance_ms) <= 0:
            raise ValueError("timeouts must be positive")
        self._vad = SpeechDetector(hangover_frames=max(1, self.end_silence_ms // FRAME_MS))

    def feed(self, pcm: np.ndarray) -> None:
        if self.done:
            return
        edge = self._vad.feed(pcm)  # validates the frame size and dtype
        self._n += 1
        self._frames.append(pcm.copy())
        now_s = self._n * FRAME_MS / 1000
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
            # The hangover frames are trailing silence: keep a little, drop the rest.
            tail = max(0, self._vad.hangover_frames - 10)
            end_s = now_s - self._vad.hangover_frames * FRAME_MS / 1000
            self._finish(self._frames[:len(self._frames) - tail], start_s, end_s)
        elif (self._n - self._start_frame) * FRAME_MS >= self.max_utterance_ms:
            self.events.put_nowait(AsrEvent(TOO_LONG, start_s=start_s, end_s=now_s))
            self._finish(self._frames, start_s, now_s)

    def _finish(self, frames: list[np.ndarray], start_s: float, end_s: float) -> None:
        self.done = True
        self._frames = []
        # Even joining the frames is left to the worker: this runs inside feed(), on the event loop.
        self._task = self.loop.run_in_executor(self.executor, self._join_and_decode, frames, start_s, end_s)
        self._task.add_done_callback(self._deliver)

    def _join_and_decode(self, frames: list[np.ndarray], start_s: float, end_s: float) -> AsrEvent:
        audio = np.concatenate(frames) if frames else np.zeros(0, np.int16)
        return self.decode(audio, start_s, end_s)

    def _deliver(self, fut: asyncio.Future[AsrEvent]) -> None:
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None:  # surface decoder failures instead of leaving the gather waiting forever
            self.events.put_nowait(AsrEvent(FINAL, text=f"<error: {exc}>"))
            return
        self.events.put_nowait(fut.result())

    async def close(self) -> None:
        self.done = True
        if self._task is not None and not self._task.done():
            try:
                await self._task
            except Exception:  # already reported through the queue by _deliver
                pass

"""Media taps: per-direction 20 ms PCM frames of a leg, offered to subscribers (recorder, ASR, VAD).

Every tick of the media clock offers one frame per direction, so two directions share one timeline:
frame ``index`` n of "rx" and of "tx" cover the same 20 ms of wall-clock time. Gaps (loss, hold,
silence suppression) arrive as concealed or silent frames, never as missing indices.

A subscriber reads from a bounded queue. Media never waits for it: when the queue is full the frame
is dropped and counted, and the subscriber sees the gap in ``index``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import numpy as np


@dataclass(slots=True)
class TapFrame:
    stream: str            # "rx" = what the party says, "tx" = what the party hears
    index: int             # media-clock tick of the leg (since its media started); shared by both directions
    rtp_ts: int | None     # sender's RTP timestamp of pcm[0] (None for generated or silent audio)
    pcm: np.ndarray        # int16, 160 samples at 8 kHz; read-only, share it freely
    kind: str = "audio"    # "audio" | "concealed" | "silence"


class TapClosed(Exception):
    """The tapped leg ended and every queued frame was consumed."""


class Tap:
    """One subscriber's bounded frame queue."""

    def __init__(self, maxsize: int = 500, on_close: Callable[[Tap], None] | None = None,
                 wake_batch: int = 1) -> None:
        self.maxsize = maxsize
        # wake the reader once this many frames wait: a consumer that can take its audio in
        # 200 ms batches (a meter, a recorder) costs one task switch per batch, not per frame
        self.wake_batch = wake_batch
        self._frames: deque[TapFrame] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._on_close = on_close
        self.closed = False
        self.offered = 0
        self.dropped = 0  # frames lost because the subscriber was too slow: counted, never waited for

    def offer(self, frame: TapFrame) -> None:
        """Called by the media clock; O(1) and never blocks."""
        if self.closed:
            return
        self.offered += 1
        if len(self._frames) >= self.maxsize:
            self.dropped += 1
            return
        self._frames.append(frame)
        if len(self._frames) >= self.wake_batch:
            self._wake()

    def get_nowait(self) -> TapFrame | None:
        return self._frames.popleft() if self._frames else None

    async def get(self) -> TapFrame:
        """The next frame; raises TapClosed once the tap is closed and drained."""
        while not self._frames:
            if self.closed:
                raise TapClosed()
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._frames.popleft()

    def __aiter__(self) -> AsyncIterator[TapFrame]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[TapFrame]:
        while True:
            try:
                yield await self.get()
            except TapClosed:
                return

    def close(self) -> None:
        """Detach: no more frames arrive; queued ones can still be read."""
        if self.closed:
            return
        self.closed = True
        self._wake()
        if self._on_close is not None:
            self._on_close(self)

    def stats(self) -> dict[str, int]:
        return {"offered": self.offered, "dropped": self.dropped, "queued": len(self._frames)}

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class TapPoint:
    """Where taps attach on a leg: fans each tick's frames out to every subscriber."""

    __slots__ = ("taps", "index")

    def __init__(self) -> None:
        self.taps: list[Tap] = []
        self.index = 0

    def attach(self, maxsize: int = 500, wake_batch: int = 1) -> Tap:
        tap = Tap(maxsize, self._detach, wake_batch)
        self.taps.append(tap)
        return tap

    def _detach(self, tap: Tap) -> None:
        if tap in self.taps:
            self.taps.remove(tap)

    def publish(self, rx: TapFrame | None, tx: TapFrame | None) -> None:
        for tap in self.taps:
            if rx is not None:
                tap.offer(rx)
            if tx is not None:
                tap.offer(tx)

    def close(self) -> None:
        for tap in list(self.taps):
            tap.close()

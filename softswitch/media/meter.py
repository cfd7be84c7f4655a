"""Audio level meter: a tap consumer that reports per-direction levels and silence for the CDR.

One-way audio and dead air are the most common media faults a support desk hears about; a level
per direction in every CDR finds them without recordings. It is also the reference tap consumer
(the benchmark runs one on every call) for the recorder and ASR that come later.
"""

from __future__ import annotations

import math

import numpy as np

from .tap import Tap, TapFrame

SILENT_DBFS = -50.0  # a 20 ms frame quieter than this counts as silence


class LevelMeter:
    def __init__(self, tap: Tap) -> None:
        self.tap = tap
        self._energy = {"rx": 0.0, "tx": 0.0}
        self._frames = {"rx": 0, "tx": 0}
        self._silent = {"rx": 0, "tx": 0}
        self._threshold = (32768.0 * 10 ** (SILENT_DBFS / 20)) ** 2 * 160

    async def run(self) -> None:
        """Consume until the tap closes (the leg ended), a batch per wake-up."""
        async for frame in self.tap:
            self.drain(frame)

    def drain(self, first: TapFrame | None = None) -> None:
        """Everything queued, in one vectorised pass (a batch costs about what one frame would)."""
        frames = [] if first is None else [first]
        while (frame := self.tap.get_nowait()) is not None:
            frames.append(frame)
        if not frames:
            return
        x = np.stack([f.pcm for f in frames]).astype(np.float32)
        energy = np.einsum("ij,ij->i", x, x).tolist()
        for f, e in zip(frames, energy):
            stream = f.stream
            self._energy[stream] += e
            self._frames[stream] += 1
            if e < self._threshold:
                self._silent[stream] += 1

    def stats(self) -> dict:
        out: dict[str, float | int | None] = {}
        for stream in ("rx", "tx"):
            n = self._frames[stream]
            mean = self._energy[stream] / (n * 160) if n else 0.0
            out[f"{stream}_dbfs"] = round(10 * math.log10(mean / 32768.0 ** 2), 1) if mean > 0 else None
            out[f"{stream}_silent_pct"] = round(100.0 * self._silent[stream] / n, 1) if n else None
        out["frames"] = self._frames["rx"]
        out["dropped"] = self.tap.dropped
        return out

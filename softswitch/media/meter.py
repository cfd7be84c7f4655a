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
        """Everything queued, one vectorised pass per direction (a batch costs about one frame)."""
        batch: dict[str, list[np.ndarray]] = {"rx": [], "tx": []}
        if first is not None:
            batch[first.stream].append(first.pcm)
        while (frame := self.tap.get_nowait()) is not None:
            batch[frame.stream].append(frame.pcm)
        for stream, frames in batch.items():
            if not frames:
                continue
            x = np.stack(frames).astype(np.float64)
            energy = np.einsum("ij,ij->i", x, x)
            self._energy[stream] += float(energy.sum())
            self._frames[stream] += len(frames)
            self._silent[stream] += int(np.count_nonzero(energy < self._threshold))

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

"""The media clock: one 20 ms timer for every terminated stream and tap on the loop.

One timer for all streams (not one per call) keeps the loop's timer heap small and lets a tick
process every stream back to back. A tick that fires late still runs (frames go out late, never
lost); when the loop fell more than ``MAX_CATCH_UP`` ticks behind, the missed ticks are skipped
and counted, and members with a ``skip`` let that media time pass (audio queued meanwhile is dropped,
so a stall does not leave every stream that much further behind for good). Lateness is measured here, so the benchmark can report late frames,
and its running average tells the switch when it is overloaded and should refuse new calls rather than
let every call's audio fall apart (``overloaded``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

log = logging.getLogger("softswitch.media")

PERIOD = 0.020
LATE_S = 0.010       # a frame sent more than half a frame late counts as late
MAX_CATCH_UP = 5
LATENESS_ALPHA = 0.02  # the lateness average spans ~50 ticks (1 s)


class Ticking(Protocol):
    def tick(self, now: float) -> None: ...


class MediaClock:
    def __init__(self, loop: asyncio.AbstractEventLoop, period: float = PERIOD, late_s: float = LATE_S) -> None:
        self._loop = loop
        self.period = period
        self.late_s = late_s
        self._members: dict[Ticking, None] = {}  # insertion-ordered set
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0
        self.ticks = self.frames = self.late_frames = self.skipped = self.errors = 0
        self.max_late_ms = 0.0
        self.busy_s = 0.0  # time spent inside ticks
        self.lateness = 0.0  # running average of how late ticks fire, in periods

    def add(self, member: Ticking) -> None:
        self._members[member] = None
        if self._handle is None:
            self.lateness = 0.0   # an idle clock was not late
            self._due = self._loop.time() + self.period
            self._handle = self._loop.call_at(self._due, self._tick)

    def remove(self, member: Ticking) -> None:
        self._members.pop(member, None)

    def __len__(self) -> int:
        return len(self._members)

    def _tick(self) -> None:
        now = self._loop.time()
        if not self._members:
            self._handle = None
            return
        late = now - self._due
        self.lateness += LATENESS_ALPHA * (min(max(late, 0.0) / self.period, 10.0) - self.lateness)
        if late > self.period * MAX_CATCH_UP:
            missed = int(late / self.period)
            self.skipped += missed * len(self._members)
            self._due += missed * self.period
            late -= missed * self.period
            for member in list(self._members):
                skip = getattr(member, "skip", None)
                if skip is not None:
                    try:
                        skip(missed, now)
                    except Exception:  # noqa: BLE001 - the next tick reports a broken member
                        log.exception("media skip failed")
        n = len(self._members)
        self.ticks += 1
        self.frames += n
        if late > self.late_s:
            self.late_frames += n
        self.max_late_ms = max(self.max_late_ms, late * 1000)
        batches: dict[type, list[Ticking]] = {}
        for member in list(self._members):
            many = getattr(type(member), "tick_many", None)
            if many is not None:  # members that process a tick together (terminated sessions)
                batches.setdefault(type(member), []).append(member)
                continue
            try:
                member.tick(now)
            except Exception:  # noqa: BLE001 - one broken stream must not stop everyone's audio
                self.errors += 1
                self._members.pop(member, None)
                log.exception("media tick failed; stream detached")
        for kind, members in batches.items():
            try:
                kind.tick_many(members, now)  # type: ignore[attr-defined]
            except Exception:  # noqa: BLE001 - isolates its own members' errors; this is the last net
                self.errors += 1
                log.exception("media batch tick failed")
        self.busy_s += self._loop.time() - now
        self._due += self.period
        self._handle = self._loop.call_at(self._due, self._tick)

    def overloaded(self, limit: float) -> bool:
        """Have ticks fired more than ``limit`` periods late on average over the last second (0: never)?"""
        return limit > 0 and bool(self._members) and self.lateness > limit

    def stats(self) -> dict:
        return {"members": len(self._members), "ticks": self.ticks, "frames": self.frames,
                "late_frames": self.late_frames, "skipped_frames": self.skipped, "errors": self.errors,
                "max_late_ms": round(self.max_late_ms, 2), "busy_s": round(self.busy_s, 3)}

    def close(self) -> None:
        self._members.clear()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

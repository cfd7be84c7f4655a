"""The recorder on live calls: one ``CallRecording`` per recorded call, fed by the media taps.

A call's caller leg is tapped (``rx`` = what the caller says -> left channel, ``tx`` = what the caller
hears, i.e. the agent/callee -> right channel). Within one tap both directions share the media clock's
frame index, and a missing index (a slow reader) is written as silence, so the two tracks can never
drift. When the source changes (a flow's terminated session is bridged to an agent: the session's tap
closes and the relay's opens) the gap is filled from the loop clock. Frames are written and the talk
statistics computed in the recorder's worker thread, never on the event loop; a disk error stops that
recording (logged, and in the CDR), never the call.

Files: ``NAME.wav.part`` while recording (``NAME.json.part`` holds the call's identity, for the repair
after a crash), then ``NAME.wav`` and ``NAME.json`` (the statistics) once closed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..media.tap import Tap, TapClosed
from .talkstats import TalkStats
from .wav import RecordingError, WavWriter, find_parts, repair, retention

if TYPE_CHECKING:
    from ..config import Config

log = logging.getLogger("softswitch.recorder")

FRAME = 160
FRAME_S = 0.020
_UNSAFE = re.compile(r"[^A-Za-z0-9+_.@-]")


def recording_name(template: str, variables: dict[str, str]) -> str:
    """The file name (without .wav) from ``recording.name``; values are made safe for a path."""
    safe = {k: _UNSAFE.sub("_", str(v or "")) for k, v in variables.items()}
    return template.format(**safe)


def _write_json(path: Path, data: dict, fsync: bool) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


@dataclass(eq=False)
class CallRecording:
    """One call's recording (single owner: its reader task; disk work in the recorder's thread)."""

    path: Path                      # final NAME.wav
    writers: list[WavWriter]        # stereo first, then the optional mono tracks
    stats: TalkStats
    meta: dict[str, Any]
    executor: ThreadPoolExecutor
    loop: asyncio.AbstractEventLoop
    started: float = 0.0            # loop time of frame 0
    frames: int = 0                 # frames on the timeline so far
    paused: bool = False
    pause_marks: list[list[float]] = field(default_factory=list)
    error: str | None = None
    closed: bool = False
    sources: int = 0
    gap_frames: int = 0             # silence written for missing frames (reader too slow / source change)
    _stats_paused: bool = False
    _task: asyncio.Task[None] | None = None
    _tap: Tap | None = None
    _closing: asyncio.Event = field(default_factory=asyncio.Event)

    # ------------------------------------------------------------------ sources
    def attach(self, tap: Tap) -> None:
        """Record from ``tap`` from now on (a new source after a hand-over continues the same timeline)."""
        if self.closed:
            tap.close()
            return
        if self._tap is not None:
            self._tap.close()
        self._tap = tap
        self.sources += 1
        if self._task is None:
            self.started = self.loop.time()
        self._task_for(tap)

    def _task_for(self, tap: Tap) -> None:
        previous = self._task
        self._task = self.loop.create_task(self._read(tap, previous))

    async def _read(self, tap: Tap, previous: asyncio.Task[None] | None) -> None:
        if previous is not None:   # the old source finishes first (frames in order)
            await asyncio.gather(previous, return_exceptions=True)
        # the timeline continues where the clock says it is now (a source change leaves a gap)
        due = int(round((self.loop.time() - self.started) / FRAME_S))
        if self.frames and due > self.frames:
            await self._write_block(np.zeros((due - self.frames, 2), np.int16), gap=True)
        base: int | None = None
        pending: dict[int, list[np.ndarray | None]] = {}
        try:
            while True:   # until the tap is closed (source gone, or the recording closes) and drained
                try:
                    first = await tap.get()
                except TapClosed:
                    break
                batch = [first]
                while (frame := tap.get_nowait()) is not None:
                    batch.append(frame)
                if base is None:
                    base = first.index - self.frames   # this source's index 'index' is timeline frame index-base
                rows: list[tuple[int, np.ndarray | None, np.ndarray | None]] = []
                for frame in batch:
                    slot = pending.setdefault(frame.index, [None, None])
                    slot[0 if frame.stream == "rx" else 1] = frame.pcm
                    if slot[0] is not None and slot[1] is not None:
                        rows.append((frame.index, *pending.pop(frame.index)))
                # a direction that never comes for an index older than the newest complete one: silence
                newest = max((r[0] for r in rows), default=None)
                if newest is not None:
                    for index in [i for i in pending if i < newest]:
                        rows.append((index, *pending.pop(index)))
                if rows:
                    await self._write_rows(sorted(rows, key=lambda r: r[0]), base)
        except asyncio.CancelledError:
            raise
        finally:
            for index, (rx, tx) in sorted(pending.items()):
                if base is not None:
                    await self._write_rows([(index, rx, tx)], base)

    async def _write_rows(self, rows: list[tuple[int, Any, Any]], base: int) -> None:
        start = rows[0][0] - base
        if start < self.frames:   # a late frame for a stretch already written: drop it
            rows = [r for r in rows if r[0] - base >= self.frames]
            if not rows:
                return
            start = rows[0][0] - base
        if start > self.frames:
            await self._write_block(np.zeros((start - self.frames, 2), np.int16), gap=True)
        end = rows[-1][0] - base + 1
        block = np.zeros((end - self.frames, FRAME, 2), np.int16)
        for index, rx, tx in rows:
            at = index - base - self.frames
            if rx is not None:
                block[at, :, 0] = rx
            if tx is not None:
                block[at, :, 1] = tx
        await self._write_block(block.reshape(-1, 2))

    async def _write_block(self, block: np.ndarray, gap: bool = False) -> None:
        n = len(block) // FRAME
        if gap:
            self.gap_frames += n
        if self.paused:
            block = np.zeros_like(block)
        self.frames += n
        if self.error is None:
            await self.loop.run_in_executor(self.executor, self._consume, block, self.paused)

    def _consume(self, block: np.ndarray, paused: bool) -> None:
        """Worker thread: write, then the statistics (they see exactly what the file holds). Blocks of one
        recording never overlap (its reader awaits each), so the statistics need no lock."""
        if paused != self._stats_paused:
            self._stats_paused = paused
            (self.stats.pause if paused else self.stats.resume)()
        try:
            self.writers[0].write(block)
            for i, w in enumerate(self.writers[1:]):
                w.write(np.ascontiguousarray(block[:, i]))
        except (RecordingError, OSError) as exc:
            self.error = str(exc)
            log.error("recording %s stopped: %s", self.path, exc)
            return
        frames = block.reshape(-1, FRAME, 2)
        for f in frames:
            self.stats.feed(f[:, 0], f[:, 1])

    # ------------------------------------------------------------------ pause / resume
    def pause(self) -> bool:
        if self.paused or self.closed:
            return False
        self.paused = True
        at = round(self.frames * FRAME_S, 3)
        self.pause_marks.append([at, at])
        return True

    def resume(self) -> bool:
        if not self.paused or self.closed:
            return False
        self.paused = False
        self.pause_marks[-1][1] = round(self.frames * FRAME_S, 3)
        return True

    # ------------------------------------------------------------------ the end
    async def close(self) -> dict[str, Any]:
        """Finish: drain the source, finalise the files, write the statistics; the CDR's ``recording``."""
        if self.closed:
            return self.summary()
        self.closed = True
        if self._tap is not None:
            self._tap.close()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 2.0)
            except (asyncio.TimeoutError, Exception):  # noqa: BLE001 - a stuck reader must not keep the file open
                self._task.cancel()
        if self.paused:
            self.pause_marks[-1][1] = round(self.frames * FRAME_S, 3)
        result = await self.loop.run_in_executor(self.executor, self._finish)
        return result

    def _finish(self) -> dict[str, Any]:
        for w in self.writers:
            try:
                w.close()
            except (RecordingError, OSError) as exc:
                self.error = self.error or str(exc)
                log.error("recording %s: cannot finish %s: %s", self.meta.get("call_id"), w, exc)
        summary = self.summary()
        stats_path = self.path.with_suffix(".json")
        try:
            _write_json(stats_path, {**self.meta, "recording": summary}, fsync=True)
            part = self.path.with_name(self.path.stem + ".json.part")
            part.unlink(missing_ok=True)
        except OSError as exc:
            self.error = self.error or f"cannot write {stats_path}: {exc.strerror or exc}"
            summary["error"] = self.error
        return summary

    def summary(self) -> dict[str, Any]:
        stats = self.stats.result()
        out: dict[str, Any] = {
            "path": str(self.path), "stats_path": str(self.path.with_suffix(".json")),
            "format": self.writers[0].fmt, "duration_s": round(self.frames * FRAME_S, 3),
            "paused": [list(p) for p in self.pause_marks], "gap_frames": self.gap_frames,
            "stats": stats,
        }
        if len(self.writers) > 1:
            out["tracks"] = [str(w.path) for w in self.writers[1:]]
        if self.error:
            out["error"] = self.error
        return out


class Recorder:
    """Every recording of one switch: where files go, the worker thread, crash repair, retention."""

    def __init__(self, config: "Config", loop: asyncio.AbstractEventLoop) -> None:
        self.settings = config.recording
        self.dir = config.resolve_path(self.settings.dir)
        self.loop = loop
        self.executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="recorder")
        self.active: dict[str, CallRecording] = {}
        self.failed = 0
        self.last_error = ""

    def start(self, call_id: str, variables: dict[str, str], meta: dict[str, Any]) -> CallRecording | None:
        """Open the files of a new recording (None, logged, if that fails: the call goes on unrecorded)."""
        s = self.settings
        name = recording_name(s.name, {**variables, "call_id": call_id})
        path = self.dir / f"{name}.wav"
        fsync = s.fsync
        try:
            writers = [WavWriter(path, 2, fmt=s.format, fsync=fsync, fsync_interval_s=s.fsync_interval_s)]
            if s.mono_tracks:
                for track in ("caller", "agent"):
                    writers.append(WavWriter(path.with_name(f"{path.stem}-{track}.wav"), 1, fmt=s.format,
                                             fsync=fsync, fsync_interval_s=s.fsync_interval_s))
            meta = {**meta, "path": str(path), "started": time.time()}
            _write_json(path.with_name(path.stem + ".json.part"), meta, fsync=fsync != "never")
        except (RecordingError, OSError) as exc:
            self.failed += 1
            self.last_error = str(exc)
            log.error("call %s: cannot record to %s: %s", call_id, path, exc)
            return None
        rec = CallRecording(path, writers, TalkStats(), meta, self.executor, self.loop)
        self.active[call_id] = rec
        log.info("call %s: recording to %s", call_id, path)
        return rec

    async def finish(self, call_id: str) -> dict[str, Any] | None:
        rec = self.active.pop(call_id, None)
        if rec is None:
            return None
        return await rec.close()

    async def repair_orphans(self) -> list[dict[str, Any]]:
        """After a crash: every ``.part`` left under the recordings directory becomes a valid WAV; returns
        one record per recovered call (its identity, the recording and its statistics) for the CDR."""
        return await self.loop.run_in_executor(self.executor, self._repair_all)

    def _repair_all(self) -> list[dict[str, Any]]:
        from .talkstats import stats_for_wav
        out = []
        if not self.dir.exists():
            return out
        for part in find_parts(self.dir):
            if part.name.endswith(".json.part"):
                continue
            result = repair(part)
            meta_part = part.with_name(part.name.removesuffix(".wav.part") + ".json.part")
            try:
                meta = json.loads(meta_part.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                meta = {}
            record: dict[str, Any] = {"path": str(result.path), "recovered": True,
                                      "duration_s": round(result.seconds, 3)}
            if getattr(result, "problem", None):
                record["error"] = result.problem
            elif result.seconds > 0:
                try:
                    record["stats"] = stats_for_wav(result.path)
                except Exception as exc:  # noqa: BLE001 - a recovered file with odd audio still counts
                    record["error"] = f"statistics: {exc}"
            if meta and not str(result.path).endswith("-caller.wav") and not str(result.path).endswith("-agent.wav"):
                stats_path = Path(str(result.path)).with_suffix(".json")
                record["stats_path"] = str(stats_path)
                try:
                    _write_json(stats_path, {**meta, "recording": record}, fsync=True)
                    meta_part.unlink(missing_ok=True)
                except OSError as exc:
                    record["error"] = f"cannot write {stats_path}: {exc.strerror or exc}"
                out.append({"meta": meta, "recording": record})
            log.warning("recovered recording %s (%.1f s)%s", result.path, result.seconds,
                        f": {record['error']}" if "error" in record else "")
        return out

    async def expire(self) -> list[Path]:
        if self.settings.retention_days <= 0 or not self.dir.exists():
            return []
        deleted = await self.loop.run_in_executor(self.executor, retention, self.dir, self.settings.retention_days)
        if deleted:
            log.info("retention: deleted %d recordings older than %g days", len(deleted), self.settings.retention_days)
        return deleted

    async def close(self) -> None:
        for call_id in list(self.active):
            await self.finish(call_id)
        self.executor.shutdown(wait=True)

"""The recorder on live calls: one ``CallRecording`` per recorded call, all of them written by one worker thread.

Media code (the terminated session during an IVR, the relay once bridged) only appends each RTP packet of a
recorded leg to the shared ``Timeline.intake``: what the caller sends (left channel) and what the caller hears,
i.e. the agent/callee or the flow's prompts (right channel). Every ``batch_s`` the worker takes the whole intake,
places the packets of every recorded call on one sample clock (``timeline.py``: by RTP timestamp, anchored to
arrival), and hands each call its stereo block ``delay_s`` behind real time: pauses zeroed, written, and fed to
the talk statistics (webrtcvad), all calls at once. The event loop does no decoding and no per-frame work for a
recording, and nothing about a recording ever waits for the disk. When the source changes (a flow's terminated
session is bridged to an agent) the timeline simply goes on: the caller's stream keeps its anchor, the other
side's new SSRC is anchored where it is heard. A disk error stops that recording (logged, and in the CDR), never
the call.

Files: ``NAME.wav.part`` while recording (``NAME.json.part`` holds the call's identity, for the repair after a
crash), then ``NAME.wav`` and ``NAME.json`` (the statistics) once closed.
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
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .talkstats import TalkStats, frame_energies
from .timeline import FRAME, RATE, Timeline
from .wav import RecordingError, WavWriter, find_parts, repair, retention

if TYPE_CHECKING:
    from ..config import Config

log = logging.getLogger("softswitch.recorder")

FRAME_S = FRAME / RATE
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


class PacketSource(Protocol):
    """A leg's media that can feed a recording (MediaSession, or RelayCall for its caller side)."""

    def record(self, intake: list[tuple[int, float, bytes]], said: int, heard: int) -> None: ...

    def unrecord(self) -> None: ...


@dataclass(eq=False)
class CallRecording:
    """One call's recording. The event loop attaches sources, pauses and closes; the worker writes."""

    path: Path                      # final NAME.wav
    writers: list[WavWriter]        # stereo first, then the optional mono tracks
    stats: TalkStats
    meta: dict[str, Any]
    recorder: "Recorder"
    slot: int                       # the timeline's slot: streams 2*slot (caller) and 2*slot + 1 (what it hears)
    start: int                      # timeline position of the first sample
    written: int = 0                # position up to which the file is written (worker)
    end: int | None = None          # position of the last sample, once closing
    paused: bool = False
    error: str | None = None
    closed: bool = False
    sources: int = 0
    _pauses: list[list[int | None]] = field(default_factory=list)  # [start, end | None] timeline positions
    _source: PacketSource | None = None

    @property
    def pause_marks(self) -> list[list[float]]:
        """``[[start, end], ...]`` seconds from the start of the file (end = start while still paused)."""
        return [[round((int(p0 or 0) - self.start) / RATE, 3),
                 round((int(p1 if p1 is not None else p0 or 0) - self.start) / RATE, 3)] for p0, p1 in self._pauses]

    @property
    def duration_s(self) -> float:
        return round(max(0, self.written - self.start) / RATE, 3)

    @property
    def gap_frames(self) -> int:
        """Packets that came after their stretch was written (so it holds silence): the recorder fell behind."""
        c = self.recorder.timeline
        return int(c.late[2 * self.slot] + c.late[2 * self.slot + 1])

    # ------------------------------------------------------------------ sources
    def attach(self, source: PacketSource) -> None:
        """Record from ``source`` from now on (a new source after a hand-over continues the same timeline)."""
        if self.closed:
            return
        if self._source is not None and self._source is not source:
            self._source.unrecord()
        self._source = source
        self.sources += 1
        source.record(self.recorder.timeline.intake, 2 * self.slot, 2 * self.slot + 1)

    # ------------------------------------------------------------------ pause / resume
    def _at(self, t: float) -> int:
        return max(self.start, self.recorder.timeline.frame_position(t))

    def _now(self) -> int:
        return self._at(time.monotonic())

    def pause(self) -> bool:
        if self.paused or self.closed:
            return False
        self.paused = True
        self._pauses.append([self._now(), None])
        return True

    def resume(self) -> bool:
        if not self.paused or self.closed:
            return False
        self.paused = False
        self._pauses[-1][1] = max(self._now(), int(self._pauses[-1][0] or 0))
        return True

    # ------------------------------------------------------------------ the end
    async def close(self, ended: float | None = None) -> dict[str, Any]:
        """Finish: the last packets, finalise the files, write the statistics; the CDR's ``recording``."""
        if self.closed:
            return self.summary()
        self.closed = True
        if self._source is not None:
            self._source.unrecord()
        self.end = self._now() if ended is None else max(self.start, min(self._now(), self._at(ended)))
        if self.paused:
            self._pauses[-1][1] = self.end
        return await self.recorder.loop.run_in_executor(self.recorder.executor, self.recorder._finish, self)

    # ------------------------------------------------------------------ worker side
    def _paused_spans(self, lo: int, hi: int) -> list[tuple[int, int]]:
        spans = []
        for p0, p1 in list(self._pauses):
            a, b = max(lo, int(p0 or 0)), min(hi, hi if p1 is None else int(p1))
            if a < b:
                spans.append((a, b))
        return spans

    def _consume(self, block: np.ndarray, lo: int, hi: int, energies: np.ndarray) -> None:
        """Worker: write [lo, hi) (block: (hi - lo, 2) int16, pauses already zeroed; ``energies`` (2, frames)
        each frame's sum of squares) and feed the statistics."""
        if self.error is None:
            try:
                self.writers[0].write(block)
                for track, w in enumerate(self.writers[1:]):
                    w.write(block[:, track])
            except (RecordingError, OSError) as exc:
                self.error = str(exc)
                log.error("recording %s stopped: %s", self.path, exc)
        if self.error is None:
            frames = block.T.reshape(2, -1, FRAME)
            spans = self._paused_spans(lo, hi)
            edges = sorted({lo, hi, *(x for span in spans for x in span)})
            for a, b in zip(edges, edges[1:]):
                inside = any(p0 <= a < p1 for p0, p1 in spans)
                if inside != self.stats.paused:
                    (self.stats.pause if inside else self.stats.resume)()
                i, j = (a - lo) // FRAME, (b - lo) // FRAME
                self.stats.feed_block(frames[0, i:j], frames[1, i:j], energies[:, i:j])
        self.written = hi

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
        if self.stats.paused and not self.paused:
            self.stats.resume()
        out: dict[str, Any] = {
            "path": str(self.path), "stats_path": str(self.path.with_suffix(".json")),
            "format": self.writers[0].fmt, "duration_s": self.duration_s,
            "paused": [list(p) for p in self.pause_marks], "gap_frames": self.gap_frames,
            "packets": self.recorder.timeline.counters(self.slot),
            "stats": self.stats.result(),
        }
        if len(self.writers) > 1:
            out["tracks"] = [str(w.path) for w in self.writers[1:]]
        if self.error:
            out["error"] = self.error
        return out


class Recorder:
    """Every recording of one switch: the files, the timeline and its worker thread, crash repair, retention.

    One worker thread does all of the recording work, in order (``_step``, ``_finish``; a new recording joins at the next ``_ingest``), so the
    timeline and the writers need no lock; the event loop only allocates slots, records pause marks and wakes
    the worker every ``batch_s``."""

    def __init__(self, config: "Config", loop: asyncio.AbstractEventLoop, *, batch_s: float = 0.25,
                 delay_s: float = 0.25) -> None:
        self.settings = config.recording
        self.dir = config.resolve_path(self.settings.dir)
        self.loop = loop
        self.batch_s = batch_s
        self.timeline = Timeline(time.monotonic(), delay_s=delay_s)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recorder")
        self.active: dict[str, CallRecording] = {}   # event loop: call id -> recording
        self._live: list[CallRecording] = []          # worker: recordings being written
        self._opening: list[CallRecording] = []       # event loop appends, worker takes (list ops are atomic)
        self._free: list[int] = []                    # event loop: timeline slots to reuse
        self._slots = 0
        self._ticker: asyncio.Task[None] | None = None
        self._stepping = False
        self.failed = 0
        self.last_error = ""
        self.steps = self.skipped_steps = 0
        self.step_s_max = 0.0

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
        if self._free:
            slot = self._free.pop()
        else:
            slot, self._slots = self._slots, self._slots + 1
        begin = self.timeline.frame_position(time.monotonic())
        rec = CallRecording(path, writers, TalkStats(), meta, self, slot, begin, written=begin)
        self._opening.append(rec)   # before any of its packets can be in the intake (see _ingest)
        self.active[call_id] = rec
        if self._ticker is None:
            self._ticker = self.loop.create_task(self._tick())
        log.info("call %s: recording to %s", call_id, path)
        return rec

    async def finish(self, call_id: str, ended: float | None = None) -> dict[str, Any] | None:
        """Close a call's recording; ``ended``: when the call ended (monotonic), if before now."""
        rec = self.active.pop(call_id, None)
        if rec is None:
            return None
        try:
            return await rec.close(ended)
        finally:
            self._free.append(rec.slot)

    def stats(self) -> dict[str, Any]:
        """Live counters: recordings, worker steps (skipped = the worker was still busy), the longest step,
        packets waiting, packets that came too late for their stretch (all recordings so far)."""
        tl = self.timeline
        return {"active": len(self.active), "steps": self.steps, "skipped": self.skipped_steps,
                "step_ms_max": round(self.step_s_max * 1000, 1), "intake": len(tl.intake),
                "late": tl.late_total, "failed": self.failed}

    # ------------------------------------------------------------------ the worker
    async def _tick(self) -> None:
        """Wake the worker every ``batch_s`` (skipped while it is still busy: it then takes a bigger batch)."""
        while True:
            await asyncio.sleep(self.batch_s)
            if self._stepping:
                self.skipped_steps += 1
                continue
            self._stepping = True
            future = self.loop.run_in_executor(self.executor, self._step, time.monotonic())
            future.add_done_callback(self._stepped)

    def _stepped(self, future: asyncio.Future[None]) -> None:
        self._stepping = False
        if not future.cancelled() and future.exception() is not None:
            log.error("recorder step failed", exc_info=future.exception())

    def _ingest(self) -> None:
        tl = self.timeline
        items = tl.drain()
        # recordings started before that drain: any packet of theirs in it was appended after they were queued
        while self._opening:
            rec = self._opening.pop(0)
            tl.open_slot(rec.slot, rec.start)
            self._live.append(rec)
        tl.ingest(items)
        for rec in self._live:   # a start moved back by its first packets (Timeline._place), before any write
            if rec.written == rec.start and tl.start[rec.slot] < rec.start:
                rec.start = rec.written = int(tl.start[rec.slot])

    def _step(self, now: float) -> None:
        """Worker: every recorded call's audio up to the horizon, written and analysed."""
        began = time.perf_counter()
        self._ingest()
        horizon = self.timeline.horizon(now)
        groups: dict[tuple[int, int], list[CallRecording]] = {}
        for rec in self._live:
            hi = horizon if rec.end is None else min(horizon, rec.end)
            if hi > rec.written:
                groups.setdefault((rec.written, hi), []).append(rec)
        for (lo, hi), recs in groups.items():
            self._write(recs, lo, hi)
        self.steps += 1
        self.step_s_max = max(self.step_s_max, time.perf_counter() - began)

    def _write(self, recs: list[CallRecording], lo: int, hi: int) -> None:
        """[lo, hi) of recordings that all stand at ``lo``: one take from the timeline, one energy pass."""
        ring = self.timeline.ring
        while lo < hi:
            top = min(hi, lo + ring)
            block = self.timeline.take([r.slot for r in recs], lo, top)
            for i, rec in enumerate(recs):
                for a, b in rec._paused_spans(lo, top):
                    block[i, a - lo:b - lo] = 0
            energies = frame_energies(block.reshape(len(recs), -1, FRAME, 2).transpose(0, 3, 1, 2))  # (n, 2, frames)
            for i, rec in enumerate(recs):
                rec._consume(block[i], lo, top, energies[i])
            lo = top

    def _finish(self, rec: CallRecording) -> dict[str, Any]:
        """Worker: the call is over: its last packets, the rest of its audio, the files closed."""
        self._ingest()
        if rec in self._live:
            if rec.end is not None and rec.end > rec.written:
                self._write([rec], rec.written, rec.end)
            self._live.remove(rec)
        self.timeline.close_slot(rec.slot)
        return rec._finish()

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
        if self._ticker is not None:
            self._ticker.cancel()
        self.executor.shutdown(wait=True)

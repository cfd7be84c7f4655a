"""Talk-time statistics of a two-party call, computed while recording (sans-IO) or offline from a stereo WAV.

``TalkStats`` is fed one 20 ms frame per party for the same 20 ms of the call (the recorder's timeline keeps
the two aligned; gaps arrive as zeros). Each track goes through its own ``SpeechDetector`` (webrtcvad + a
level floor + start/hangover smoothing, softswitch.media.vad), whose edges are turned into speech segments
and then moved back by the detector's own delays, so that segments line up with the audio:

* a segment starts at the first of the ``start_frames`` voiced frames that made the detector say
  "speech_start" (not at the frame where it said it);
* a segment ends at the end of its last voiced frame (not ``hangover_frames`` later, when "speech_end" came).

So a segment is an utterance: it covers the talker's own pauses shorter than the hangover (300 ms by
default) and nothing after the last voiced frame. Everything else is computed from the segments on a 20 ms
frame grid, in ``result()`` (cheap, may be called at any time; a segment still open counts up to its last
voiced frame so far):

``duration_s``        frames fed (paused ones included) x 20 ms.
``caller_talk_s``,    total length of that party's segments.
``agent_talk_s``
``silence_s``         time neither party talks, outside paused intervals.
``overlap_s``         time both talk; ``overlaps`` is the number of separate both-talking stretches.
``interruptions``     ``{"caller": n, "agent": n}``: X interrupts Y when a segment of X starts while a segment
                      of Y is already running (Y started at least one frame earlier) and the two then talk
                      together for at least ``interrupt_min_s`` (default 0.5 s). Short overlaps at a turn
                      change (X starts as Y says its last syllable) and brief backchannels are overlaps
                      but not interruptions. Counted at most once per segment of X.
``talk_ratio``        the agent's share of the talk: agent_talk / (caller_talk + agent_talk); None when
                      nobody talked (1.0 = only the agent talked).
``longest_monologue_s`` ``{"caller": s, "agent": s}``: the longest uninterrupted stretch in which that party
                      talks and the other does not (any overlap, pause or gap between segments ends it).
``longest_silence_s`` the longest stretch in which neither party talks (paused time excluded: a pause
                      splits a silence in two).
``agent_first_word_s`` start of the agent's first segment, from the start of the recording; None if the
                      agent never spoke.
``paused_s``, ``paused``  total and ``[[start, end], ...]`` of the intervals marked by ``pause()``/``resume()``:
                      the recorder writes silence for them; they count as neither talk nor silence, and an
                      utterance running when the pause starts ends there.
``segments``          ``{"caller": [[start, end], ...], "agent": [...]}``.

All times are seconds rounded to the millisecond.

Cost: two ``webrtcvad`` calls and a little bookkeeping per frame pair, ~8 µs measured (test_cost_per_frame_pair
prints it): 500 calls are 25,000 frame pairs/s, ~20 % of a core. Frames fed while paused skip the VAD.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from softswitch.media.vad import FRAME_MS, SPEECH_END, SPEECH_START, SpeechDetector
from softswitch.recorder.wav import read_wav

__all__ = ["PARTIES", "RecordingFileError", "TalkStats", "frame_energies", "read_recording", "stats_for_wav"]

PARTIES = ("caller", "agent")  # left and right channel of a recording
VAD_RATES = (8000, 16000, 32000, 48000)  # what webrtcvad (so SpeechDetector) takes as is
DEFAULT_MIN_LEVEL_DBFS = -45.0  # see TalkStats


class RecordingFileError(ValueError):
    """A recording that cannot be analysed (missing, not a WAV, mono, odd rate); the message names the file.

    Not ``softswitch.recorder.wav.RecordingError`` (an OSError of the writer): this one is about input."""


class _Track:
    """One party: its detector and the segments it produced, as frame indexes [start, end)."""

    __slots__ = ("detector", "segments", "open_start", "last_voiced", "_settings")

    def __init__(self, settings: dict[str, Any]) -> None:
        self._settings = settings
        self.detector = SpeechDetector(**settings)
        self.segments: list[tuple[int, int]] = []
        self.open_start: int | None = None  # start frame of the segment in progress
        self.last_voiced = -1  # index of the last frame the detector judged voiced

    def feed_many(self, index: int, frames: np.ndarray, energies: np.ndarray) -> None:
        """Frames ``index``, ``index + 1``... of this party (shape (k, frame_samples) int16)."""
        events, last = self.detector.feed_many(frames, energies)
        for at, event, voiced in events:
            if voiced >= 0:
                self.last_voiced = index + voiced
            if event == SPEECH_START:
                self.open_start = index + at - self.detector.start_frames + 1
            elif event == SPEECH_END and self.open_start is not None:
                self.segments.append((self.open_start, self.last_voiced + 1))
                self.open_start = None
        if last >= 0:
            self.last_voiced = index + last

    def cut(self) -> None:
        """A pause starts: close the utterance in progress at its last voiced frame, forget pending onsets."""
        if self.open_start is not None:
            self.segments.append((self.open_start, self.last_voiced + 1))
            self.open_start = None
        self.detector = SpeechDetector(**self._settings)  # fresh smoothing state after the pause

    def all_segments(self) -> list[tuple[int, int]]:
        if self.open_start is None:
            return self.segments
        return [*self.segments, (self.open_start, self.last_voiced + 1)]


class TalkStats:
    """Streaming talk-time statistics of a caller (left) and agent (right) track; see the module docstring.

    ``detector_settings`` go to each track's ``SpeechDetector`` (aggressiveness, start_frames,
    hangover_frames, min_level_dbfs). The level floor defaults to -45 dBFS rather than the detector's
    -55: after a loud utterance webrtcvad's noise model takes seconds to settle again, and on a line with
    -50 dBFS of hiss it keeps calling that hiss speech meanwhile. Telephone talkers sit at -20..-30 dBFS
    (active level); a talker down at -35 dBFS loses soft word ends (~15 % of the talk time measured).
    """

    def __init__(self, frame_ms: int = FRAME_MS, sample_rate: int = 8000, *, interrupt_min_s: float = 0.5,
                 **detector_settings: Any) -> None:
        if frame_ms != FRAME_MS:
            raise ValueError(f"TalkStats works on {FRAME_MS} ms frames, not {frame_ms}")
        detector_settings.setdefault("min_level_dbfs", DEFAULT_MIN_LEVEL_DBFS)
        detector_settings.setdefault("skip_quiet", True)   # silence costs no webrtcvad call
        settings = dict(detector_settings, sample_rate=sample_rate)
        self.frame_ms = frame_ms
        self.sample_rate = sample_rate
        self.interrupt_min_s = interrupt_min_s
        self._tracks = (_Track(settings), _Track(settings))
        self.frame_samples = self._tracks[0].detector.frame_samples
        self.frames = 0
        self._paused: list[list[int]] = []  # [start, end) frame indexes; end -1 while paused
        self.paused = False

    # --- feeding ---------------------------------------------------------------------------------------

    def feed(self, caller: np.ndarray, agent: np.ndarray) -> None:
        """One 20 ms int16 frame of each party, for the same 20 ms of the call."""
        self.feed_block(np.reshape(caller, (1, -1)), np.reshape(agent, (1, -1)))

    def feed_block(self, caller: np.ndarray, agent: np.ndarray, energies: np.ndarray | None = None) -> None:
        """``k`` frames of each party at once, shape (k, frame_samples) int16 (what the recorder does: one call
        per batch, not per frame); ``energies`` (2, k): each frame's sum of squares, if already computed."""
        k = len(caller)
        for block in (caller, agent):
            if not isinstance(block, np.ndarray) or block.dtype != np.int16 or block.shape != (k, self.frame_samples):
                raise ValueError(f"expected ({k}, {self.frame_samples}) int16 frames, "
                                 f"got {getattr(block, 'dtype', type(block).__name__)} {getattr(block, 'shape', '')}")
        if not self.paused and k:
            if energies is None:
                energies = frame_energies(np.stack([caller, agent]))
            self._tracks[0].feed_many(self.frames, caller, energies[0])
            self._tracks[1].feed_many(self.frames, agent, energies[1])
        self.frames += k

    def pause(self) -> None:
        """Frames from now on are paused (neither talk nor silence) until ``resume()``. Idempotent."""
        if not self.paused:
            self.paused = True
            self._paused.append([self.frames, -1])
            for track in self._tracks:
                track.cut()

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            self._paused[-1][1] = self.frames

    # --- results -----------------------------------------------------------------------------------------

    def _s(self, frames: int) -> float:
        return round(frames * self.frame_ms / 1000, 3)

    def result(self) -> dict[str, Any]:
        n = self.frames
        segs = [track.all_segments() for track in self._tracks]
        talk = [np.zeros(n, bool), np.zeros(n, bool)]
        for mask, track_segs in zip(talk, segs):
            for start, end in track_segs:
                mask[start:end] = True
        paused = np.zeros(n, bool)
        paused_iv = [(start, n if end < 0 else end) for start, end in self._paused]
        for start, end in paused_iv:
            paused[start:end] = True
        caller, agent = talk
        both = caller & agent
        silent = ~caller & ~agent & ~paused
        caller_s, agent_s = (self._s(sum(e - s for s, e in track_segs)) for track_segs in segs)
        total = caller_s + agent_s
        first_agent = segs[1][0][0] if segs[1] else None
        return {
            "duration_s": self._s(n),
            "caller_talk_s": caller_s,
            "agent_talk_s": agent_s,
            "silence_s": self._s(int(silent.sum())),
            "overlap_s": self._s(int(both.sum())),
            "overlaps": len(_runs(both)),
            "interruptions": {party: self._interruptions(segs[i], talk[1 - i]) for i, party in enumerate(PARTIES)},
            "talk_ratio": round(agent_s / total, 3) if total > 0 else None,
            "longest_monologue_s": {"caller": self._s(_longest(caller & ~agent)),
                                    "agent": self._s(_longest(agent & ~caller))},
            "longest_silence_s": self._s(_longest(silent)),
            "agent_first_word_s": None if first_agent is None else self._s(first_agent),
            "paused_s": self._s(int(paused.sum())),
            "paused": [[self._s(s), self._s(e)] for s, e in paused_iv],
            "segments": {party: [[self._s(s), self._s(e)] for s, e in segs[i]] for i, party in enumerate(PARTIES)},
        }

    def _interruptions(self, own: list[tuple[int, int]], other: np.ndarray) -> int:
        """Segments of one party that start inside the other's talk (not on its first frame) and then
        overlap it for at least ``interrupt_min_s``."""
        need = max(1, round(self.interrupt_min_s * 1000 / self.frame_ms))
        count = 0
        for start, end in own:
            if start == 0 or not (other[start] and other[start - 1]):
                continue
            run = other[start:end]
            together = len(run) if run.all() else int(np.argmin(run))  # frames until the other stops
            count += together >= need
        return count


def frame_energies(frames: np.ndarray) -> np.ndarray:
    """Sum of squares of each frame (last axis), exact (int64 -> float64), as ``SpeechDetector.feed`` computes it."""
    x = frames.astype(np.int32)
    return np.einsum("...i,...i->...", x, x, dtype=np.int64).astype(np.float64)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True."""
    if not mask.size:
        return []
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist()))


def _longest(mask: np.ndarray) -> int:
    return max((e - s for s, e in _runs(mask)), default=0)


# --- offline ------------------------------------------------------------------------------------------------

def read_recording(path: Path | str) -> tuple[int, np.ndarray]:
    """``(rate, int16 samples of shape (n, 2))`` of a stereo recording (left = caller, right = agent).

    Read with the recorder's reader (softswitch.recorder.wav.read_wav: PCM of any width, μ-law, A-law).
    Anything unreadable, mono, or at a rate webrtcvad cannot take raises RecordingFileError naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise RecordingFileError(f"{path}: no such file")
    try:
        rate, channels, samples = read_wav(path)
    except RecordingFileError:
        raise
    except Exception as e:  # noqa: BLE001  (whatever the reader raises: one line naming the file)
        text = str(e) if str(path) in str(e) else f"{path}: not a readable WAV recording ({e})"
        raise RecordingFileError(text) from None
    if channels != 2:
        raise RecordingFileError(f"{path}: {channels} channel(s); talk statistics need a stereo recording "
                             f"(left = caller, right = agent)")
    if rate not in VAD_RATES:
        raise RecordingFileError(f"{path}: {rate} Hz; supported rates are {', '.join(map(str, VAD_RATES))} Hz")
    return rate, np.asarray(samples, dtype=np.int16).reshape(-1, 2)


def stats_for_wav(path: Path | str, paused: list[list[float]] | list[tuple[float, float]] | None = None,
                  **settings: Any) -> dict[str, Any]:
    """Talk statistics of a stereo WAV (left = caller, right = agent), as ``TalkStats.result()``.

    Any rate webrtcvad takes (8, 16, 32, 48 kHz) is analysed as is, no resampling; others are an error.
    ``paused``: ``[[start_s, end_s], ...]`` intervals to treat as paused (rounded to 20 ms frames). A
    trailing partial frame (< 20 ms) is ignored.
    """
    rate, samples = read_recording(path)
    stats = TalkStats(sample_rate=rate, **settings)
    step = stats.frame_samples
    marks = sorted((round(float(s) * 1000 / FRAME_MS), round(float(e) * 1000 / FRAME_MS)) for s, e in paused or ())
    pause_at = {s for s, _ in marks}
    resume_at = {e for _, e in marks}
    n = len(samples) // step
    tracks = np.ascontiguousarray(samples[:n * step].T).reshape(2, n, step)
    energies = frame_energies(tracks)
    edges = sorted({0, n, *(i for i in pause_at | resume_at if 0 < i < n)})
    for lo, hi in zip(edges, edges[1:]):   # the same blocks a live recording is fed, cut at pause edges
        if lo in resume_at:
            stats.resume()
        if lo in pause_at:
            stats.pause()
        for at in range(lo, hi, 500):
            end = min(hi, at + 500)
            stats.feed_block(tracks[0, at:end], tracks[1, at:end], energies[:, at:end])
    if n in resume_at:
        stats.resume()
    if n in pause_at:
        stats.pause()
    return stats.result()

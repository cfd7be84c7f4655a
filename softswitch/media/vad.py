"""Speech start/stop events from 20 ms PCM frames, for barge-in and the recorder's talk time.

WebRTC's VAD classifies single frames and flickers on its own: a cough or a click is a voiced frame, a
stop consonant an unvoiced one. The detector therefore wants a run of ``start_frames`` voiced frames
before it says "speech_start" (a short onset delay, fewer false barge-ins) and ``hangover_frames``
unvoiced ones before "speech_end" (so pauses between words do not split an utterance).

WebRTC's model of the background starts unadapted (and stops adapting during digital silence), so the first
few frames of even faint noise come out voiced, and its internal overhang stretches any single voiced
decision to 4-6 frames: more than ``start_frames``. A frame therefore also has to reach ``min_level_dbfs``
(RMS) to count as voiced: line noise and idle hiss sit far below any talker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import _webrtcvad
import numpy as np
import webrtcvad

__all__ = ["FRAME_MS", "SpeechDetector", "talk_time"]

FRAME_MS = 20
_NATIVE_I2 = np.dtype("<i2")   # what webrtcvad reads
SPEECH_START = "speech_start"
SPEECH_END = "speech_end"


@dataclass(eq=False)
class SpeechDetector:
    """Feed it every received 20 ms frame in order; it reports the edges of speech, not its presence."""

    aggressiveness: int = 2  # webrtcvad mode 0 (most permissive) .. 3 (most eager to call it noise)
    start_frames: int = 3
    hangover_frames: int = 15
    sample_rate: int = 8000
    min_level_dbfs: float = -55.0  # quieter frames are never speech, whatever webrtcvad says
    # True: frames under the floor are not shown to webrtcvad at all (they cannot be voiced anyway), so silence
    # costs almost nothing: the recorder's talk statistics, on every recorded call. False: webrtcvad sees every
    # frame and keeps adapting its noise model (barge-in, endpointing: one stream at a time).
    skip_quiet: bool = False
    speaking: bool = field(default=False, init=False)
    voiced_frames: int = field(default=0, init=False)  # frames judged voiced (VAD and level), in or out of speech
    total_frames: int = field(default=0, init=False)
    _run: int = field(default=0, init=False, repr=False)  # consecutive frames arguing for a state change
    _vad: webrtcvad.Vad = field(init=False, repr=False)
    _handle: object = field(init=False, repr=False)
    _process: object = field(init=False, repr=False)
    _min_energy: float = field(init=False, repr=False)  # sum of squares of a frame at min_level_dbfs

    def __post_init__(self) -> None:
        if self.aggressiveness not in (0, 1, 2, 3):
            raise ValueError(f"aggressiveness must be 0..3, not {self.aggressiveness}")
        if self.sample_rate not in (8000, 16000, 32000, 48000):
            raise ValueError(f"webrtcvad cannot take {self.sample_rate} Hz")
        if self.start_frames < 1 or self.hangover_frames < 1:
            raise ValueError("start_frames and hangover_frames must be at least 1")
        self._vad = webrtcvad.Vad(self.aggressiveness)
        self._handle = self._vad._vad            # the C call without Vad.is_speech's Python wrapper
        self._process = _webrtcvad.process
        self._min_energy = self.frame_samples * (32768.0 * 10 ** (self.min_level_dbfs / 20)) ** 2

    @property
    def frame_samples(self) -> int:
        return self.sample_rate * FRAME_MS // 1000

    @property
    def talk_seconds(self) -> float:
        """Voiced time so far: per-frame decisions, not the start/hangover-smoothed ``speaking`` state."""
        return self.voiced_frames * FRAME_MS / 1000

    def feed(self, pcm: np.ndarray) -> str | None:
        """One 20 ms int16 frame; returns "speech_start", "speech_end" or None."""
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.size != self.frame_samples:
            raise ValueError(f"expected {self.frame_samples} int16 samples (20 ms at {self.sample_rate} Hz), "
                             f"got {getattr(pcm, 'dtype', type(pcm).__name__)} x {getattr(pcm, 'size', '?')}")
        x = pcm.astype(np.float64)
        events, _ = self.feed_many(pcm.reshape(1, -1), np.array([float(x @ x)]))
        return events[0][1] if events else None

    def feed_many(self, frames: np.ndarray, energies: np.ndarray) -> tuple[list[tuple[int, str, int]], int]:
        """``k`` frames at once (shape (k, frame_samples) int16, each frame's sum of squares in ``energies``):
        ``([(offset, event, offset of the last voiced frame before it), ...], offset of the last voiced frame)``
        (offsets into the block; -1 = none in it). The same decisions as ``feed`` frame by frame, without a
        Python call per frame (the recorder runs this for every recorded call, both tracks)."""
        k = len(frames)
        energy = energies.tolist()
        events: list[tuple[int, str, int]] = []
        last = -1
        floor = self._min_energy
        skip = self.skip_quiet
        if skip and not self.speaking and self._run == 0 and max(energy, default=0.0) < floor:
            self.total_frames += k   # silence, nobody talking: nothing can happen
            return events, last
        n = self.frame_samples
        size = 2 * n
        buf = memoryview((frames if frames.dtype == _NATIVE_I2 else frames.astype("<i2")).tobytes())
        process, handle, rate = self._process, self._handle, self.sample_rate
        if skip:
            decided = [e >= floor and process(handle, rate, buf[i * size:(i + 1) * size], n)
                       for i, e in enumerate(energy)]
        else:
            decided = [process(handle, rate, buf[i * size:(i + 1) * size], n) and e >= floor
                       for i, e in enumerate(energy)]
        speaking, run = self.speaking, self._run
        self.total_frames += k
        if run == 0 and (all(decided) if speaking else not any(decided)):   # no frame argues for a change
            if speaking:
                self.voiced_frames += k
                last = k - 1
            return events, last
        voiced_count = 0
        need_on, need_off = self.start_frames, self.hangover_frames
        for i, voiced in enumerate(decided):
            if voiced:
                last = i
                voiced_count += 1
            if voiced != speaking:  # this frame argues for the other state
                run += 1
                if run >= (need_off if speaking else need_on):
                    speaking = not speaking
                    run = 0
                    events.append((i, SPEECH_START if speaking else SPEECH_END, last))
            else:
                run = 0
        self.speaking, self._run = speaking, run
        self.voiced_frames += voiced_count
        return events, last


def talk_time(frame_flags: Sequence[bool], frame_ms: int = FRAME_MS) -> float:
    """Seconds of voiced frames in a sequence of per-frame VAD decisions."""
    return sum(1 for f in frame_flags if f) * frame_ms / 1000

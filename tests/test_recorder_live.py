"""The live recorder's worker (no network): packets from fake sources in, WAV + statistics out.

The end-to-end proofs with real phones are in test_recorder_e2e.py; this pins down the worker's bookkeeping:
a recording's timeline from start to close, pauses by position, a source change, slot reuse, and a disk error.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from softswitch.media.g711 import ULAW_DECODE, ulaw_encode
from softswitch.recorder.live import Recorder
from softswitch.recorder.timeline import FRAME, RATE
from softswitch.recorder.wav import read_wav

from test_recorder_timeline import packet


class FakeLeg:
    """A packet source: sends 20 ms μ-law packets of ``signal`` on the recorder's intake, in real time."""

    def __init__(self, said: np.ndarray, heard: np.ndarray, ssrc: int = 7) -> None:
        self.said, self.heard, self.ssrc = said, heard, ssrc
        self.intake = None
        self.ids = (0, 0)
        self.unrecorded = 0

    def record(self, intake, said: int, heard: int) -> None:
        self.intake, self.ids = intake, (said, heard)

    def unrecord(self) -> None:
        self.intake = None
        self.unrecorded += 1

    def send(self, k: int) -> None:
        if self.intake is None:
            return
        now = time.monotonic()
        for sid, sig, ssrc in ((self.ids[0], self.said, self.ssrc), (self.ids[1], self.heard, self.ssrc + 1)):
            pcm = sig[(k * FRAME) % len(sig):][:FRAME]
            self.intake.append((sid, now, packet(k, 1000 + k * FRAME, ulaw_encode(pcm), 0, ssrc)))


def settings(tmp_path: Path, **kw) -> SimpleNamespace:
    rec = SimpleNamespace(dir=str(tmp_path / "rec"), name="{call_id}", format="pcm16", mono_tracks=False,
                          fsync="interval", fsync_interval_s=1.0, retention_days=0, **kw)
    return SimpleNamespace(recording=rec, resolve_path=lambda p: Path(p))


def speech_like(seconds: float, seed: int) -> np.ndarray:
    """Loud noise bursts of 1 s with 1 s gaps of faint noise, made G.711-exact."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    x = rng.standard_normal(n) * 3000
    x[(np.arange(n) // RATE) % 2 == 1] /= 300
    return ULAW_DECODE[np.frombuffer(ulaw_encode(np.clip(x, -32768, 32767).astype(np.int16)), np.uint8)]


async def drive(legs: list[FakeLeg], seconds: float, on_frame=None) -> None:
    start = time.monotonic()
    for k in range(int(seconds * 50)):
        for leg in legs:
            leg.send(k)
        if on_frame is not None:
            on_frame(k)
        await asyncio.sleep(max(0.0, start + (k + 1) * 0.02 - time.monotonic()))


def test_a_recording_from_start_to_close_with_a_pause_and_a_source_change(tmp_path):
    async def main():
        recorder = Recorder(settings(tmp_path), asyncio.get_running_loop())
        said, heard = speech_like(6, 1), speech_like(6, 2)
        first = FakeLeg(said, heard)
        rec = recorder.start("call1", {}, {"call_id": "call1"})
        rec.attach(first)
        second = FakeLeg(said, heard, ssrc=99)      # the same caller, another far end, like a transfer

        def events(k: int) -> None:
            if k == 100:
                assert rec.pause()
            elif k == 150:
                assert rec.resume()
            elif k == 200:
                rec.attach(second)
        await drive([first, second], 6.0, events)
        summary = await recorder.finish("call1")
        assert recorder.stats()["active"] == 0
        await recorder.close()
        return rec, summary, first

    rec, summary, first = asyncio.run(main())
    assert first.unrecorded == 1
    assert "error" not in summary, summary
    rate, channels, samples = read_wav(Path(summary["path"]))
    assert (rate, channels) == (8000, 2)
    assert abs(len(samples) / RATE - summary["duration_s"]) < 0.001
    assert abs(summary["duration_s"] - 6.0) < 0.15, summary["duration_s"]
    (p0, p1), = summary["paused"]
    assert abs((p1 - p0) - 1.0) < 0.05, summary["paused"]
    paused = samples[int(p0 * RATE):int(p1 * RATE)]
    assert not paused.any(), "the paused stretch holds audio"
    assert summary["packets"]["caller"]["received"] >= 295 - 50 - 3   # all but the paused ones' worth, roughly
    assert summary["gap_frames"] == 0 and summary["packets"]["caller"]["late"] == 0
    assert summary["stats"]["paused"] == summary["paused"]
    # talk: the loud seconds (0-1, 2-3, 4-5 of each signal) less what the pause took
    for party in ("caller_talk_s", "agent_talk_s"):
        assert 1.5 <= summary["stats"][party] <= 3.1, summary["stats"]
    json_path = Path(summary["stats_path"])
    assert json_path.exists() and not json_path.with_name("call1.json.part").exists()


def test_slots_are_reused_and_many_recordings_are_written_together(tmp_path):
    async def main():
        recorder = Recorder(settings(tmp_path), asyncio.get_running_loop())
        legs = []
        for i in range(6):
            leg = FakeLeg(speech_like(3, 10 + i), speech_like(3, 20 + i), ssrc=100 * i)
            recorder.start(f"c{i}", {}, {}).attach(leg)
            legs.append(leg)
        await drive(legs, 1.5)
        out = [await recorder.finish(f"c{i}") for i in range(3)]
        again = FakeLeg(speech_like(3, 30), speech_like(3, 31), ssrc=5000)
        rec = recorder.start("late", {}, {})
        assert rec.slot in {r for r in range(3)}                  # a freed slot
        rec.attach(again)
        await drive(legs[3:] + [again], 1.0)
        out += [await recorder.finish(c) for c in ("c3", "c4", "c5", "late")]
        await recorder.close()
        return out

    out = asyncio.run(main())
    for summary in out:
        assert "error" not in summary and summary["gap_frames"] == 0, summary
        _, _, samples = read_wav(Path(summary["path"]))
        assert samples[:, 0].any() and samples[:, 1].any()
    assert abs(out[-1]["duration_s"] - 1.0) < 0.15 and abs(out[0]["duration_s"] - 1.5) < 0.15


def test_a_disk_error_stops_that_recording_not_the_others(tmp_path):
    async def main():
        recorder = Recorder(settings(tmp_path), asyncio.get_running_loop())
        good, bad = FakeLeg(speech_like(2, 1), speech_like(2, 2)), FakeLeg(speech_like(2, 3), speech_like(2, 4))
        recorder.start("good", {}, {}).attach(good)
        broken = recorder.start("bad", {}, {})
        broken.attach(bad)

        def fail(_samples):
            raise OSError(28, "No space left on device")
        broken.writers[0]._write_all = fail           # the disk fills up under this one file
        await drive([good, bad], 1.0)
        result = (await recorder.finish("good"), await recorder.finish("bad"))
        await recorder.close()
        return result

    good, bad = asyncio.run(main())
    assert "error" not in good and abs(good["duration_s"] - 1.0) < 0.15
    assert "No space left" in bad["error"], bad

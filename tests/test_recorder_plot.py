"""Timeline picture of a recording: right size, not blank, waveforms and shading where they belong."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from peers.audio import write_wav
from softswitch.recorder.plot import plot_timeline
from softswitch.recorder.talkstats import RecordingFileError, stats_for_wav

ROOT = Path(__file__).resolve().parent.parent
RATE = 8000


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", head
    return struct.unpack(">II", head[16:24])


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    """10 s: caller bursts 1-4 s, agent 3-6 s (overlap 3-4 s), both silent after; -60 dBFS noise."""
    rng = np.random.default_rng(5)
    tracks = rng.standard_normal((10 * RATE, 2)) * 32768 * 10 ** (-60 / 20)
    tracks[1 * RATE:4 * RATE, 0] = rng.standard_normal(3 * RATE) * 3000
    tracks[3 * RATE:6 * RATE, 1] = rng.standard_normal(3 * RATE) * 3000
    tracks[7 * RATE:8 * RATE] = 0  # paused: the recorder wrote silence
    return write_wav(tmp_path_factory.mktemp("plot") / "call.wav", np.round(tracks).astype(np.int16))


@pytest.mark.parametrize("size", [(1600, 600), (800, 400)])
def test_png_has_the_requested_size_and_is_not_blank(recording, tmp_path, size):
    import matplotlib.image as mpimg

    out = plot_timeline(recording, tmp_path / "t.png", stats=stats_for_wav(recording, paused=[[7, 8]]),
                        width_px=size[0], height_px=size[1])
    assert png_size(out) == size
    img = mpimg.imread(out)[..., :3]
    assert img.shape[:2] == (size[1], size[0])
    assert img.std() > 0.05  # a blank (all white) picture has 0
    # the top panel's waveform: in the caller's talk (1-4 s of 10 s) a column through the panel's middle
    # crosses the caller colour; in its silence (8.5-9.5 s) it does not reach far from the centre line
    width = size[0]
    caller_blue = np.array([0x1f, 0x77, 0xb4]) / 255
    top = img[: size[1] // 2]
    def bluish(x0: float, x1: float) -> int:
        cols = top[:, int(width * x0):int(width * x1)]
        return int((np.abs(cols - caller_blue).sum(axis=2) < 0.15).sum())
    assert bluish(0.2, 0.35) > 10 * max(1, bluish(0.87, 0.93))


def test_stats_computed_when_not_given_and_errors_name_the_file(recording, tmp_path):
    out = plot_timeline(recording, tmp_path / "sub" / "t.png")
    assert png_size(out) == (1600, 600)
    mono = write_wav(tmp_path / "mono.wav", np.zeros(RATE, np.int16))
    with pytest.raises(RecordingFileError, match="mono.wav"):
        plot_timeline(mono, tmp_path / "m.png")
    assert not (tmp_path / "m.png").exists()


def cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    env.pop("DISPLAY", None)
    return subprocess.run([sys.executable, "-m", "softswitch", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=env)


def test_cli_recording_plot(recording, tmp_path):
    out = tmp_path / "timeline.png"
    r = cli("recording", "plot", str(recording), "-o", str(out), "--width", "1200", "--height", "500",
            "--paused", "7-8")
    assert r.returncode == 0, r.stderr
    assert png_size(out) == (1200, 500)
    junk = tmp_path / "junk.wav"
    junk.write_text("not a wav")
    r = cli("recording", "plot", str(junk), "-o", str(tmp_path / "j.png"))
    assert r.returncode == 1 and str(junk) in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "j.png").exists()

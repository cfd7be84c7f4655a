#!/usr/bin/env python3
"""CPU cost of G.711 per 20 ms frame (160 samples): softswitch.media.g711's numpy tables against audioop.

audioop (C, deprecated, removed in Python 3.13) is what the tables replaced, so it is the yardstick: every
terminated stream encodes and decodes one frame per 20 ms, and a transcoding bridge converts one payload per
packet. Each operation runs over ``--frames`` distinct frames of two signals (uniform random int16, and a
voiced-speech-like harmonic mix); timeit picks a loop count of at least 0.2 s, ours and audioop run in
alternation, and the best of ``--repeat`` runs, divided by the number of frames, is the figure. Both sides
get their natural input: ours an int16 array (what the media engine holds), audioop the same samples as bytes.

Prints one JSON object on stdout and rewrites the ``codec_cost`` section of docs/benchmarks.md
(``--no-write`` to leave it alone). Run: ``python bench/codec_cost.py`` (about a minute and a half).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import textwrap
import timeit
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
from harness import DOC, md_table, say, update_doc_section  # noqa: E402
from softswitch.media.g711 import (ALAW_TO_ULAW, ULAW_TO_ALAW, alaw_decode, alaw_encode, ulaw_decode,  # noqa: E402
                                   ulaw_encode)

RATE = 8000
FRAME = 160


@dataclass(frozen=True)
class Result:
    op: str
    signal: str
    ours_us: float
    audioop_us: float | None
    ratio: float | None  # ours / audioop: below 1 means we are cheaper


def load_audioop() -> ModuleType | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for name in ("audioop", "audioop_lts"):
            try:
                return __import__(name)
            except ModuleNotFoundError:
                pass
    return None


def signals(frames: int, seed: int = 1) -> dict[str, np.ndarray]:
    """Two inputs as [frames, 160] int16: white noise over the full range, and a speech-like voiced sound."""
    rng = np.random.default_rng(seed)
    n = frames * FRAME
    t = np.arange(n) / RATE
    f0 = 120 * (1 + 0.08 * np.sin(2 * np.pi * 0.7 * t))  # a wandering pitch
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    harmonics = {1: 0.6, 2: 1.0, 3: 0.8, 5: 0.5, 7: 0.35, 11: 0.25, 17: 0.12, 23: 0.06}  # vowel-ish envelope
    voiced = sum(a * np.sin(k * phase) for k, a in harmonics.items())
    syllables = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 0.5  # ~4 syllables/s with pauses between
    mix = voiced / np.abs(voiced).max() * syllables * 0.3 + rng.normal(0, 0.002, n)  # -10 dBFS peaks, faint hiss
    return {
        "random": rng.integers(-32768, 32768, n, dtype=np.int16).reshape(frames, FRAME),
        "speech-like": np.round(np.clip(mix, -1, 1) * 32767).astype(np.int16).reshape(frames, FRAME),
    }


def per_frame_us(ops: Sequence[tuple[Callable, Sequence]], repeat: int) -> list[float]:
    """Best-of-``repeat`` µs per call of each ``(op, inputs)``, one call per input.

    The ops' runs alternate (ABAB...), so a burst of load from the shared machine hits both sides alike.
    """
    timers = []
    for op, inputs in ops:
        def loop(op: Callable = op, inputs: Sequence = inputs) -> None:
            for x in inputs:
                op(x)
        timer = timeit.Timer(loop)
        timers.append((timer, max(timer.autorange()[0], 1), len(inputs)))
    best = [float("inf")] * len(timers)
    for _ in range(repeat):
        for i, (timer, number, n) in enumerate(timers):
            best[i] = min(best[i], timer.timeit(number) / (number * n) * 1e6)
    return best


def measure(frames: int, repeat: int) -> list[Result]:
    audioop = load_audioop()
    if audioop is None:
        say("audioop not available (Python >= 3.13 without audioop-lts): measuring ours only")
    results = []
    for signal, pcm in signals(frames).items():
        arrays = list(pcm)
        raw = [f.tobytes() for f in arrays]
        ulaw = [ulaw_encode(f) for f in arrays]
        alaw = [alaw_encode(f) for f in arrays]
        a = audioop
        ops: list[tuple[str, Callable, Callable, list, list]] = [
            ("ulaw_encode", ulaw_encode, lambda b: a.lin2ulaw(b, 2), arrays, raw),
            ("ulaw_decode", ulaw_decode, lambda b: a.ulaw2lin(b, 2), ulaw, ulaw),
            ("alaw_encode", alaw_encode, lambda b: a.lin2alaw(b, 2), arrays, raw),
            ("alaw_decode", alaw_decode, lambda b: a.alaw2lin(b, 2), alaw, alaw),
            ("pcmu_to_pcma", lambda b: b.translate(ULAW_TO_ALAW), lambda b: a.lin2alaw(a.ulaw2lin(b, 2), 2),
             ulaw, ulaw),
            ("pcma_to_pcmu", lambda b: b.translate(ALAW_TO_ULAW), lambda b: a.lin2ulaw(a.alaw2lin(b, 2), 2),
             alaw, alaw),
        ]
        for name, ours, theirs, our_in, their_in in ops:
            if a is not None:  # same input, same output: otherwise the comparison means nothing
                got = ours(our_in[0])
                assert (got.tobytes() if isinstance(got, np.ndarray) else got) == theirs(their_in[0]), name
            times = per_frame_us([(ours, our_in)] + ([(theirs, their_in)] if a is not None else []), repeat)
            ours_us, theirs_us = times[0], (times[1] if a is not None else None)
            ratio = round(ours_us / theirs_us, 3) if theirs_us else None
            results.append(Result(name, signal, round(ours_us, 3),
                                  None if theirs_us is None else round(theirs_us, 3), ratio))
            say(f"{signal:12} {name:13} ours {ours_us:7.3f} us   audioop {theirs_us or float('nan'):7.3f} us")
    return results


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def render(report: dict) -> str:
    def us(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"
    rows = [(f"`{r['op']}`", r["signal"], us(r["ours_us"]), us(r["audioop_us"]),
             "-" if r["ratio"] is None else f"**{r['ratio']:.2f}**") for r in report["results"]]
    m = report["machine"]
    note = (f"Method: `timeit`, best of {report['repeat']} alternating runs (ours, audioop) over {report['frames']} "
            f"distinct 160-sample frames per signal; µs per frame including the Python call; ours takes an int16 "
            f"array, audioop bytes; transcoding is one `bytes.translate` for ours, `ulaw2lin`+`lin2alaw` (or the "
            f"reverse) for audioop. Run {report['date']} on {m['cpu']} ({m['cpus']} CPUs), {m['platform']}, "
            f"Python {report['python']}, numpy {report['numpy']}, load average at start "
            f"{' / '.join(f'{x:.2f}' for x in m['loadavg'])}; a shared machine, so read the ratios rather than "
            f"the absolute figures.")
    return "\n".join([
        "## G.711 codec cost per 20 ms frame (`bench/codec_cost.py`)",
        "",
        md_table(["operation", "signal", "ours µs/frame", "audioop µs/frame", "ours / audioop"], rows),
        "",
        textwrap.fill(note, width=110, break_on_hyphens=False),
    ])


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=500, help="distinct 20 ms frames per signal (default 500)")
    ap.add_argument("--repeat", type=int, default=7, help="timeit repeats; the best one counts (default 7)")
    ap.add_argument("--no-write", action="store_true", help="do not update docs/benchmarks.md")
    args = ap.parse_args(argv)
    if args.frames < 1 or args.repeat < 1:
        ap.error("--frames and --repeat must be at least 1")
    results = measure(args.frames, args.repeat)
    report = {
        "benchmark": "codec_cost",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "date": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "frames": args.frames,
        "repeat": args.repeat,
        "machine": {"cpu": cpu_model(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "loadavg": list(os.getloadavg())},
        "results": [asdict(r) for r in results],
    }
    print(json.dumps(report, indent=2))
    if not args.no_write:
        update_doc_section("codec_cost", render(report))
        say(f"updated {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

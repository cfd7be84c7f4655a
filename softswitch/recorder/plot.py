"""Timeline picture of a stereo call recording: both tracks' waveforms, speech segments, overlaps, pauses.

Two stacked panels (caller = left channel on top, agent = right channel below) share one time axis in
seconds. Each panel shows the waveform as a min/max envelope per pixel column (so an hour-long call draws as
fast as a minute), that party's speech segments shaded, the overlaps (both talking) marked in red on both
panels, and paused intervals hatched in grey. The title carries the headline numbers. Rendered with
matplotlib's Agg backend: no display needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from softswitch.recorder.talkstats import read_recording, stats_for_wav

__all__ = ["plot_timeline"]

COLOURS = {"caller": "#1f77b4", "agent": "#2ca02c"}
OVERLAP_COLOUR = "#d62728"
DPI = 100


def plot_timeline(path: Path | str, out: Path | str, stats: dict[str, Any] | None = None,
                  width_px: int = 1600, height_px: int = 600) -> Path:
    """Draw ``path`` (stereo WAV) to the PNG ``out`` of exactly ``width_px`` x ``height_px``; returns ``out``.

    ``stats`` is a ``TalkStats.result()`` for the recording (e.g. the JSON saved beside it, which knows the
    paused intervals); computed from the file when None. RecordingFileError for an unusable file.
    """
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    if width_px < 200 or height_px < 150:
        raise ValueError(f"{width_px}x{height_px} px is too small for a timeline (at least 200x150)")
    rate, samples = read_recording(path)
    if stats is None:
        stats = stats_for_wav(path)
    out = Path(out)
    duration = len(samples) / rate
    overlaps = _intersect(stats["segments"]["caller"], stats["segments"]["agent"])

    fig, axes = plt.subplots(2, 1, sharex=True, figsize=(width_px / DPI, height_px / DPI), dpi=DPI)
    try:
        columns = max(100, width_px)
        for i, (ax, party) in enumerate(zip(axes, ("caller", "agent"))):
            t, lo, hi = _envelope(samples[:, i], rate, columns)
            colour = COLOURS[party]
            for start, end in stats["segments"][party]:
                ax.axvspan(start, end, color=colour, alpha=0.18, lw=0)
            for start, end in overlaps:
                ax.axvspan(start, end, color=OVERLAP_COLOUR, alpha=0.30, lw=0)
            for start, end in stats.get("paused", []):
                ax.axvspan(start, end, facecolor="#dddddd", edgecolor="#888888", hatch="//", lw=0)
            ax.fill_between(t, lo, hi, color=colour, lw=0.6, step="mid")
            ax.plot(t, hi, color=colour, lw=0.5)
            ax.plot(t, lo, color=colour, lw=0.5)
            ax.set_ylim(-1.0, 1.0)
            ax.set_yticks([])
            talk = stats[f"{party}_talk_s"]
            ax.set_ylabel(f"{party}\n{talk:.1f} s", rotation=0, ha="right", va="center", fontsize=10)
            ax.set_xlim(0, max(duration, 0.02))
            ax.grid(axis="x", alpha=0.3)
        small = min(1.0, width_px / 1100)  # narrow pictures: smaller text so the title lines fit
        axes[-1].set_xlabel("time (s)", loc="right")
        axes[0].set_title(_title(Path(path).name, stats), fontsize=10 * small)
        legend = [Patch(color=COLOURS["caller"], alpha=0.3, label="caller speech"),
                  Patch(color=COLOURS["agent"], alpha=0.3, label="agent speech"),
                  Patch(color=OVERLAP_COLOUR, alpha=0.4, label="overlap"),
                  Patch(facecolor="#dddddd", edgecolor="#888888", hatch="//", label="paused")]
        axes[-1].legend(handles=legend, loc="upper left", bbox_to_anchor=(0.0, -0.12), fontsize=8 * small,
                        ncol=4, frameon=False)
        fig.tight_layout()
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=DPI, format="png")  # no bbox_inches="tight": it would change the size
    finally:
        plt.close(fig)
    return out


def _envelope(x: np.ndarray, rate: int, columns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-column min and max of the track (scaled to ±1) and the column centre times."""
    n = len(x)
    if n == 0:
        return np.zeros(1), np.zeros(1), np.zeros(1)
    columns = min(columns, n)
    edges = np.linspace(0, n, columns + 1).astype(np.int64)
    starts = edges[:-1]
    scaled = x.astype(np.float32) / 32768.0
    lo = np.minimum.reduceat(scaled, starts)
    hi = np.maximum.reduceat(scaled, starts)
    t = (starts + np.diff(edges) / 2) / rate
    return t, lo, hi


def _intersect(a: list[list[float]], b: list[list[float]]) -> list[tuple[float, float]]:
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if start < end:
            out.append((start, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def _title(name: str, s: dict[str, Any]) -> str:
    ratio = "-" if s.get("talk_ratio") is None else f"{100 * s['talk_ratio']:.0f} %"
    first = "-" if s.get("agent_first_word_s") is None else f"{s['agent_first_word_s']:.1f} s"
    inter = s.get("interruptions", {})
    paused = f"   paused {s['paused_s']:.1f} s" if s.get("paused_s") else ""
    return (f"{name}   {s['duration_s']:.1f} s   caller talks {s['caller_talk_s']:.1f} s   "
            f"agent talks {s['agent_talk_s']:.1f} s (agent share {ratio})\n"
            f"overlap {s['overlap_s']:.1f} s in {s['overlaps']}   "
            f"interruptions by caller {inter.get('caller', 0)} / by agent {inter.get('agent', 0)}   "
            f"silence {s['silence_s']:.1f} s (longest {s['longest_silence_s']:.1f} s)   "
            f"agent first word {first}{paused}")

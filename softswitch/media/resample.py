"""Rational polyphase resampling with a Kaiser-windowed sinc anti-aliasing filter (numpy only).

Prompts and TTS arrive at 16/22.05/44.1/48 kHz and must become 8 kHz telephone audio. Decimating
without a low-pass folds everything above 4 kHz back into the voice band as audible noise, so the
signal is conceptually upsampled by L (zero stuffing), low-passed and downsampled by M, with
L/M = dst/src reduced by their gcd. The polyphase form only computes the outputs that are kept
and skips the stuffed zeros, so the cost is about ``len(out) * taps / L`` multiply-adds.

The low-pass has its -6 dB cutoff at 0.9 x the lower Nyquist frequency and a transition band from
0.8 to 1.0 x Nyquist, so nothing above the output Nyquist survives (80 dB stop band). This runs
once per prompt load (in a worker thread), never per frame.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

STOPBAND_DB = 80.0
CUTOFF = 0.9        # -6 dB point, as a fraction of min(src, dst) Nyquist
TRANSITION = 0.2    # transition band width, same unit: 0.8 .. 1.0 x Nyquist
_BLOCK = 1 << 20    # elements of the gathered window matrix per matmul (bounds peak memory)


def design_lowpass(up: int, src_rate: int, dst_rate: int) -> np.ndarray:
    """Kaiser-windowed sinc at the upsampled rate ``up * src_rate``, DC gain ``up``.

    The gain of ``up`` makes up for the energy lost by stuffing ``up - 1`` zeros between samples.
    """
    fs = up * src_rate
    nyquist = min(src_rate, dst_rate) / 2
    cutoff = CUTOFF * nyquist / fs                       # cycles per sample
    width = 2 * math.pi * TRANSITION * nyquist / fs      # radians per sample
    beta = 0.1102 * (STOPBAND_DB - 8.7)
    taps = int(math.ceil((STOPBAND_DB - 7.95) / (2.285 * width))) + 1
    taps |= 1                                            # odd: integer group delay
    n = np.arange(taps) - (taps - 1) / 2
    h = 2 * cutoff * np.sinc(2 * cutoff * n) * np.kaiser(taps, beta)
    return h * (up / h.sum())


def resample(x: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """``x`` (1-D, any real dtype) from ``src_rate`` to ``dst_rate`` Hz as float64, same scale.

    The output is time-aligned with the input (the filter delay is compensated) and has
    ``ceil(len(x) * dst_rate / src_rate)`` samples. Converting to int16 (rounding, clipping) is
    left to the caller.
    """
    if src_rate <= 0 or dst_rate <= 0:
        raise ValueError(f"sample rates must be positive (got {src_rate} -> {dst_rate})")
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"resample expects a 1-D signal, got shape {x.shape}")
    g = math.gcd(int(src_rate), int(dst_rate))
    up, down = dst_rate // g, src_rate // g
    if up == down:
        return x.copy()
    n_out = -(-len(x) * up // down)
    if n_out == 0:
        return np.zeros(0)
    h = design_lowpass(up, src_rate, dst_rate)
    delay = (len(h) - 1) // 2
    k = -(-len(h) // up)                                  # taps per phase
    # phases[p, j] = h[p + j*up], reversed so a forward window of x can be dotted with it
    phases = np.zeros((up, k))
    padded_h = np.zeros(up * k)
    padded_h[:len(h)] = h
    phases[:] = padded_h.reshape(k, up).T
    phases = phases[:, ::-1]
    # output m sits at upsampled index n = m*down + delay; it needs x[n//up - k + 1 .. n//up]
    last = ((n_out - 1) * down + delay) // up
    pad_left = k - 1
    pad_right = max(0, last + 1 - len(x))
    xp = np.concatenate((np.zeros(pad_left), x, np.zeros(pad_right)))
    windows = sliding_window_view(xp, k)                  # windows[i] = xp[i : i+k], no copy
    y = np.empty(n_out)
    rows_per_block = max(1, _BLOCK // k)
    for r in range(min(up, n_out)):                       # outputs r, r+up, r+2up... share a phase
        n0 = r * down + delay
        coef = phases[n0 % up]
        m = np.arange(r, n_out, up)
        starts = (m * down + delay) // up                 # == n0 // up + t*down; index of x[..] + pad - (k-1)
        for b in range(0, len(m), rows_per_block):
            sel = slice(b, b + rows_per_block)
            y[m[sel]] = windows[starts[sel]] @ coef
    return y


def to_int16(x: np.ndarray) -> np.ndarray:
    """Round and clip float samples already on the int16 scale."""
    return np.clip(np.rint(x), -32768, 32767).astype(np.int16)

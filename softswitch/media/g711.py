"""G.711 μ-law (PCMU) and A-law (PCMA) through lookup tables.

Every G.711 conversion is a pure function of an 8- or 16-bit value, so all of them are computed once at
import (from the ITU-T segment/bias arithmetic, the same integer steps as the CCITT/Sun reference code
that ``audioop`` also implements) and a frame costs one numpy gather. ``audioop`` itself is not used: it is
deprecated and gone in Python 3.13; the tests use it only as the reference to compare against.

PCM is signed 16-bit linear at 8 kHz. The encoders take ``int16`` arrays only: anything else (floats in
particular) is a caller bug that silent casting would turn into wrap-around noise, so it raises.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

__all__ = [
    "ALAW_DECODE", "ALAW_ENCODE", "ALAW_TO_ULAW", "CODECS", "G711Codec", "ULAW_DECODE", "ULAW_ENCODE",
    "ULAW_TO_ALAW", "alaw_decode", "alaw_encode", "codec_for", "transcode_table", "ulaw_decode", "ulaw_encode",
]

_ULAW_BIAS = 0x84  # 132: shifts every μ-law segment to start at a power of two
_ULAW_CLIP = 8159  # 14-bit magnitude clip; with the bias added it still overflows segment 7 (handled below)


def _frozen(arr: np.ndarray) -> np.ndarray:
    arr.flags.writeable = False
    return arr


_ULAW_SEG_END = _frozen(np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF]))
_ALAW_SEG_END = _frozen(np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF]))


def _all_int16() -> np.ndarray:
    """Every int16 value, laid out so that index ``i`` holds ``np.uint16(i).view(np.int16)``."""
    return np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)


def _build_ulaw_encode() -> np.ndarray:
    pcm = _all_int16() >> 2  # μ-law works on 14 bits; arithmetic shift, as the reference does
    negative = pcm < 0
    mask = np.where(negative, 0x7F, 0xFF)  # μ-law transmits every bit inverted (sign: 1 = positive)
    mag = np.minimum(np.where(negative, -pcm, pcm), _ULAW_CLIP) + (_ULAW_BIAS >> 2)
    seg = np.searchsorted(_ULAW_SEG_END, mag, side="left")  # first segment whose end >= magnitude
    code = (seg << 4) | ((mag >> (seg + 1)) & 0x0F)
    code = np.where(seg >= 8, 0x7F, code)  # the clipped top (8159 + 33 > 0x1FFF) saturates to the largest code
    return _frozen((code ^ mask).astype(np.uint8))


def _build_alaw_encode() -> np.ndarray:
    pcm = _all_int16() >> 3  # A-law works on 13 bits
    negative = pcm < 0
    mask = np.where(negative, 0x55, 0xD5)  # even bits inverted; sign bit 1 = positive
    mag = np.where(negative, -pcm - 1, pcm)  # one's-complement magnitude: no code for -0
    seg = np.searchsorted(_ALAW_SEG_END, mag, side="left")  # 13-bit input never exceeds the last segment
    quant = (mag >> np.maximum(seg, 1)) & 0x0F  # segments 0 and 1 share a step size
    return _frozen((((seg << 4) | quant) ^ mask).astype(np.uint8))


def _build_ulaw_decode() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + _ULAW_BIAS) << ((u & 0x70) >> 4)
    return _frozen(np.where(u & 0x80, _ULAW_BIAS - t, t - _ULAW_BIAS).astype(np.int16))


def _build_alaw_decode() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    seg = (a & 0x70) >> 4
    t = (a & 0x0F) << 4
    t = np.where(seg == 0, t + 8, (t + 0x108) << np.maximum(seg - 1, 0))
    return _frozen(np.where(a & 0x80, t, -t).astype(np.int16))


ULAW_ENCODE: np.ndarray = _build_ulaw_encode()  # [65536] uint8, indexed by pcm.view(np.uint16)
ALAW_ENCODE: np.ndarray = _build_alaw_encode()
ULAW_DECODE: np.ndarray = _build_ulaw_decode()  # [256] int16
ALAW_DECODE: np.ndarray = _build_alaw_decode()

# Byte-for-byte transcoding for the B2BUA bridge: exactly decode-then-encode, without leaving bytes.
ULAW_TO_ALAW: bytes = ALAW_ENCODE[ULAW_DECODE.view(np.uint16)].tobytes()
ALAW_TO_ULAW: bytes = ULAW_ENCODE[ALAW_DECODE.view(np.uint16)].tobytes()


_INT16 = np.dtype(np.int16)


def _index(pcm: np.ndarray) -> np.ndarray:
    if not isinstance(pcm, np.ndarray) or pcm.dtype != _INT16:
        raise TypeError(f"G.711 encodes native int16 PCM, got {getattr(pcm, 'dtype', type(pcm).__name__)}")
    return pcm.view(np.uint16)  # same-size view: any shape or stride; take() keeps the shape, tobytes() C order


# ``table.take(index)`` rather than ``table[index]``: same result, a third less per-call overhead on 160 samples.
def ulaw_decode(data: bytes) -> np.ndarray:
    """μ-law bytes (any bytes-like) to a new int16 array."""
    return ULAW_DECODE.take(np.frombuffer(data, dtype=np.uint8))


def ulaw_encode(pcm: np.ndarray) -> bytes:
    """int16 PCM (any shape, read in C order) to μ-law bytes. Raises TypeError for other dtypes."""
    return ULAW_ENCODE.take(_index(pcm)).tobytes()


def alaw_decode(data: bytes) -> np.ndarray:
    """A-law bytes (any bytes-like) to a new int16 array."""
    return ALAW_DECODE.take(np.frombuffer(data, dtype=np.uint8))


def alaw_encode(pcm: np.ndarray) -> bytes:
    """int16 PCM (any shape, read in C order) to A-law bytes. Raises TypeError for other dtypes."""
    return ALAW_ENCODE.take(_index(pcm)).tobytes()


@dataclass(frozen=True)
class G711Codec:
    """One G.711 law as negotiated in SDP, so streams can hold "the codec" rather than branching on names."""

    name: str  # SDP encoding name: "PCMU" or "PCMA"
    static_pt: int  # RFC 3551 static payload type: 0 or 8
    rate: int = 8000

    def decode(self, data: bytes) -> np.ndarray:
        return ulaw_decode(data) if self.static_pt == 0 else alaw_decode(data)

    def encode(self, pcm: np.ndarray) -> bytes:
        return ulaw_encode(pcm) if self.static_pt == 0 else alaw_encode(pcm)


PCMU = G711Codec("PCMU", 0)
PCMA = G711Codec("PCMA", 8)
CODECS: Mapping[str, G711Codec] = MappingProxyType({"PCMU": PCMU, "PCMA": PCMA})
_TRANSCODE: Mapping[tuple[str, str], bytes] = MappingProxyType({
    ("PCMU", "PCMA"): ULAW_TO_ALAW, ("PCMA", "PCMU"): ALAW_TO_ULAW})


def codec_for(name: str) -> G711Codec | None:
    """The codec for an SDP encoding name (case-insensitive, as RFC 4566 says), None if not G.711."""
    return CODECS.get(name.upper())


def transcode_table(src: str, dst: str) -> bytes | None:
    """The ``bytes.translate`` table from ``src`` to ``dst`` payloads; None when no translation is needed.

    Raises ValueError when either name is not G.711: no byte table can transcode such a leg.
    """
    s, d = src.upper(), dst.upper()
    for n in (s, d):
        if n not in CODECS:
            raise ValueError(f"not a G.711 codec: {n}")
    return None if s == d else _TRANSCODE[(s, d)]

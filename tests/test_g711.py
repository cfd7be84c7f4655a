"""G.711 tables against ``audioop`` (the reference implementation we replaced), over every possible input."""

from __future__ import annotations

import dataclasses
import warnings
from types import ModuleType

import numpy as np
import pytest

from softswitch.media import g711
from softswitch.media.g711 import (ALAW_TO_ULAW, CODECS, ULAW_TO_ALAW, G711Codec, alaw_decode, alaw_encode, codec_for,
                                   transcode_table, ulaw_decode, ulaw_encode)

ALL_PCM = np.arange(65536, dtype=np.uint16).view(np.int16)  # every int16, in table-index order
ALL_BYTES = bytes(range(256))
LAWS = [(ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)]


@pytest.fixture(scope="module")
def audioop() -> ModuleType:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import audioop as module
        except ModuleNotFoundError:
            try:
                import audioop_lts as module  # type: ignore[no-redef]
            except ModuleNotFoundError:
                pytest.fail("the G.711 reference is missing: audioop was removed in Python 3.13; "
                            "install the audioop-lts package to run these tests")
    return module


# --- exactness against the reference -------------------------------------------------------------

def test_ulaw_encode_matches_audioop_for_every_int16(audioop):
    assert ulaw_encode(ALL_PCM) == audioop.lin2ulaw(ALL_PCM.tobytes(), 2)


def test_alaw_encode_matches_audioop_for_every_int16(audioop):
    assert alaw_encode(ALL_PCM) == audioop.lin2alaw(ALL_PCM.tobytes(), 2)


def test_ulaw_decode_matches_audioop_for_every_byte(audioop):
    out = ulaw_decode(ALL_BYTES)
    assert out.dtype == np.int16 and out.tobytes() == audioop.ulaw2lin(ALL_BYTES, 2)


def test_alaw_decode_matches_audioop_for_every_byte(audioop):
    out = alaw_decode(ALL_BYTES)
    assert out.dtype == np.int16 and out.tobytes() == audioop.alaw2lin(ALL_BYTES, 2)


def test_translate_tables_equal_audioop_decode_then_encode(audioop):
    assert len(ULAW_TO_ALAW) == len(ALAW_TO_ULAW) == 256
    assert ALL_BYTES.translate(ULAW_TO_ALAW) == audioop.lin2alaw(audioop.ulaw2lin(ALL_BYTES, 2), 2)
    assert ALL_BYTES.translate(ALAW_TO_ULAW) == audioop.lin2ulaw(audioop.alaw2lin(ALL_BYTES, 2), 2)


def test_translate_tables_equal_our_decode_then_encode():
    assert ALL_BYTES.translate(ULAW_TO_ALAW) == alaw_encode(ulaw_decode(ALL_BYTES))
    assert ALL_BYTES.translate(ALAW_TO_ULAW) == ulaw_encode(alaw_decode(ALL_BYTES))


def test_known_code_points():
    """Anchors from the standard, independent of audioop: silence and full scale."""
    assert ulaw_encode(np.array([0, 32767, -32768], np.int16)) == b"\xff\x80\x00"
    assert alaw_encode(np.array([0, 32767, -32768], np.int16)) == b"\xd5\xaa\x2a"
    assert ulaw_decode(b"\xff\x7f\x80\x00").tolist() == [0, 0, 32124, -32124]
    assert alaw_decode(b"\xd5\x55\xaa\x2a").tolist() == [8, -8, 32256, -32256]


# --- properties ------------------------------------------------------------------------------------

def test_ulaw_round_trip_of_codes_is_identity_except_negative_zero():
    back = ulaw_encode(ulaw_decode(ALL_BYTES))
    differs = [b for b in range(256) if back[b] != b]
    assert differs == [0x7F] and back[0x7F] == 0xFF  # -0 and +0 both decode to 0, which encodes as +0


def test_alaw_round_trip_of_codes_is_identity():
    assert alaw_encode(alaw_decode(ALL_BYTES)) == ALL_BYTES


def test_transcode_there_and_back_is_stable():
    """A second hop through the other law changes nothing more: the B2BUA may bridge twice."""
    once = ALL_BYTES.translate(ULAW_TO_ALAW).translate(ALAW_TO_ULAW)
    assert once.translate(ULAW_TO_ALAW).translate(ALAW_TO_ULAW) == once
    assert np.max(np.abs(ulaw_decode(once).astype(int) - ulaw_decode(ALL_BYTES).astype(int))) <= 64


@pytest.mark.parametrize("encode,decode", LAWS, ids=["ulaw", "alaw"])
def test_quantisation_is_monotonic_and_bounded(encode, decode):
    x = np.sort(ALL_PCM)
    y = decode(encode(x)).astype(np.int32)
    assert np.all(np.diff(y) >= 0)
    err = np.abs(y - x.astype(np.int32))
    assert np.all(err <= np.abs(x.astype(np.int32)) // 16 + 8)  # ~ half a step of each segment, plus clipping


@pytest.mark.parametrize("encode,decode", LAWS, ids=["ulaw", "alaw"])
def test_decode_is_odd_symmetric_in_the_sign_bit(encode, decode):
    pos = decode(bytes(b | 0x80 for b in range(128))).astype(int)
    neg = decode(bytes(range(128))).astype(int)
    assert np.array_equal(pos, -neg)


@pytest.mark.parametrize("encode,decode", LAWS, ids=["ulaw", "alaw"])
def test_empty_input(encode, decode):
    assert encode(np.zeros(0, np.int16)) == b""
    out = decode(b"")
    assert out.dtype == np.int16 and out.shape == (0,)


@pytest.mark.parametrize("encode,decode", LAWS, ids=["ulaw", "alaw"])
def test_any_layout_of_int16_and_any_bytes_like(encode, decode):
    pcm = (np.sin(np.arange(640) / 7) * 20000).astype(np.int16)
    assert encode(pcm[::2]) == encode(pcm[::2].copy())  # strided view
    assert encode(pcm.reshape(4, 160)) == encode(pcm)
    data = encode(pcm)
    assert np.array_equal(decode(bytearray(data)), decode(data))
    assert np.array_equal(decode(memoryview(data)[10:20]), decode(data[10:20]))


@pytest.mark.parametrize("encode,decode", LAWS, ids=["ulaw", "alaw"])
@pytest.mark.parametrize("bad", [np.zeros(4, np.float32), np.zeros(4, np.int32), np.zeros(4, ">i2"), [0, 1, 2]])
def test_encode_rejects_anything_but_native_int16(encode, decode, bad):
    with pytest.raises(TypeError):
        encode(bad)


def test_tables_are_read_only_and_decode_returns_a_copy():
    for table in (g711.ULAW_ENCODE, g711.ALAW_ENCODE, g711.ULAW_DECODE, g711.ALAW_DECODE):
        assert not table.flags.writeable
        with pytest.raises(ValueError):
            table[0] = 1
    assert g711.ULAW_ENCODE.shape == (65536,) and g711.ULAW_DECODE.shape == (256,)
    out = ulaw_decode(b"\x00\x01")
    out[0] = 1  # the caller owns it
    assert g711.ULAW_DECODE[0] == -32124


# --- codec objects ---------------------------------------------------------------------------------

def test_codecs_registry():
    assert dict(CODECS) == {"PCMU": G711Codec("PCMU", 0), "PCMA": G711Codec("PCMA", 8)}
    assert all(c.rate == 8000 for c in CODECS.values())
    with pytest.raises(TypeError):
        CODECS["G722"] = G711Codec("G722", 9)  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        CODECS["PCMU"].static_pt = 8  # type: ignore[misc]


def test_codec_for_is_case_insensitive():
    assert codec_for("pcmu") is CODECS["PCMU"] and codec_for("Pcma") is CODECS["PCMA"]
    assert codec_for("G729") is None and codec_for("") is None


def test_codec_objects_use_their_own_law():
    pcm = (np.sin(np.arange(160) / 3) * 9000).astype(np.int16)
    pcmu, pcma = CODECS["PCMU"], CODECS["PCMA"]
    assert pcmu.encode(pcm) == ulaw_encode(pcm) != pcma.encode(pcm) == alaw_encode(pcm)
    assert np.array_equal(pcmu.decode(pcmu.encode(pcm)), ulaw_decode(ulaw_encode(pcm)))
    assert np.array_equal(pcma.decode(pcma.encode(pcm)), alaw_decode(alaw_encode(pcm)))


def test_transcode_table():
    assert transcode_table("PCMU", "pcma") is ULAW_TO_ALAW
    assert transcode_table("pcma", "PCMU") is ALAW_TO_ULAW
    assert transcode_table("PCMU", "pcmu") is None and transcode_table("PCMA", "PCMA") is None
    with pytest.raises(ValueError):
        transcode_table("PCMU", "G729")

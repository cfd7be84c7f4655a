"""Call-progress tones: parsing indications.conf strings, cadence timing, spectra, clicks, countries."""

from __future__ import annotations

import numpy as np
import pytest

from softswitch.media.players import FRAME
from softswitch.media.tones import (COUNTRY_TONES, Segment, ToneCache, ToneSource, ToneSpec, parse_tone,
                                    render_tone, tone_source, tone_string)

RATE = 8000
NAMES = ("dial", "ringback", "busy", "congestion", "callwaiting", "beep")
AMP_13 = 32767 * 10 ** (-13 / 20)


def play(source, n_frames: int) -> np.ndarray:
    out = []
    for _ in range(n_frames):
        f = source.read()
        if f is None:
            break
        assert f.dtype == np.int16 and f.shape == (FRAME,)
        out.append(f)
    return np.concatenate(out) if out else np.zeros(0, np.int16)


def on_mask(x: np.ndarray, min_gap: int = 40) -> np.ndarray:
    """Per-sample tone on/off: silence is a run of >= 5 ms of exact zeros (what the renderer emits
    between bursts); isolated zeros are zero crossings. RMS envelopes would trip over the beating
    of dual tones such as 440+480 Hz."""
    silent = x == 0
    on = np.ones(len(x), dtype=bool)
    for is_silent, start, length in _runs(silent):
        if is_silent and length >= min_gap:
            on[start:start + length] = False
    return on


def _runs(mask: np.ndarray) -> list[tuple[bool, int, int]]:
    edges = np.flatnonzero(np.diff(mask.astype(np.int8))) + 1
    bounds = np.concatenate(([0], edges, [len(mask)]))
    return [(bool(mask[a]), int(a), int(b - a)) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def runs(mask: np.ndarray) -> list[tuple[bool, int]]:
    """Run-length encoding: [(on, length_in_samples), ...]."""
    return [(v, n) for v, _, n in _runs(mask)]


def on_bursts(x: np.ndarray) -> list[np.ndarray]:
    return [x[a:a + n] for v, a, n in _runs(on_mask(x)) if v]


def peaks(x: np.ndarray, count: int) -> list[float]:
    """The ``count`` strongest spectral peaks in Hz (FFT zero-padded to 1 Hz bins)."""
    x = np.asarray(x, dtype=np.float64)
    n = max(RATE, len(x))
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)), n))
    found: list[float] = []
    for _ in range(count):
        k = int(np.argmax(spec))
        found.append(k * RATE / n)
        spec[max(0, k - 10): k + 11] = 0
    return sorted(found)


def edge_clicks(x: np.ndarray, amp: float) -> list[str]:
    """Problems at tone on/off edges: a loud sample right next to silence is a click."""
    problems = []
    for is_on, start, length in _runs(on_mask(x)):
        if not is_on:
            continue
        first, last = int(x[start]), int(x[start + length - 1])
        if start > 0 and abs(first) > 0.1 * amp:
            problems.append(f"sample {start}: tone starts at {first}")
        if start + length < len(x) and abs(last) > 0.1 * amp:
            problems.append(f"sample {start + length - 1}: tone stops at {last}")
    return problems


def max_step_bound(freqs: tuple[int, ...], amp: float) -> float:
    """The largest sample-to-sample change a click-free sum of these sines can have."""
    return amp * sum(2 * np.pi * f / RATE for f in freqs) * 1.02 + 2


# ---------------------------------------------------------------------------- parsing

def test_parse_basic():
    spec = parse_tone("440+480/2000,0/4000")
    assert spec == ToneSpec((Segment((440, 480), 2000), Segment((), 4000)))
    assert not spec.finite


def test_parse_once_continuous_and_spaces():
    spec = parse_tone(" !425/200 , !0/200,425")
    assert spec.segments == (Segment((425,), 200, True), Segment((), 200, True), Segment((425,), None))
    assert parse_tone("!1000/250").finite
    assert parse_tone("350+440").segments == (Segment((350, 440), None),)
    assert parse_tone("0").segments == (Segment((), None),)
    assert parse_tone("350+375+400/100").segments[0].freqs == (350, 375, 400)


@pytest.mark.parametrize("text,pos,why", [
    ("440*480/2000", 3, "modulated"),
    ("440+/100", 4, "frequency"),
    ("440/abc", 4, "duration"),
    ("440/100,", 8, "frequency"),
    ("440/100,,0/100", 8, "frequency"),
    ("5000/100", 0, "above"),
    ("440/0", 4, "duration"),
    ("440/70000", 4, "duration"),
    ("440,0/100", 4, "nothing can follow"),
    ("440/100x", 7, "unexpected"),
    ("440 / 100", 4, "unexpected"),
    ("!!440", 1, "frequency"),
    ("-440", 0, "frequency"),
    ("440.5/100", 3, "unexpected"),
])
def test_parse_errors_name_string_and_position(text, pos, why):
    with pytest.raises(ValueError) as info:
        parse_tone(text)
    msg = str(info.value)
    assert repr(text) in msg and f"position {pos}" in msg and why in msg, msg


@pytest.mark.parametrize("text", ["", "   "])
def test_parse_empty(text):
    with pytest.raises(ValueError, match="empty"):
        parse_tone(text)


# ---------------------------------------------------------------------------- cadence and content

@pytest.mark.parametrize("text,expected_ms", [
    ("440+480/2000,0/4000", [(True, 2000), (False, 4000)]),                          # us ringback
    ("400+450/400,0/200,400+450/400,0/2000", [(True, 400), (False, 200), (True, 400), (False, 2000)]),
    ("425/480,0/480", [(True, 480), (False, 480)]),                                    # de busy
    ("425/200,0/200,425/200,0/200,425/200,0/600", [(True, 200), (False, 200)] * 2 + [(True, 200), (False, 600)]),
    ("425/175,0/175,425/175,0/3500", [(True, 175), (False, 175), (True, 175), (False, 3500)]),
])
def test_cadence_timing(text, expected_ms):
    cycle_ms = sum(ms for _, ms in expected_ms)
    x = play(ToneSource(parse_tone(text)), (3 * cycle_ms) // 20 + 1)
    measured = runs(on_mask(x))
    # compare the full periods in the middle (the first and last run may be cut by the window)
    expected = expected_ms * 3
    for (on, n), (want_on, want_ms) in zip(measured[:-1], expected):
        assert on == want_on
        assert abs(n - want_ms * 8) <= FRAME, f"{text}: {'on' if on else 'off'} {n / 8:.1f} ms, want {want_ms}"
    assert len(measured) >= len(expected) - 1


def test_us_ringback_from_the_table_is_2s_on_4s_off():
    x = play(tone_source("ringback", "us"), 600)  # 12 s
    r = runs(on_mask(x))
    assert [on for on, _ in r[:4]] == [True, False, True, False]
    assert all(abs(n - want) <= FRAME for (_, n), want in zip(r[:4], [16000, 32000, 16000, 32000]))


@pytest.mark.parametrize("name,country,freqs", [
    ("ringback", "us", [440, 480]), ("dial", "us", [350, 440]), ("busy", "us", [480, 620]),
    ("dial", "gb", [350, 440]), ("ringback", "gb", [400, 450]), ("dial", "de", [425]),
    ("dial", "au", [413, 438]), ("dial", "fr", [440]), ("dial", "cn", [450]), ("beep", "us", [1000]),
])
def test_frequency_content(name, country, freqs):
    x = play(tone_source(name, country), 50).astype(np.float64)
    burst = on_bursts(x)[0][:RATE]
    assert len(burst) >= 1600
    found = peaks(burst, len(freqs))
    assert all(abs(f - want) <= 2 for f, want in zip(found, freqs)), f"{name}/{country}: {found}"
    # nothing else of note: the rest of the spectrum is > 40 dB below the tone
    n = max(RATE, len(burst))
    spec = np.abs(np.fft.rfft(burst * np.hanning(len(burst)), n))
    full = spec.max()
    for f in freqs:
        k = int(round(f * n / RATE))
        spec[max(0, k - 15): k + 16] = 0
    assert spec.max() < full * 0.01, f"stray component at {np.argmax(spec) * RATE / n} Hz"


def test_level_is_per_component_dbfs():
    x = play(tone_source("dial", "de"), 50)
    assert abs(np.abs(x).max() - AMP_13) < 0.01 * AMP_13
    quiet = play(tone_source("dial", "de", level_dbfs=-20), 50)
    assert abs(20 * np.log10(np.abs(quiet).max() / np.abs(x).max()) + 7) < 0.1
    with pytest.raises(ValueError):
        ToneSource(parse_tone("425"), level_dbfs=3)


def test_dual_tone_does_not_clip_at_full_scale_request():
    x = play(ToneSource(parse_tone("480+620"), level_dbfs=0.0), 50)
    assert x.max() <= 32767 and x.min() >= -32768  # clipped, not wrapped around
    assert np.abs(x).max() > 30000


# ---------------------------------------------------------------------------- clicks

def test_click_detector_can_fail():
    t = np.arange(2000)
    hard = np.where(t < 1003, AMP_13 * np.sin(2 * np.pi * 425 * t / RATE), 0).astype(np.int16)
    assert edge_clicks(hard, AMP_13)
    assert np.abs(np.diff(hard.astype(int))).max() > max_step_bound((425,), AMP_13)


@pytest.mark.parametrize("text", ["440+480/2000,0/4000", "425/375,0/375,420/375,0/375", "470/400,425/400",
                                  "!425/100,!0/100,!425/100,!0/100,425", "400/33,0/17", "!1000/250"])
def test_no_clicks_at_segment_edges(text):
    spec = parse_tone(text)
    x = play(ToneSource(spec), 500)
    assert not edge_clicks(x, AMP_13)
    freqs = tuple({f for s in spec.segments for f in s.freqs})
    bound = max_step_bound(tuple(sorted(freqs))[-2:], AMP_13)
    assert np.abs(np.diff(x.astype(int))).max() <= bound


def test_continuous_tone_loops_without_a_seam():
    src = tone_source("dial", "us")
    x = play(src, 200)  # 4 s: the 1 s block wraps three times
    assert np.abs(np.diff(x.astype(int))).max() <= max_step_bound((350, 440), AMP_13)
    assert abs(x[:24]).max() < abs(x).max()  # faded in at the very start
    assert src.read() is not None


def test_duration_cut_fades_out():
    src = tone_source("dial", "de", duration_ms=1010)
    x = play(src, 1000)
    assert len(x) == 51 * FRAME  # rounded up to a whole frame, padded with zeros
    assert not x[8080:].any()
    assert abs(int(x[8079])) < 0.1 * AMP_13 and abs(x[7900:8000]).max() > 0.5 * AMP_13
    assert src.read() is None
    assert len(play(tone_source("dial", "de", duration_ms=1000), 1000)) == 50 * FRAME
    assert len(play(tone_source("dial", "de", duration_ms=0), 10)) == 0


# ---------------------------------------------------------------------------- once ('!') semantics

def test_beep_plays_once():
    src = tone_source("beep", "de")
    x = play(src, 1000)
    assert len(x) == 13 * FRAME  # 250 ms, last frame padded
    assert src.read() is None
    r = runs(on_mask(x))
    assert r[0][0] and abs(r[0][1] - 2000) <= FRAME


def test_once_prefix_then_repeat():
    x = play(ToneSource(parse_tone("!1000/100,!0/100,425/200,0/200")), 100)  # 2 s
    r = runs(on_mask(x))
    assert [round(n / 800) for _, n in r[:6]] == [1, 1, 2, 2, 2, 2]
    tones = [peaks(b, 1)[0] for b in on_bursts(x)]
    assert [round(f, -1) for f in tones[:4]] == [1000, 420, 420, 420] and abs(tones[1] - 425) <= 2


def test_once_segment_after_repeating_ones_plays_in_first_pass_only():
    x = play(ToneSource(parse_tone("425/100,0/100,!1000/100,0/100")), 60)  # 1.2 s
    r = runs(on_mask(x))
    assert [round(n / 800) for _, n in r[:8]] == [1, 1, 1, 1, 1, 2, 1, 2]
    tones = [round(peaks(b, 1)[0]) for b in on_bursts(x)]
    assert tones[:4] == [425, 1000, 425, 425]


# ---------------------------------------------------------------------------- country tables

@pytest.mark.parametrize("country", sorted(COUNTRY_TONES))
@pytest.mark.parametrize("name", NAMES)
def test_every_country_tone_parses_and_renders(country, name):
    text = tone_string(name, country)
    spec = parse_tone(text)
    x = play(ToneSource(spec), 500)  # 10 s
    assert len(x) >= 10 * FRAME
    assert np.abs(x).max() > 0.5 * AMP_13
    assert not edge_clicks(x, AMP_13)
    if spec.finite:
        assert len(x) < 500 * FRAME
    else:
        assert len(x) == 500 * FRAME


def test_required_countries_and_names_exist():
    required = {"us", "gb", "uk", "de", "fr", "it", "es", "nl", "au", "jp", "cn", "in", "br", "ru"}
    assert required <= set(COUNTRY_TONES)
    for country in required:
        assert {"dial", "ringback", "busy", "congestion", "callwaiting"} <= set(COUNTRY_TONES[country])
    assert COUNTRY_TONES["uk"] == COUNTRY_TONES["gb"]


def test_table_values_match_indications_conf():
    assert COUNTRY_TONES["us"]["ringback"] == "440+480/2000,0/4000"
    assert COUNTRY_TONES["us"]["busy"] == "480+620/500,0/500"
    assert COUNTRY_TONES["gb"]["ringback"] == "400+450/400,0/200,400+450/400,0/2000"
    assert COUNTRY_TONES["de"]["busy"] == "425/480,0/480"
    assert COUNTRY_TONES["fr"]["ringback"] == "440/1500,0/3500"
    assert COUNTRY_TONES["au"]["dial"] == "413+438"
    assert tone_string("beep", "jp") == "!1000/250"


def test_tables_are_immutable():
    with pytest.raises(TypeError):
        COUNTRY_TONES["xx"] = {}  # type: ignore[index]
    with pytest.raises(TypeError):
        COUNTRY_TONES["us"]["dial"] = "440"  # type: ignore[index]


def test_lookup_errors_and_aliases():
    with pytest.raises(ValueError, match="unknown tone country 'zz'"):
        tone_source("dial", "zz")
    with pytest.raises(ValueError, match="unknown tone 'howler'.*'us'"):
        tone_source("howler", "us")
    assert tone_string("ringback", "UK") == COUNTRY_TONES["gb"]["ringback"]
    assert tone_string("ring", "us") == COUNTRY_TONES["us"]["ringback"]


def test_overrides_take_precedence():
    over = {"ringback": "425/1000,0/4000", "howler": "1400+2060+2450+2600/100,0/100"}
    x = play(tone_source("ringback", "us", over), 300)
    r = runs(on_mask(x))
    assert abs(r[0][1] - 8000) <= FRAME and abs(r[1][1] - 32000) <= FRAME
    assert tone_source("howler", "us", over).read() is not None
    assert tone_string("ringback", "us", {"ring": "425"}) == "425"
    with pytest.raises(ValueError, match="position 3"):
        tone_source("ringback", "us", {"ringback": "425*25"})


def test_frames_are_read_only_and_shared_through_the_cache():
    cache = ToneCache()
    a = tone_source("ringback", "us", cache=cache)
    b = tone_source("ringback", "us", cache=cache)
    fa, fb = a.read(), b.read()
    assert not fa.flags.writeable
    assert np.shares_memory(fa, fb) and len(cache) == 1
    tone_source("ringback", "us", level_dbfs=-20, cache=cache)
    assert len(cache) == 2
    small = ToneCache(max_items=1)
    small.get(parse_tone("425"))
    small.get(parse_tone("440"))
    assert len(small) == 1


def test_render_table_layout():
    table = render_tone(parse_tone("!1000/100,425/30,0/30"))
    assert table.loop_start == 800 and table.loop_len >= FRAME and table.loop_len % 480 == 0
    assert len(table.buf) == table.loop_start + table.loop_len + FRAME
    finite = render_tone(parse_tone("!1000/250"))
    assert finite.loop_len == 0 and len(finite.buf) % FRAME == 0

"""The media engine end to end, against the real switch process and real peers.

* SIPp plays each of its shipped RFC 4733 pcaps (0-9, *, #) into a call to the ``dtmf`` service:
  every digit is detected exactly once (acceptance 1).
* baresip sends a WAV of sox-generated DTMF tone pairs as plain audio: every digit is detected
  in-band, and the service's TTS read-back reaches the phone (acceptance 2; the talk-off half is
  ``test_dtmf_talkoff.py``).
* SIPp sends DTMF as SIP INFO in both body formats; a malformed one gets 400 (acceptance 3).
* baresip calls ``playback``: what it receives is the prompt, without gaps or clicks (acceptance 4).
* baresip (PCMU only) calls baresip (PCMA only) through the B2BUA: the bridge transcodes and each
  side hears the other (acceptance 5).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from peers.audio import espeak, normalised_xcorr_peak, read_wav, rms_dbfs
from peers.baresip import Baresip
from peers.evidence import Evidence
from peers.netutil import LOOPBACK, PortAllocator, free_udp_port
from peers.sipp import PCAP_DIR, Sipp

from conftest import switch_config
from softswitch.media.players import load_wav
from softswitch.config import SHIPPED_PROMPTS

PCAP_DIGITS = {**{str(d): str(d) for d in range(10)}, "star": "*", "pound": "#"}


def media_config(sip_port: int, ports: PortAllocator, **kw) -> str:
    config = switch_config(sip_port=sip_port, rtp=ports.range(40), **kw)
    return config.replace("t1_ms = 500\n", 't1_ms = 500\nauth_algorithms = ["MD5"]\n', 1)


def phone_call(phone: Baresip, uri: str, callee: Baresip | None = None, timeout: float = 30) -> str:
    """Register (both phones), dial ``uri``, wait for the call to end; the CALL_CLOSED reason."""
    try:
        for p in (phone, callee) if callee is not None else (phone,):
            p.start()
            p.wait_registered(10)
        phone.dial(uri)
        phone.wait_event("CALL_ESTABLISHED", 10, fail_on=("CALL_CLOSED",))
        return phone.wait_event("CALL_CLOSED", timeout).param
    finally:
        phone.stop()
        if callee is not None:
            callee.stop()


def report(record_property, name: str, value) -> None:
    record_property(name, value)
    print(f"[measured] {name} = {value}")


def a_leg(cdr: dict) -> dict:
    return next(leg for leg in cdr["legs"] if leg["role"] == "a")


def digits_of(leg: dict, source: str | None = None) -> str:
    return "".join(d["digit"] for d in leg.get("dtmf", []) if source is None or d["source"] == source)


# --- 1. RFC 4733 from SIPp's pcaps ------------------------------------------------------

@pytest.mark.timeout(120)
def test_rfc4733_pcaps_each_digit_detected_once(tmp_path, switch_factory, ports, sip_port):
    missing = [name for name in PCAP_DIGITS if not (PCAP_DIR / f"dtmf_2833_{name}.pcap").is_file()]
    assert not missing, f"SIPp's pcaps are missing from {PCAP_DIR}: {missing} (apt-get install sip-tester)"
    sw = switch_factory(media_config(sip_port, ports), sip_port=sip_port)
    Sipp(tmp_path, "uac_dtmf_pcap.xml", remote=f"{LOOPBACK}:{sip_port}", local_port=free_udp_port(),
         service="dtmf", calls=1, timeout=60, media_port=ports.block(4, even=True)).run().assert_success(1)
    leg = a_leg(sw.wait_cdrs(1)[0])
    assert digits_of(leg) == "1023456789*#", f"{leg['dtmf']}\n{sw.log_tail()}"  # each once, in order
    assert {d["source"] for d in leg["dtmf"]} == {"rfc4733"}, leg["dtmf"]
    assert all(d["duration_ms"] == 280 for d in leg["dtmf"]), leg["dtmf"]  # 2240 samples in every pcap
    assert leg["rtp"]["dtmf_packets"] == 12 * 10, leg["rtp"]  # start + 6 updates + 3 end packets each


# --- 2. in-band tones from baresip ------------------------------------------------------

DTMF_FREQS = {"1": (697, 1209), "2": (697, 1336), "3": (697, 1477), "4": (770, 1209), "5": (770, 1336),
              "6": (770, 1477), "7": (852, 1209), "8": (852, 1336), "9": (852, 1477), "*": (941, 1209),
              "0": (941, 1336), "#": (941, 1477)}


def sox_dtmf_wav(path: Path, digits: str, tone_s: float = 0.12, gap_s: float = 0.1,
                 lead_s: float = 1.0, tail_s: float = 9.0) -> Path:
    """DTMF tone pairs made by sox (-10 dBFS per tone), with silence around them."""
    parts = []
    for i, digit in enumerate(digits):
        low, high = DTMF_FREQS[digit]
        part = path.parent / f"{path.stem}_{i}.wav"
        subprocess.run(["sox", "-n", "-r", "8000", "-c", "1", "-b", "16", str(part), "synth", f"{tone_s}",
                        "sine", str(low), "sine", str(high), "remix", "1,2", "gain", "-n", "-4",
                        "pad", "0", f"{gap_s}"], check=True, capture_output=True)
        parts.append(str(part))
    subprocess.run(["sox", *parts, str(path), "pad", f"{lead_s}", f"{tail_s}"], check=True, capture_output=True)
    return path


@pytest.mark.timeout(90)
def test_inband_dtmf_from_baresip_audio(tmp_path, switch_factory, ports, sip_port, record_property):
    digits = "1234567890*#"
    source = sox_dtmf_wav(tmp_path / "keys.wav", digits)
    ev = Evidence()
    with ev:
        sw = ev.add(switch_factory(media_config(sip_port, ports), sip_port=sip_port))
        phone = ev.add(Baresip(tmp_path / "phone", user="1001", ports=ports, password="1001pass",
                               registrar=f"{LOOPBACK}:{sip_port}", regint=600, audio_source=source))
        closed = phone_call(phone, f"sip:dtmf@{LOOPBACK}:{sip_port}")
        assert "end of file" in closed, f"call ended early: {closed}"
        leg = a_leg(sw.wait_cdrs(1)[0])
        report(record_property, "inband_digits", digits_of(leg))
        assert digits_of(leg) == digits, f"{leg['dtmf']}\n{sw.log_tail()}"
        assert {d["source"] for d in leg["dtmf"]} == {"inband"}
        assert all(80 <= d["duration_ms"] <= 180 for d in leg["dtmf"]), leg["dtmf"]
        # the read-back: speech on the line after the last key (the beep is before the first)
        heard = read_wav(phone.recordings()[1])[1]
        tail = heard[int(8000 * 5.0):]
        level = rms_dbfs(tail)
        report(record_property, "readback_dbfs", round(level, 1))
        assert level > -35.0, f"no read-back heard ({level:.1f} dBFS)"
        assert "dtmf service heard 1234567890*" in sw.log_tail(200)


# --- 3. SIP INFO ------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_sip_info_dtmf(tmp_path, switch_factory, ports, sip_port):
    sw = switch_factory(media_config(sip_port, ports), sip_port=sip_port)
    Sipp(tmp_path, "uac_info_dtmf.xml", remote=f"{LOOPBACK}:{sip_port}", local_port=free_udp_port(),
         service="dtmf", calls=1, timeout=30, media_port=ports.block(4, even=True)).run().assert_success(1)
    leg = a_leg(sw.wait_cdrs(1)[0])
    assert digits_of(leg, "info") == "5*9", leg["dtmf"]
    assert [d["duration_ms"] for d in leg["dtmf"]][:2] == [160, 250], leg["dtmf"]
    assert sw.alive()


# --- 4. playback ------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_playback_reaches_baresip_intact(tmp_path, switch_factory, ports, sip_port, record_property):
    prompt = load_wav(SHIPPED_PROMPTS / "welcome.wav")
    ev = Evidence()
    with ev:
        sw = ev.add(switch_factory(media_config(sip_port, ports), sip_port=sip_port))
        phone = ev.add(Baresip(tmp_path / "phone", user="1001", ports=ports, password="1001pass",
                               registrar=f"{LOOPBACK}:{sip_port}", regint=600, silence_seconds=30))
        phone_call(phone, f"sip:playback@{LOOPBACK}:{sip_port}")
        cdr = sw.wait_cdrs(1)[0]
        assert cdr["hangup_by"] == "callee" and cdr["disposition"] == "ANSWERED", cdr
        rtp = a_leg(cdr)["rtp"]  # our side of the stream, with its RTCP figures, in the CDR
        assert rtp["packets_sent"] >= 5.4 * 50 and rtp["codec"] == "PCMU", rtp
        assert rtp["packets_received"] > 100 and rtp["packets_lost"] == 0 and rtp["jitter_ms"] < 20, rtp
        heard = read_wav(phone.recordings()[1])[1].astype(np.float64)
        peak, lag = normalised_xcorr_peak(prompt, heard, max_lag_samples=16000)
        report(record_property, "playback_xcorr_peak", round(peak, 4))
        report(record_property, "playback_lag_ms", lag / 8)
        assert peak >= 0.9, f"baresip did not hear the prompt: peak {peak:.3f}"
        aligned = heard[lag:lag + prompt.size] if lag >= 0 else heard[:prompt.size]
        assert aligned.size == prompt.size, "the prompt was cut short"
        # no gaps: every 250 ms window of the prompt that has sound is there, at the same lag
        windows = 0
        for start in range(0, prompt.size - 2000, 2000):
            p, h = prompt[start:start + 2000].astype(np.float64), aligned[start:start + 2000]
            if rms_dbfs(p) < -40:
                continue
            windows += 1
            local = float(np.dot(p, h) / np.sqrt(np.dot(p, p) * np.dot(h, h) + 1e-9))
            assert local > 0.9, f"window at {start / 8000:.2f} s: correlation {local:.3f} (gap or slip)"
        assert windows >= 5
        # no clicks: the received audio has no sample-to-sample jump the prompt itself does not have
        prompt_jump = float(np.max(np.abs(np.diff(prompt.astype(np.float64)))))
        heard_jump = float(np.max(np.abs(np.diff(heard))))
        report(record_property, "playback_max_jump", (prompt_jump, heard_jump))
        assert heard_jump <= prompt_jump * 1.1 + 300, f"click: jump {heard_jump} > prompt's {prompt_jump}"


# --- 5. transcoding ---------------------------------------------------------------------

@pytest.mark.timeout(90)
def test_transcoding_pcmu_caller_pcma_callee(tmp_path, switch_factory, ports, sip_port, record_property):
    alice_src = espeak("one two three four five, the quick brown fox jumps over the lazy dog",
                       tmp_path / "alice.wav", pad_seconds=(0.5, 1.0))
    bob_src = espeak("seven eight nine, hello from bob, pack my box with five dozen liquor jugs",
                     tmp_path / "bob.wav", voice="en-us+f3", pad_seconds=(0.3, 3.0))
    ev = Evidence()
    with ev:
        sw = ev.add(switch_factory(media_config(sip_port, ports), sip_port=sip_port))
        reg = f"{LOOPBACK}:{sip_port}"
        alice = ev.add(Baresip(tmp_path / "alice", user="1001", ports=ports, password="1001pass", registrar=reg,
                               regint=600, audio_source=alice_src, codecs=("PCMU/8000/1",)))
        bob = ev.add(Baresip(tmp_path / "bob", user="1002", ports=ports, password="1002pass", registrar=reg,
                             regint=600, audio_source=bob_src, codecs=("PCMA/8000/1",), auto_answer=True))
        phone_call(alice, f"sip:1002@{reg}", callee=bob)
        cdr = sw.wait_cdrs(1)[0]
        legs = {leg["role"]: leg for leg in cdr["legs"]}
        assert legs["a"]["codec"] == "PCMU/8000" and legs["b"]["codec"] == "PCMA/8000", cdr["legs"]
        assert "transcoding PCMU (caller) <-> PCMA (callee)" in sw.log_tail(200)
        for role in ("a", "b"):  # the phones' own RTCP, parsed as it passes: what each says it receives
            rtcp = legs[role]["rtp"]["rtcp"]
            report(record_property, f"rtcp_{role}", {k: rtcp[k] for k in ("reports", "party_fraction_lost",
                                                                          "party_jitter_ms", "rtt_ms")})
            assert rtcp["garbage"] == 0 and (rtcp["packets_in"] == 0 or rtcp["reports"] >= 1), rtcp
            assert rtcp["reports"] == 0 or rtcp["party_fraction_lost"] == 0.0, rtcp
        alice_heard = read_wav(alice.recordings()[1])[1]
        bob_heard = read_wav(bob.recordings()[1])[1]
        a_peak, _ = normalised_xcorr_peak(read_wav(bob_src)[1], alice_heard, 16000)
        b_peak, _ = normalised_xcorr_peak(read_wav(alice_src)[1], bob_heard, 16000)
        report(record_property, "transcode_peaks", (round(a_peak, 4), round(b_peak, 4)))
        assert a_peak > 0.8, f"alice (PCMU) did not hear bob (PCMA): {a_peak:.3f}"
        assert b_peak > 0.8, f"bob (PCMA) did not hear alice (PCMU): {b_peak:.3f}"


# --- hold on a terminated call ----------------------------------------------------------

@pytest.mark.timeout(60)
def test_hold_and_resume_on_a_service(tmp_path, switch_factory, ports, sip_port):
    """The caller holds the music-on-hold service (re-INVITE a=sendonly): we answer recvonly, then sendrecv."""
    sw = switch_factory(media_config(sip_port, ports, extra='\n[[routes]]\nname = "moh"\nexact = "moh"\n'
                                                          'to = "service:moh"\n'), sip_port=sip_port)
    Sipp(tmp_path, "uac_hold.xml", remote=f"{LOOPBACK}:{sip_port}", local_port=free_udp_port(),
         service="moh", calls=1, timeout=30, media_port=ports.block(4, even=True)).run().assert_success(1)
    cdr = sw.wait_cdrs(1)[0]
    assert cdr["disposition"] == "ANSWERED" and cdr["destination"] == "service:moh", cdr

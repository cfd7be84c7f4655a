"""The recorder on live calls: real baresip phones, real speech, the switch killed with SIGKILL.

* A caller and an agent (baresip) each play their own espeak-ng script with known pauses through a
  3-minute recorded call: the stereo WAV's left channel matches the caller's audio, the right the agent's,
  and the two stay aligned to within 20 ms from the first minute to the last (acceptance 1).
* kill -9 of the switch mid-call: after the restart the recording is a valid WAV holding the audio up to
  the kill (within 1 s) and the CDR says it was recovered (acceptance 3).
* Pause/resume through the control socket leaves silence of the paused length, marked in the statistics
  (acceptance 4).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from peers.audio import espeak, read_wav, write_wav
from peers.baresip import Baresip
from peers.evidence import Evidence
from peers.netutil import LOOPBACK, PortAllocator

from conftest import switch_config


def recorded_config(sip_port: int, ports: PortAllocator, recording: str = "") -> str:
    """Calls between users are recorded from the answer (the extensions route: record = "answer")."""
    sock = f"/tmp/ss-{uuid.uuid4().hex[:12]}.sock"
    config = switch_config(sip_port=sip_port, rtp=ports.range(40),
                           extra=f'\n[control]\nsocket = "{sock}"\n\n[recording]\n{recording}\n')
    config = config.replace('regex = "^(1\\\\d{3})$"\nto = "user"', 'regex = "^(1\\\\d{3})$"\nto = "user"\nrecord = "answer"')
    assert 'record = "answer"' in config
    return config.replace("t1_ms = 500\n", 't1_ms = 500\nauth_algorithms = ["MD5"]\n', 1)


def script(tmp_path: Path, name: str, lines: list[tuple[float, str]], total_s: float, voice: str) -> np.ndarray:
    """espeak-ng clips placed at known times (seconds) on a silent track of ``total_s``."""
    track = np.zeros(int(total_s * 8000), np.int16)
    for i, (at, text) in enumerate(lines):
        clip = read_wav(espeak(text, tmp_path / f"{name}{i}.wav", voice=voice))[1]
        start = int(at * 8000)
        track[start:start + len(clip)] = clip[:len(track) - start]
    return track


def phone(tmp_path: Path, ports: PortAllocator, sip_port: int, user: str, source: Path, **kw) -> Baresip:
    return Baresip(tmp_path / f"phone{user}", user=user, ports=ports, password=f"{user}pass",
                   registrar=f"{LOOPBACK}:{sip_port}", regint=600, audio_source=source, **kw)


def connect(tmp_path: Path, ports: PortAllocator, sip_port: int, ev: Evidence, caller_wav: Path,
            agent_wav: Path, number: str = "1002") -> tuple[Baresip, Baresip]:
    """Caller 1001 (playing ``caller_wav``) dials ``number``; agent 1002 (``agent_wav``) auto-answers."""
    agent = ev.add(phone(tmp_path, ports, sip_port, "1002", agent_wav, auto_answer=True, record=False))
    caller = ev.add(phone(tmp_path, ports, sip_port, "1001", caller_wav, record=False))
    agent.start(), caller.start()
    agent.wait_registered(10), caller.wait_registered(10)
    caller.dial(f"sip:{number}@{LOOPBACK}:{sip_port}")
    caller.wait_event("CALL_ESTABLISHED", 10, fail_on=("CALL_CLOSED",))
    return caller, agent


def lag_of(recorded: np.ndarray, source: np.ndarray, at_s: float, window_s: float = 12.0,
           search_s: float = 1.0) -> tuple[int, float]:
    """Where ``source[at_s : at_s + window_s]`` sits in ``recorded`` (lag in samples, recorded later = +),
    and how well it matches (normalised correlation), searched at every sample (the recorder places packets
    by timestamp, so a party's lag can be any number of samples)."""
    a, n, m = int(at_s * 8000), int(window_s * 8000), int(search_s * 8000)
    ref = source[a:a + n].astype(np.float64)
    lo = max(0, a - m)
    seg = recorded[lo:a + n + m].astype(np.float64)
    if len(seg) < n or not ref.any():
        return 0, 0.0
    size = 1 << int(np.ceil(np.log2(len(seg) + n)))
    corr = np.fft.irfft(np.fft.rfft(seg, size) * np.conj(np.fft.rfft(ref, size)), size)[:len(seg) - n + 1]
    energy = np.concatenate([[0.0], np.cumsum(seg ** 2)])
    ref_energy = float(ref @ ref)
    # a near-silent window must not win by its tiny norm (nor by the cumsum's rounding)
    norms = np.sqrt(np.maximum(energy[n:] - energy[:-n], 0.01 * ref_energy) * ref_energy)
    scores = corr / norms
    k = int(np.argmax(scores))
    return lo + k - a, float(scores[k])


def cli(sw, *args: str) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "softswitch", *args, "--config", str(sw.config)],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    return out


def recording_of(cdr: dict) -> dict:
    assert cdr.get("recording"), f"no recording in the CDR: {cdr}"
    return cdr["recording"]


# --- 1. a 3-minute call: both tracks, aligned ---------------------------------------------

@pytest.mark.timeout(400)
def test_three_minute_call_tracks_match_and_stay_aligned(tmp_path, switch_factory, ports, sip_port):
    total = 180.0
    caller_lines = [(t, f"The caller says line number {i + 1}.") for i, t in enumerate(np.arange(2.0, total - 8, 9.0))]
    agent_lines = [(t, f"Agent speaking, answer {i + 1}, thank you.") for i, t in enumerate(np.arange(6.5, total - 8, 9.0))]
    caller_audio = script(tmp_path, "caller", caller_lines, total, "en-us")
    agent_audio = script(tmp_path, "agent", agent_lines, total + 10, "en-gb")
    caller_wav = write_wav(tmp_path / "caller.wav", caller_audio)
    agent_wav = write_wav(tmp_path / "agent.wav", agent_audio)
    ev = Evidence()
    with ev:
        sw = ev.add(switch_factory(recorded_config(sip_port, ports), sip_port=sip_port))
        caller, agent = connect(tmp_path, ports, sip_port, ev, caller_wav, agent_wav)
        closed = caller.wait_event("CALL_CLOSED", total + 30)
        assert "end of file" in closed.param, closed
        rec = recording_of(sw.wait_cdrs(1, timeout=20)[0])
        rate, stereo, channels = read_wav(Path(rec["path"]))
        assert rate == 8000 and channels == 2, (rate, channels)
        left, right = stereo[:, 0], stereo[:, 1]
        assert abs(len(left) / 8000 - total) < 2.0, len(left) / 8000
        lags = {}
        for name, track, source in (("left", left, caller_audio), ("right", right, agent_audio)):
            for when in (10.0, total - 30.0):
                lag, score = lag_of(track, source, when)
                assert score > 0.8, f"{name} track at {when:.0f} s does not match its party ({score:.2f})"
                lags[(name, when)] = lag
        # the wrong party is not on a track
        _, cross = lag_of(left, agent_audio, 10.0)
        assert cross < 0.3, f"the agent's voice is on the caller's track ({cross:.2f})"
        start_offset = lags[("left", 10.0)] - lags[("right", 10.0)]
        end_offset = lags[("left", total - 30)] - lags[("right", total - 30)]
        drift_ms = abs(end_offset - start_offset) / 8
        print(f"[measured] lags {lags}; left-right offset drift over {total - 40:.0f} s: {drift_ms:.1f} ms")
        assert drift_ms <= 20, f"the tracks drifted {drift_ms:.1f} ms apart"
        for name in ("left", "right"):
            own = abs(lags[(name, total - 30)] - lags[(name, 10.0)]) / 8
            assert own <= 20, f"the {name} track drifted {own:.1f} ms against its party's audio"
        stats = rec["stats"]
        assert {"caller_talk_s", "agent_talk_s", "overlap_s", "silence_s"} <= set(stats), stats
        assert stats["caller_talk_s"] > 30 and stats["agent_talk_s"] > 30, stats
        saved = json.loads(Path(rec["stats_path"]).read_text())
        assert saved["recording"]["stats"]["caller_talk_s"] == stats["caller_talk_s"]


# --- 3. kill -9 mid-call: the recording survives ------------------------------------------

@pytest.mark.timeout(120)
def test_kill_9_mid_call_recording_is_repaired_and_the_cdr_says_so(tmp_path, switch_factory, ports, sip_port):
    voice = script(tmp_path, "v", [(t, "Recording survives a crash.") for t in range(1, 60, 4)], 60.0, "en-us")
    wav = write_wav(tmp_path / "voice.wav", voice)
    ev = Evidence()
    with ev:
        sw = ev.add(switch_factory(recorded_config(sip_port, ports, 'fsync = "interval"\nfsync_interval_s = 0.5\n'),
                                   sip_port=sip_port))
        caller, agent = connect(tmp_path, ports, sip_port, ev, wav, wav)
        established = time.monotonic()
        time.sleep(8.0)
        sw.proc.send_signal(signal.SIGKILL)
        killed_after = time.monotonic() - established
        sw.proc.wait(10)
        sw.stop()
        parts = list((tmp_path / "data" / "recordings").rglob("*.wav.part"))
        assert len(parts) == 1, parts
        sw.start()   # the same config, log and database: the repair happens at start
        cdr = sw.wait_cdrs(1, timeout=20)
        assert cdr, "no CDR for the call the switch died in"
        rec = recording_of(cdr[0])
        assert rec.get("recovered") is True and cdr[0]["extra"].get("recovered") is True, cdr[0]
        rate, stereo, channels = read_wav(Path(rec["path"]))
        seconds = len(stereo) / rate
        print(f"[measured] killed {killed_after:.2f} s after the answer; recovered {seconds:.2f} s")
        assert channels == 2 and abs(seconds - killed_after) <= 1.0, (seconds, killed_after)
        assert not list((tmp_path / "data" / "recordings").rglob("*.part")), "a .part file is left"
        # from 3 s on (the first packets of a call meet a jitter buffer still adapting)
        score = max(lag_of(stereo[:, i], voice, 3.0, window_s=3.0)[1] for i in (0, 1))
        assert score > 0.8, f"the recovered recording does not hold the call's audio ({score:.2f})"


# --- 4. pause / resume ---------------------------------------------------------------------

@pytest.mark.timeout(120)
def test_pause_and_resume_leave_marked_silence(tmp_path, switch_factory, ports, sip_port):
    tone = (np.sin(2 * np.pi * 440 * np.arange(8000 * 20) / 8000) * 8000).astype(np.int16)
    wav = write_wav(tmp_path / "tone.wav", tone)      # both parties talk all the time
    ev = Evidence()
    with ev:
        sw = ev.add(switch_factory(recorded_config(sip_port, ports), sip_port=sip_port))
        caller, agent = connect(tmp_path, ports, sip_port, ev, wav, wav)
        time.sleep(4.0)
        calls = json.loads(cli(sw, "recording", "list", "--json").stdout)
        assert len(calls) == 1, calls
        call_id = calls[0]["call_id"]
        assert "recording paused" in cli(sw, "recording", "pause", call_id).stdout
        paused_at = time.monotonic()
        time.sleep(5.0)
        assert "recording resumed" in cli(sw, "recording", "resume", call_id).stdout
        paused_for = time.monotonic() - paused_at
        caller.wait_event("CALL_CLOSED", 30)
        rec = recording_of(sw.wait_cdrs(1, timeout=20)[0])
        assert len(rec["paused"]) == 1, rec["paused"]
        start, end = rec["paused"][0]
        assert abs((end - start) - paused_for) < 0.3, (start, end, paused_for)
        assert rec["stats"]["paused_s"] == pytest.approx(end - start, abs=0.05), rec["stats"]
        stereo = read_wav(Path(rec["path"]))[1]
        a, b = int(start * 8000), int(end * 8000)
        inside = stereo[a + 800:b - 800]
        assert np.abs(inside).max() == 0, "audio inside the paused stretch"
        before, after = stereo[max(0, a - 8000):a - 800], stereo[b + 800:b + 8000]
        for part in (before, after):
            assert np.sqrt(np.mean(part.astype(np.float64) ** 2)) > 500, "no audio around the paused stretch"


# --- errors: a recording that cannot be written never stops the call -----------------------

@pytest.mark.timeout(120)
def test_unwritable_recordings_dir_is_reported_and_the_call_goes_on(tmp_path, switch_factory, ports, sip_port):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the recordings directory should be\n")
    tone = (np.sin(2 * np.pi * 440 * np.arange(8000 * 4) / 8000) * 8000).astype(np.int16)
    wav = write_wav(tmp_path / "tone.wav", tone)
    ev = Evidence()
    with ev:
        sw = ev.add(switch_factory(recorded_config(sip_port, ports, f'dir = "{blocker}"\n'), sip_port=sip_port))
        caller, agent = connect(tmp_path, ports, sip_port, ev, wav, wav)
        caller.wait_event("CALL_CLOSED", 20)   # one side's 4 s of audio ended: the call ran to its end
        cdr = sw.wait_cdrs(1, timeout=20)[0]
        assert cdr["disposition"] == "ANSWERED" and cdr["billsec"] > 3, cdr
        assert "not-a-dir" in cdr["recording"]["error"], cdr["recording"]
        assert "cannot record to" in sw.log_tail(200) and "Traceback" not in sw.log_tail(200)


# --- an IVR node starts the recording, pauses it around a secret, and it goes on after the bridge ---

SECRET_FLOW = """\
name: secret
start: rec
nodes:
  rec: {type: recording, action: start, next: hello}
  hello: {type: say, text: "Hello, this call is recorded.", next: hush}
  hush: {type: recording, action: pause, next: secret}
  secret: {type: say, text: "Please read out your card number now.", next: back}
  back: {type: recording, action: resume, next: bob}
  bob: {type: transfer, to: "extension:1002", failure: bye}
  bye: {type: hangup}
"""


@pytest.mark.timeout(120)
def test_flow_records_pauses_around_a_secret_and_keeps_the_file_across_the_bridge(tmp_path, switch_factory,
                                                                                   ports, sip_port):
    import asyncio

    from softswitch.media.tts import EspeakTts
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "secret.yaml").write_text(SECRET_FLOW)
    tone = (np.sin(2 * np.pi * 1000 * np.arange(8000 * 8) / 8000) * 6000).astype(np.int16)
    agent_wav = write_wav(tmp_path / "agent.wav", tone)
    caller_wav = write_wav(tmp_path / "caller.wav", np.zeros(8000 * 30, np.int16))
    config = recorded_config(sip_port, ports, "beep = true\n").replace(
        "[calls]", f'[ivr]\nflows_dir = "{flows}"\n\n[calls]', 1)
    config += '\n[[routes]]\nname = "secret"\nexact = "300"\nto = "flow:secret"\n'
    ev = Evidence()
    with ev:
        sw = ev.add(switch_factory(config, sip_port=sip_port))
        caller, agent = connect(tmp_path, ports, sip_port, ev, caller_wav, agent_wav, number="300")
        caller.wait_event("CALL_CLOSED", 40)        # the agent's 8 s of tone end the call
        cdr = sw.wait_cdrs(1, timeout=20)[0]
        assert cdr["ivr"]["result"] == "transferred: extension:1002", cdr["ivr"]
        rec = recording_of(cdr)
        assert len(rec["paused"]) == 1, rec
        tts = EspeakTts(tmp_path / "tts")
        hello = asyncio.run(tts.synthesize("Hello, this call is recorded."))
        secret = asyncio.run(tts.synthesize("Please read out your card number now."))
        start, end = rec["paused"][0]
        assert abs((end - start) - len(secret) / 8000) < 0.5, (start, end, len(secret) / 8000)
        stereo = read_wav(Path(rec["path"]))[1]
        heard = stereo[:, 1]                        # right: what the caller heard (prompts, then the agent)
        from test_acd_e2e import best_window_correlation
        # [recording] beep: the switch's 250 ms 1 kHz beep opens the recording, before the greeting
        opening = heard[:int(0.3 * 8000)].astype(np.float64)
        spectrum = np.abs(np.fft.rfft(opening))
        assert abs(np.fft.rfftfreq(len(opening), 1 / 8000)[int(np.argmax(spectrum))] - 1000) < 20, "no beep"
        assert np.sqrt(np.mean(opening ** 2)) > 1000, "no beep"
        assert best_window_correlation(heard, hello) > 0.6, "the recorded greeting is missing"
        assert best_window_correlation(heard, secret) < 0.3, "the paused prompt was recorded"
        after = heard[int(end * 8000) + 8000:]
        spectrum = np.abs(np.fft.rfft(after.astype(np.float64)))
        freqs = np.fft.rfftfreq(len(after), 1 / 8000)
        share = spectrum[(freqs > 950) & (freqs < 1050)].sum() / max(spectrum.sum(), 1.0)
        assert share > 0.3, f"the agent's tone is not on the right track after the bridge ({share:.2f})"


# --- mu-law, per-track mono files ---------------------------------------------------------

@pytest.mark.timeout(120)
def test_ulaw_recording_with_mono_tracks(tmp_path, switch_factory, ports, sip_port):
    from softswitch.recorder.wav import read_wav as read_any
    low = (np.sin(2 * np.pi * 500 * np.arange(8000 * 6) / 8000) * 6000).astype(np.int16)
    high = (np.sin(2 * np.pi * 1500 * np.arange(8000 * 8) / 8000) * 6000).astype(np.int16)
    ev = Evidence()
    with ev:
        sw = ev.add(switch_factory(recorded_config(sip_port, ports, 'format = "ulaw"\nmono_tracks = true\n'),
                                   sip_port=sip_port))
        caller, agent = connect(tmp_path, ports, sip_port, ev, write_wav(tmp_path / "lo.wav", low),
                                write_wav(tmp_path / "hi.wav", high))
        caller.wait_event("CALL_CLOSED", 20)
        rec = recording_of(sw.wait_cdrs(1, timeout=20)[0])
        assert rec["format"] == "ulaw" and len(rec["tracks"]) == 2, rec
        rate, channels, stereo = read_any(Path(rec["path"]))
        assert (rate, channels) == (8000, 2)
        data_bytes = Path(rec["path"]).stat().st_size - 58          # mu-law: one byte per sample
        assert abs(data_bytes - len(stereo) * 2) <= 1, (data_bytes, len(stereo))
        for i, track in enumerate(rec["tracks"]):
            mono = read_any(Path(track))[2][:, 0]
            assert np.array_equal(mono, stereo[:, i]), f"{track} differs from channel {i} of the stereo file"

        def dominant(x: np.ndarray) -> float:
            spectrum = np.abs(np.fft.rfft(x.astype(np.float64)))
            return float(np.fft.rfftfreq(len(x), 1 / 8000)[int(np.argmax(spectrum))])
        mid = slice(8000, 8000 * 4)
        assert abs(dominant(stereo[mid, 0]) - 500) < 20 and abs(dominant(stereo[mid, 1]) - 1500) < 20

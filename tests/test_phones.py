"""End to end with real softphones: baresip (C, libre) and pyVoIP registered on the real switch process.

* baresip registers as 1001 with digest and calls the echo service: what it hears is what it said.
* baresip (1001) and pyVoIP (1002) call each other through the B2BUA, both directions: each side
  hears the *other* side's speech (and not its own).
* two baresip instances register as 1002: a call rings both (forking), one answers, the other is
  CANCELled; the CDR has one 200 and one 487 B-leg.

Audio checks use espeak speech (non-periodic, so a correlation peak means "the same audio").
baresip's sndfile dumps what it sent/received; pyVoIP records what it received. Measured peaks are
printed (run with ``-s`` to see them) and attached to the test report as user properties.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from peers.audio import espeak, normalised_xcorr_peak, read_wav, rms_dbfs
from peers.baresip import Baresip
from peers.evidence import Evidence
from peers.netutil import LOOPBACK, PortAllocator
from peers.pyvoip_phone import PyVoipPhone
from peers.sipp import Sipp

from conftest import SwitchProcess, switch_config

SPEECH_MIN_DBFS = -35.0   # espeak telephone speech is ~-22 dBFS RMS; digital silence is -inf
XCORR_MIN = 0.5           # normalised cross-correlation peak for "this is the audio that was sent"


# --- fixtures ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ports() -> PortAllocator:
    """One allocator for the module so no two peers in these tests share a port."""
    return PortAllocator()


@pytest.fixture
def sip_port(ports: PortAllocator) -> int:
    """The switch's SIP port for one test (why not 5060: other engineers' switches run on this host
    at the same time, and the conftest probe cannot tell their switch from ours).
    SOFTSWITCH_TEST_SIP_PORT=5060 forces the contract port on a machine of one's own."""
    return int(os.environ.get("SOFTSWITCH_TEST_SIP_PORT", "0")) or ports.port()


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two different speakers saying different things (~6 s each, padded)."""
    d = tmp_path_factory.mktemp("speech")
    return {
        "alice": espeak("one two three four five, the quick brown fox jumps over the lazy dog",
                        d / "alice.wav", pad_seconds=(0.5, 1.0)),
        "bob": espeak("seven eight nine, hello from bob, pack my box with five dozen liquor jugs",
                      d / "bob.wav", voice="en-us+f3", pad_seconds=(0.3, 3.0)),
    }


def phone_config(sip_port: int, ports: PortAllocator, **kw) -> str:
    """switch_config() on our port with the digest algorithms these phones can answer.

    Why MD5 only: baresip 1.0.0's libre answers a 401/407 only if *every* challenge in it is MD5
    (any other algorithm aborts the REGISTER/INVITE with ENOSYS: "Register: Function not
    implemented"), so the switch's default SHA-256 + MD5 pair locks it out.
    """
    config = switch_config(sip_port=sip_port, rtp=ports.range(40), **kw)
    marker = "t1_ms = 500\n"
    assert marker in config
    return config.replace(marker, marker + 'auth_algorithms = ["MD5"]\n', 1)


def trust_registered_flow(config: str, user: str) -> str:
    """``auth_calls = false`` for one user: pyVoIP cannot answer a 407 on INVITE."""
    block = f'name = "{user}"\npassword = "{user}pass"\n'
    assert block in config
    return config.replace(block, block + "auth_calls = false\n", 1)


# --- audio measurements -----------------------------------------------------------------

def windowed_xcorr(src: np.ndarray, heard: np.ndarray, win: int = 4000, max_lag: int = 8000,
                   min_dbfs: float = -40.0) -> list[tuple[int, float, int]]:
    """For each voiced ``win``-sample window of ``heard``: the best *locally* normalised correlation
    with ``src`` at any lag in ±max_lag, as ``(start, peak, lag)``.

    Why: pyVoIP's recorder (a 20 ms polling loop) occasionally slips a frame, which moves the lag
    mid-call and drags a whole-signal peak down although every stretch of audio is right. Window by
    window, the right audio scores ≈1.0 and unrelated speech ≈0.2–0.4.
    """
    s = np.asarray(src, np.float64)
    h = np.asarray(heard, np.float64)
    padded = np.concatenate([np.zeros(max_lag), s, np.zeros(max_lag + win)])
    energy = np.concatenate([[0.0], np.cumsum(padded * padded)])
    out = []
    for start in range(0, h.size - win + 1, win):
        w = h[start:start + win] - h[start:start + win].mean()
        if rms_dbfs(w) < min_dbfs:
            continue
        seg = padded[start:start + 2 * max_lag + win]
        corr = np.correlate(seg, w, mode="valid")  # index j <-> lag max_lag - j
        e = energy[start + win:start + win + 2 * max_lag + 1] - energy[start:start + 2 * max_lag + 1]
        r = corr / np.sqrt(np.maximum(e, 1e-9) * np.dot(w, w))
        j = int(np.argmax(r))
        out.append((start, float(r[j]), max_lag - j))
    return out


def median_peak(windows: list[tuple[int, float, int]]) -> float:
    return float(np.median([p for _, p, _ in windows])) if windows else 0.0


def wav(path: Path) -> np.ndarray:
    return read_wav(path)[1]


def report(record_property, name: str, value) -> None:
    record_property(name, value)
    print(f"[measured] {name} = {value}")


def b_legs(cdr: dict) -> list[dict]:
    return [leg for leg in cdr["legs"] if leg["role"] == "b"]


def assert_rtp_flowed(leg: dict) -> None:
    rtp = leg.get("rtp") or {}
    assert rtp.get("packets_in", 0) > 100 and rtp.get("packets_out", 0) > 100, f"RTP counters on {leg}"


# --- 4. baresip + echo ------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_baresip_registers_with_password_and_hears_its_echo(tmp_path, switch_factory, ports, sip_port, speech,
                                                             record_property):
    """Acceptance 4: baresip registers as 1001 with digest, calls ``echo``; the audio it receives
    is the speech it sent (normalised peak ≥ 0.5); the CDR says ANSWERED, service:echo, with RTP
    counters on the A-leg."""
    ev = Evidence()
    with ev:
        sw = ev.add(switch_factory(phone_config(sip_port, ports), sip_port=sip_port))
        alice = ev.add(Baresip(tmp_path / "alice", user="1001", ports=ports, password="1001pass",
                               registrar=f"{LOOPBACK}:{sip_port}", regint=600, audio_source=speech["alice"]))
        try:
            alice.start()
            assert " OK " in f" {alice.wait_registered(10)} "
            assert "registered 1001 at sip:1001" in sw.log_tail(), "the switch did not log the binding"

            alice.dial(f"sip:echo@{LOOPBACK}:{sip_port}")
            alice.wait_event("CALL_ESTABLISHED", 10, fail_on=("CALL_CLOSED",))
            closed = alice.wait_event("CALL_CLOSED", 20)
            # aufile hangs up at the end of the WAV: the call lasted the whole recording.
            assert "end of file" in closed.param, f"call ended early: {closed}"
        finally:
            alice.stop()

        sent, heard = wav(speech["alice"]), wav(alice.recordings()[1])
        level = rms_dbfs(heard)
        peak, lag = normalised_xcorr_peak(sent, heard, max_lag_samples=8000)
        report(record_property, "echo_rx_dbfs", round(level, 1))
        report(record_property, "echo_xcorr_peak", round(peak, 4))
        report(record_property, "echo_xcorr_lag_samples", lag)
        assert level > SPEECH_MIN_DBFS, f"baresip heard (near) silence: {level:.1f} dBFS"
        assert peak >= XCORR_MIN, f"echo is not alice's speech: peak {peak:.3f} at lag {lag}"
        assert abs(lag) < 4000, f"implausible loop delay {lag / 8:.0f} ms"

        cdr = sw.wait_cdrs(1)[0]
        assert cdr["disposition"] == "ANSWERED" and cdr["sip_status"] == 200, cdr
        assert cdr["destination"] == "service:echo" and cdr["source"] == "user:1001", cdr
        assert cdr["direction"] == "local" and cdr["hangup_by"] == "caller", cdr
        a_leg = cdr["legs"][0]
        assert a_leg["role"] == "a" and a_leg["remote"] == f"udp:127.0.0.1:{alice.sip_port}", cdr["legs"]
        assert_rtp_flowed(a_leg)
        # the echo returns what it gets: in and out within a few packets of each other
        assert abs(a_leg["rtp"]["packets_in"] - a_leg["rtp"]["packets_out"]) <= 5, a_leg["rtp"]


# --- 5. baresip <-> pyVoIP through the B2BUA --------------------------------------------

def check_two_way(record_property, tag: str, baresip_heard: np.ndarray, pyvoip_heard: np.ndarray,
                  alice_src: np.ndarray, bob_src: np.ndarray) -> None:
    """baresip (alice) must hear bob's speech, pyVoIP (bob) alice's — and neither its own."""
    b_level, p_level = rms_dbfs(baresip_heard), rms_dbfs(pyvoip_heard)
    b_peak, b_lag = normalised_xcorr_peak(bob_src, baresip_heard, max_lag_samples=16000)
    b_own = median_peak(windowed_xcorr(alice_src, baresip_heard))
    p_windows = windowed_xcorr(alice_src, pyvoip_heard)
    p_median, p_own = median_peak(p_windows), median_peak(windowed_xcorr(bob_src, pyvoip_heard))
    p_peak, p_lag = normalised_xcorr_peak(alice_src, pyvoip_heard, max_lag_samples=16000)
    report(record_property, f"{tag}_baresip_rx_dbfs", round(b_level, 1))
    report(record_property, f"{tag}_baresip_xcorr_peak", round(b_peak, 4))
    report(record_property, f"{tag}_baresip_xcorr_lag", b_lag)
    report(record_property, f"{tag}_pyvoip_rx_dbfs", round(p_level, 1))
    report(record_property, f"{tag}_pyvoip_xcorr_peak", round(p_peak, 4))
    report(record_property, f"{tag}_pyvoip_window_median", round(p_median, 4))
    report(record_property, f"{tag}_own_voice_medians", (round(b_own, 3), round(p_own, 3)))
    assert b_level > SPEECH_MIN_DBFS, f"{tag}: baresip heard (near) silence ({b_level:.1f} dBFS)"
    assert p_level > SPEECH_MIN_DBFS, f"{tag}: pyVoIP heard (near) silence ({p_level:.1f} dBFS)"
    assert b_peak >= XCORR_MIN, f"{tag}: baresip did not hear bob (peak {b_peak:.3f} at lag {b_lag})"
    assert p_median >= 0.8, f"{tag}: pyVoIP did not hear alice (window peaks {p_windows})"
    assert b_own < 0.6 and p_own < 0.6, f"{tag}: a phone hears its own voice (medians {b_own:.2f}, {p_own:.2f})"


@pytest.mark.timeout(60)
def test_baresip_and_pyvoip_call_each_other(tmp_path, switch_factory, ports, sip_port, speech, record_property):
    """Acceptance 5: baresip (1001, digest on REGISTER and INVITE) calls pyVoIP (1002), which answers
    after ~1 s; then pyVoIP (trusted on its registered flow) calls baresip (auto-answer). Both ways
    each phone hears the other's speech; CDRs: internal, ANSWERED, both legs with RTP counters."""
    ev = Evidence()
    with ev:
        config = trust_registered_flow(phone_config(sip_port, ports), "1002")
        sw = ev.add(switch_factory(config, sip_port=sip_port))
        alice = ev.add(Baresip(tmp_path / "alice", user="1001", ports=ports, password="1001pass",
                               registrar=f"{LOOPBACK}:{sip_port}", regint=600, audio_source=speech["alice"],
                               auto_answer=True))
        bob = ev.add(PyVoipPhone(LOOPBACK, sip_port, "1002", "1002pass", sip_port=ports.port(),
                                 rtp_range=ports.range(10), play=speech["bob"], register_timeout=3))
        alice_src, bob_src = wav(speech["alice"]), wav(speech["bob"])
        try:
            alice.start()
            alice.wait_registered(10)
            bob.start()  # raises unless REGISTERED

            # --- baresip -> pyVoIP
            alice.dial(f"sip:1002@{LOOPBACK}:{sip_port}")
            incoming = bob.wait_incoming(10)
            alice.wait_event("CALL_ESTABLISHED", 10, fail_on=("CALL_CLOSED",))
            closed = alice.wait_event("CALL_CLOSED", 20)
            assert "end of file" in closed.param, f"call 1 ended early: {closed}"
            incoming.wait_ended(10)  # the switch passed baresip's BYE on
            incoming.save_received(tmp_path / "pyvoip_heard_1.wav")
            check_two_way(record_property, "call1", wav(alice.recordings()[1]), incoming.received_audio(),
                          alice_src, bob_src)
            first_dump = alice.recordings()

            time.sleep(1.2)  # sndfile names dumps by the second: keep the two calls apart
            # --- pyVoIP -> baresip
            outgoing = bob.call("1001")
            outgoing.wait_answered(10)
            alice.wait_event("CALL_ESTABLISHED", 10, fail_on=("CALL_CLOSED",))
            closed = alice.wait_event("CALL_CLOSED", 20)
            assert "end of file" in closed.param, f"call 2 ended early: {closed}"
            outgoing.wait_ended(10)
            outgoing.save_received(tmp_path / "pyvoip_heard_2.wav")
            assert alice.recordings() != first_dump, "baresip wrote no dump for the second call"
            check_two_way(record_property, "call2", wav(alice.recordings()[1]), outgoing.received_audio(),
                          alice_src, bob_src)
        finally:
            bob.stop()
            alice.stop()

        first, second = sw.wait_cdrs(2)
        for cdr, src, dst, phone_port in ((first, "user:1001", "user:1002", bob.sip_port),
                                          (second, "user:1002", "user:1001", alice.sip_port)):
            assert cdr["disposition"] == "ANSWERED" and cdr["sip_status"] == 200, cdr
            assert cdr["direction"] == "internal", cdr
            assert (cdr["source"], cdr["destination"]) == (src, dst), cdr
            legs = b_legs(cdr)
            assert [(leg["remote"], leg["status"]) for leg in legs] == [(f"udp:127.0.0.1:{phone_port}", 200)], legs
            assert_rtp_flowed(cdr["legs"][0])
            assert_rtp_flowed(legs[0])
        # pyVoIP answers ~1 s after the INVITE: the switch waited for the phone, it did not answer itself
        assert first["answer_ts"] - first["start_ts"] >= 0.8, first
        assert first["hangup_by"] == "caller" and second["hangup_by"] == "callee", (first, second)


# --- 6. Forking to two phones of one user ------------------------------------------------

@pytest.mark.timeout(60)
def test_call_forks_to_every_registered_phone(tmp_path, switch_factory, ports, sip_port, speech, record_property):
    """Two baresip phones register as 1002; baresip 1001 calls 1002: both ring, "mobile" answers,
    "desk" stops ringing (CANCEL → CALL_CLOSED); only the answering phone gets the media; the CDR
    has two B-legs, 200 (mobile) and 487 (desk)."""
    ev = Evidence()
    with ev:
        sw = ev.add(switch_factory(phone_config(sip_port, ports), sip_port=sip_port))
        registrar = f"{LOOPBACK}:{sip_port}"
        desk = ev.add(Baresip(tmp_path / "desk", user="1002", name="desk", ports=ports, password="1002pass",
                              registrar=registrar, regint=600))
        mobile = ev.add(Baresip(tmp_path / "mobile", user="1002", name="mobile", ports=ports, password="1002pass",
                                registrar=registrar, regint=600))
        alice = ev.add(Baresip(tmp_path / "alice", user="1001", ports=ports, password="1001pass",
                               registrar=registrar, regint=600, audio_source=speech["alice"]))
        try:
            for phone in (desk, mobile, alice):
                phone.start()
                phone.wait_registered(10)
            assert sw.log_tail().count("registered 1002 at") == 2, "both 1002 phones should hold a binding"

            alice.dial(f"sip:1002@{registrar}")
            desk.wait_event("CALL_INCOMING", 10)
            mobile.wait_event("CALL_INCOMING", 10)
            time.sleep(0.5)  # both ring for a moment
            mobile.answer()
            mobile.wait_event("CALL_ESTABLISHED", 10, fail_on=("CALL_CLOSED",))
            alice.wait_event("CALL_ESTABLISHED", 10, fail_on=("CALL_CLOSED",))
            stopped = desk.wait_event("CALL_CLOSED", 10, fail_on=("CALL_ESTABLISHED",))
            # libre ends an incoming call that is CANCELled with ECONNRESET
            assert "Connection reset by peer" in stopped.param, f"desk did not get a CANCEL: {stopped}"
            closed = alice.wait_event("CALL_CLOSED", 20)
            assert "end of file" in closed.param, f"call ended early: {closed}"
            mobile.wait_event("CALL_CLOSED", 10)
        finally:
            alice.stop()
            mobile.stop()
            desk.stop()

        heard = wav(mobile.recordings()[1])
        peak, lag = normalised_xcorr_peak(wav(speech["alice"]), heard, max_lag_samples=16000)
        report(record_property, "fork_answering_phone_xcorr_peak", round(peak, 4))
        assert peak >= XCORR_MIN, f"the answering phone did not hear alice (peak {peak:.3f} at lag {lag})"
        assert desk.all_recordings() == [], "the cancelled phone got a call established"

        cdr = sw.wait_cdrs(1)[0]
        assert cdr["disposition"] == "ANSWERED" and cdr["destination"] == "user:1002", cdr
        forks = sorted((leg["status"], leg["remote"]) for leg in b_legs(cdr))
        assert forks == [(200, f"udp:127.0.0.1:{mobile.sip_port}"), (487, f"udp:127.0.0.1:{desk.sip_port}")], forks
        answered = [leg for leg in b_legs(cdr) if leg["status"] == 200][0]
        assert_rtp_flowed(cdr["legs"][0])
        assert_rtp_flowed(answered)

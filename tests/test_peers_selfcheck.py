"""Prove the peer harness against the peers themselves (no softswitch involved).

If these fail, end-to-end tests of the softswitch cannot be trusted. Missing peer
binaries make them FAIL (PeerMissingError names the apt package), never skip.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from peers import PeerMissingError
from peers.audio import espeak, normalised_xcorr_peak, read_wav, rms_dbfs, tone_wav, write_wav
from peers.baresip import Baresip
from peers.netutil import (
    PortAllocator,
    free_port_pair,
    free_tcp_port,
    free_udp_port,
    udp_port_bound,
    wait_tcp,
    wait_udp_sip,
)
from peers.pyvoip_phone import PyVoipPhone
from peers.sipp import Sipp, auth_inf_row, write_inf

LOCAL = "127.0.0.1"


@pytest.fixture(scope="module")
def ports() -> PortAllocator:
    """One allocator for the module so no two peers ever share a port."""
    return PortAllocator()


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """~3 s of telephone-band speech: a non-periodic signal, so correlation means something."""
    path = tmp_path_factory.mktemp("audio") / "speech.wav"
    return espeak("one two three four five, the quick brown fox", path, pad_seconds=(0.3, 0.5))


# --- helpers --------------------------------------------------------------------------

def test_port_allocator_hands_out_distinct_free_ports(ports: PortAllocator) -> None:
    seen: set[int] = set()
    for _ in range(5):
        base, nxt = ports.pair()
        low, high = ports.range(10)
        block = {base, nxt, *range(low, high + 1)}
        assert not block & seen
        seen |= block
    assert low % 2 == 0
    a, b = free_port_pair(even=True)
    assert a % 2 == 0 and b == a + 1
    assert free_udp_port() > 0 and free_tcp_port() > 0


def test_missing_peer_fails_loudly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PeerMissingError, match="apt-get install -y sip-tester"):
        Sipp(tmp_path / "x", "uac")
    with pytest.raises(PeerMissingError, match="apt-get install -y baresip"):
        Baresip(tmp_path / "y")
    with pytest.raises(PeerMissingError, match="apt-get install -y espeak-ng"):
        espeak("hello", tmp_path / "z.wav")


def test_audio_helpers(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    signal = (rng.standard_normal(8000) * 4000).astype(np.int16)
    late = np.concatenate([np.zeros(240, np.int16), signal])
    peak, lag = normalised_xcorr_peak(signal, late, 800)
    assert peak == pytest.approx(1.0, abs=1e-3) and lag == 240
    unrelated = (rng.standard_normal(8000) * 4000).astype(np.int16)
    assert normalised_xcorr_peak(signal, unrelated, 800)[0] < 0.1
    assert normalised_xcorr_peak(signal, np.zeros(8000, np.int16), 800) == (0.0, 0)

    rate, tone, channels = read_wav(tone_wav(tmp_path / "t.wav", 1000, 0.5, amplitude=1.0))
    assert (rate, channels, tone.size) == (8000, 1, 4000)
    assert rms_dbfs(tone) == pytest.approx(-3.0, abs=0.1)
    stereo = np.stack([tone, tone // 2], axis=1)
    assert read_wav(write_wav(tmp_path / "s.wav", stereo))[1].shape == (4000, 2)


def test_espeak_fixture_is_telephone_audio(speech_wav: Path) -> None:
    rate, samples, channels = read_wav(speech_wav)
    assert (rate, channels) == (8000, 1)
    assert samples.size / rate > 1.5
    assert rms_dbfs(samples) > -35.0, "espeak produced (near) silence"


# --- SIPp -----------------------------------------------------------------------------

@pytest.mark.timeout(30)
def test_sipp_builtin_uac_to_uas(tmp_path: Path, ports: PortAllocator) -> None:
    uas_port, uac_port = ports.port(), ports.port()
    uas = Sipp(tmp_path / "uas", "uas", local_port=uas_port, calls=20, timeout=20).start()
    try:
        uac = Sipp(tmp_path / "uac", "uac", remote=f"{LOCAL}:{uas_port}", local_port=uac_port,
                   calls=20, rate=100, timeout=15).run()
        uac.assert_success(calls=20)
        assert (uac.successful_calls, uac.failed_calls, uac.total_calls) == (20, 0, 20)
        assert uac.stat_csv is not None and uac.error_log is None
        uas.wait(timeout=15).assert_success(calls=20)  # uas keeps each call 4 s in timewait
    finally:
        uas.stop()


@pytest.mark.timeout(30)
def test_sipp_cancel_pair(tmp_path: Path, ports: PortAllocator) -> None:
    uas_port, uac_port = ports.port(), ports.port()
    uas = Sipp(tmp_path / "uas", "uas_ring_noanswer.xml", local_port=uas_port, calls=3, timeout=15).start()
    try:
        uac = Sipp(tmp_path / "uac", "uac_cancel.xml", remote=f"{LOCAL}:{uas_port}", local_port=uac_port,
                   calls=3, duration_ms=200, trace_msg=True, timeout=10).run()
        uac.assert_success(calls=3)
        uas.wait(timeout=10).assert_success(calls=3)
        trace = uac.message_log.read_text()
        invite_branch = trace.split("INVITE sip:", 1)[1].split("branch=", 1)[1].split("\n", 1)[0].strip()
        cancel_branch = trace.split("CANCEL sip:", 1)[1].split("branch=", 1)[1].split("\n", 1)[0].strip()
        assert cancel_branch == invite_branch, "CANCEL must reuse the INVITE branch"
    finally:
        uas.stop()


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("callee", "expected"), [("uas_busy.xml", 486), ("uas_503.xml", 503)])
def test_sipp_rejection_expected_status(tmp_path: Path, ports: PortAllocator, callee: str, expected: int) -> None:
    uas_port, uac_port = ports.port(), ports.port()
    uas = Sipp(tmp_path / "uas", callee, local_port=uas_port, calls=1, timeout=10).start()
    try:
        uac = Sipp(tmp_path / "uac", "uac_expect_status.xml", remote=f"{LOCAL}:{uas_port}", local_port=uac_port,
                   calls=1, variables={"expected": expected}, timeout=10).run()
        uac.assert_success(calls=1)
        assert f"final status {expected}" in uac.actions_log_text()
        uas.wait(timeout=10).assert_success(calls=1)
    finally:
        uas.stop()


@pytest.mark.timeout(30)
def test_sipp_wrong_status_fails_readably(tmp_path: Path, ports: PortAllocator) -> None:
    uas_port, uac_port = ports.port(), ports.port()
    uas = Sipp(tmp_path / "uas", "uas_busy.xml", local_port=uas_port, calls=1, timeout=10).start()
    try:
        uac = Sipp(tmp_path / "uac", "uac_expect_status.xml", remote=f"{LOCAL}:{uas_port}", local_port=uac_port,
                   calls=1, variables={"expected": 404, "expected_alt": 480}, timeout=10).run()
        assert (uac.returncode, uac.successful_calls, uac.failed_calls) == (1, 0, 1)
        with pytest.raises(AssertionError) as failure:
            uac.assert_success()
        message = str(failure.value)
        assert "at least one call failed" in message
        assert "final status 486 but expected 404 480" in message
    finally:
        uas.stop()


@pytest.mark.timeout(30)
def test_sipp_callee_hangs_up(tmp_path: Path, ports: PortAllocator) -> None:
    uas_port, uac_port = ports.port(), ports.port()
    uas = Sipp(tmp_path / "uas", "uas_callee_bye.xml", local_port=uas_port, calls=2, duration_ms=200,
               timeout=10).start()
    try:
        uac = Sipp(tmp_path / "uac", "uac_wait_bye.xml", remote=f"{LOCAL}:{uas_port}", local_port=uac_port,
                   calls=2, timeout=10).run()
        uac.assert_success(calls=2)
        uas.wait(timeout=10).assert_success(calls=2)
    finally:
        uas.stop()


@pytest.mark.timeout(30)
def test_sipp_register_auth_against_sipp_registrar(tmp_path: Path, ports: PortAllocator) -> None:
    registrar_port = ports.port()
    registrar = Sipp(tmp_path / "registrar", "uas_registrar_auth.xml", local_port=registrar_port,
                     calls=2, keys={"user": "alice", "password": "s3cret"}, timeout=15).start()
    try:
        good = write_inf(tmp_path / "good.csv", [auth_inf_row("alice", "s3cret")])
        bad = write_inf(tmp_path / "bad.csv", [auth_inf_row("alice", "wrong")])
        Sipp(tmp_path / "ok", "register_auth.xml", remote=f"{LOCAL}:{registrar_port}", local_port=ports.port(),
             calls=1, inf=good, keys={"expires": 300}, timeout=10).run().assert_success(calls=1)
        Sipp(tmp_path / "fail", "register_auth_fail.xml", remote=f"{LOCAL}:{registrar_port}",
             local_port=ports.port(), calls=1, inf=bad, keys={"expires": 300}, timeout=10).run().assert_success(1)
        result = registrar.wait(timeout=10)
        log = result.actions_log_text()
        assert "register user=alice expires=300 valid=true" in log
        assert "register user=alice expires=300 valid=false" in log
    finally:
        registrar.stop()


def test_wait_udp_sip_times_out_on_silence(ports: PortAllocator) -> None:
    port = ports.port()
    assert not udp_port_bound(port)
    with pytest.raises(TimeoutError, match=f"udp:{LOCAL}:{port}"):
        wait_udp_sip(LOCAL, port, timeout=0.5)
    with pytest.raises(TimeoutError):
        wait_tcp(LOCAL, port, timeout=0.3)


# --- baresip --------------------------------------------------------------------------

@pytest.mark.timeout(40)
def test_baresip_direct_call_carries_audio(tmp_path: Path, ports: PortAllocator, speech_wav: Path) -> None:
    b_speech = espeak("seven eight nine, hello from bee", tmp_path / "b_speech.wav", voice="en-us+f3",
                      pad_seconds=(0.2, 6.0))
    a = Baresip(tmp_path / "a", user="a", ports=ports, auto_answer=True, audio_source=speech_wav)
    b = Baresip(tmp_path / "b", user="b", ports=ports, audio_source=b_speech)
    try:
        a.start()
        b.start()
        assert wait_udp_sip(LOCAL, a.sip_port, timeout=5).startswith("SIP/2.0 ")
        b.dial(a.contact_uri)
        b.wait_event("CALL_ESTABLISHED", timeout=10, fail_on=("CALL_CLOSED",))
        a.wait_event("CALL_ESTABLISHED", timeout=10, fail_on=("CALL_CLOSED",))
        # a's source is ~3.5 s of speech; aufile ends the call at end of file
        closed = a.wait_event("CALL_CLOSED", timeout=15)
        assert "end of file" in closed.param
        b.wait_event("CALL_CLOSED", timeout=10)

        _, a_src, _ = read_wav(speech_wav)
        _, b_heard, _ = read_wav(b.recordings()[1])
        peak, lag = normalised_xcorr_peak(a_src, b_heard, max_lag_samples=8000)
        assert peak >= 0.5, f"b did not hear a's audio (peak {peak:.2f} at lag {lag})\n{b.describe()}"

        _, b_src, _ = read_wav(b_speech)
        _, a_heard, _ = read_wav(a.recordings()[1])
        peak_ba, lag_ba = normalised_xcorr_peak(b_src[: a_heard.size], a_heard, max_lag_samples=8000)
        assert peak_ba >= 0.5, f"a did not hear b's audio (peak {peak_ba:.2f} at lag {lag_ba})\n{a.describe()}"
    finally:
        b.stop()
        a.stop()
    assert not a.running and not b.running


@pytest.mark.timeout(40)
def test_baresip_registers_with_digest(tmp_path: Path, ports: PortAllocator) -> None:
    registrar_port = ports.port()
    registrar = Sipp(tmp_path / "registrar", "uas_registrar_auth.xml", local_port=registrar_port,
                     keys={"user": "carol", "password": "pw1"}, timeout=20).start()
    phone = Baresip(tmp_path / "carol", user="carol", ports=ports, password="pw1",
                    registrar=f"{LOCAL}:{registrar_port}", regint=300)
    try:
        phone.start()
        assert "Expires 300s" in phone.wait_registered(timeout=10)
    finally:
        phone.stop(timeout=1.0)  # the SIPp registrar cannot answer the un-REGISTER (same Call-ID)
        result = registrar.stop()
    assert "register user=carol expires=300 valid=true" in result.actions_log_text()


# --- pyVoIP ---------------------------------------------------------------------------

@pytest.mark.timeout(40)
def test_pyvoip_registers_with_digest(tmp_path: Path, ports: PortAllocator) -> None:
    registrar_port = ports.port()
    registrar = Sipp(tmp_path / "registrar", "uas_registrar_auth.xml", local_port=registrar_port,
                     keys={"user": "dave", "password": "pw2"}, timeout=20).start()
    phone = PyVoipPhone(LOCAL, registrar_port, "dave", "pw2", sip_port=ports.port(), rtp_range=ports.range(10),
                        register_timeout=3)
    try:
        phone.start()
        assert phone.status == "REGISTERED"
    finally:
        phone.stop()
        result = registrar.stop()
    assert "register user=dave expires=120 valid=true" in result.actions_log_text()


@pytest.mark.timeout(40)
def test_pyvoip_call_media_through_sipp_echo(tmp_path: Path, ports: PortAllocator, speech_wav: Path) -> None:
    pbx_port = ports.port()
    media_port, _ = ports.pair(even=True)
    pbx = Sipp(tmp_path / "pbx", "uas_register_echo.xml", local_port=pbx_port, duration_ms=4500,
               rtp_echo=True, media_port=media_port, timeout=20).start()
    phone = PyVoipPhone(LOCAL, pbx_port, "erin", "unused", sip_port=ports.port(), rtp_range=ports.range(10),
                        play=speech_wav, register_timeout=3)
    try:
        phone.start()
        call = phone.call("echo", timeout=5)
        call.wait_answered(timeout=5)
        call.wait_ended(timeout=15)  # the SIPp side sends BYE after -d
        heard = call.received_audio()
    finally:
        phone.stop()
        result = pbx.stop()
    call.save_received(tmp_path / "heard.wav")
    _, sent, _ = read_wav(speech_wav)
    peak, lag = normalised_xcorr_peak(sent, heard, max_lag_samples=8000)
    assert peak >= 0.5, f"pyVoIP did not hear its own audio echoed (peak {peak:.2f} at lag {lag})"
    assert result.failed_calls == 0, result.describe()

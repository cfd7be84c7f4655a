"""End to end with SIPp: mid-call re-INVITEs, trunks that authenticate us, caller-ID presentation,
call caps and limits."""

from __future__ import annotations

import re
import time

from conftest import sipp_uac as uac, sipp_uas as uas, switch_config


def test_hold_and_unhold_reinvites_cross_the_b2bua(tmp_path, switch_factory):
    """A sendonly re-INVITE from the caller reaches the callee as sendonly (on the relay's address),
    the callee's recvonly answer comes back; then the same for resuming."""
    sw = switch_factory(switch_config())
    callee = uas(tmp_path, "uas_hold.xml", calls=1).start()
    uac(tmp_path, "uac_hold.xml", calls=1).run().assert_success(1)
    callee.wait(20).assert_success(1)
    cdr = sw.wait_cdrs(1)[0]
    assert cdr["disposition"] == "ANSWERED" and cdr["hangup_by"] == "caller"


def test_trunk_that_challenges_invites(tmp_path, switch_factory):
    """The provider answers 407; the switch retries with the trunk's digest credentials."""
    sw = switch_factory(switch_config(trunk_extra='username = "acme"\npassword = "s3cret"'))
    callee = uas(tmp_path, "uas_auth_invite.xml", calls=1, keys={"user": "acme", "password": "s3cret"}).start()
    uac(tmp_path, calls=1).run().assert_success(1)
    result = callee.wait(20).assert_success(1)
    assert "invite auth valid=true user=acme" in result.actions_log_text()
    assert sw.wait_cdrs(1)[0]["disposition"] == "ANSWERED"


def test_trunk_registration_with_digest(tmp_path, switch_factory):
    """`register = true`: the switch registers with the provider and answers its 401."""
    registrar = uas(tmp_path, "uas_registrar_auth.xml", calls=1,
                    keys={"user": "acme", "password": "s3cret"}).start()
    sw = switch_factory(switch_config(trunk_extra='username = "acme"\npassword = "s3cret"\nregister = true'))
    result = registrar.wait(20).assert_success(1)
    assert "register user=acme expires=600 valid=true" in result.actions_log_text()
    deadline = time.monotonic() + 5
    while "trunk loopback registered" not in sw.log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "trunk loopback registered" in sw.log_path.read_text(), sw.log_tail()


def _invite_received(result) -> str:
    text = result.message_log.read_text() if result.message_log else ""
    m = re.search(r"INVITE sip:.*?\r?\n\r?\n", text, re.S)
    assert m, text[-2000:]
    return m.group(0)


def test_caller_id_rewrite_and_pai(tmp_path, switch_factory):
    switch_factory(switch_config(trunk_extra='caller_id = "5551000"\npai = true'))
    callee = uas(tmp_path, calls=1, trace_msg=True).start()
    uac(tmp_path, calls=1).run().assert_success(1)
    invite = _invite_received(callee.wait(20).assert_success(1))
    assert re.search(r"^From: <sip:5551000@127\.0\.0\.1>;tag=", invite, re.M), invite
    assert re.search(r"^P-Asserted-Identity: <sip:sipp@127\.0\.0\.1>", invite, re.M), invite
    assert re.search(r"^INVITE sip:123@127\.0\.0\.1:5090 SIP/2\.0", invite, re.M), invite


def test_privacy_hides_the_caller(tmp_path, switch_factory):
    switch_factory(switch_config(trunk_extra="privacy = true"))
    callee = uas(tmp_path, calls=1, trace_msg=True).start()
    uac(tmp_path, calls=1).run().assert_success(1)
    invite = _invite_received(callee.wait(20).assert_success(1))
    assert re.search(r'^From: "?Anonymous"? <sip:anonymous@anonymous\.invalid>;tag=', invite, re.M), invite
    assert re.search(r"^Privacy: id", invite, re.M) and "P-Asserted-Identity: <sip:sipp@" in invite


def test_trunk_call_cap(tmp_path, switch_factory):
    """max_calls = 1: a second concurrent call on the trunk is refused with 503."""
    sw = switch_factory(switch_config(trunk_extra="max_calls = 1"))
    callee = uas(tmp_path, calls=1).start()
    first = uac(tmp_path, calls=1, duration_ms=3000, name="long").start()
    time.sleep(1.0)
    uac(tmp_path, "uac_expect_status.xml", calls=1, variables={"expected": 503}).run().assert_success(1)
    first.wait(20).assert_success(1)
    callee.wait(20).assert_success(1)
    dispositions = sorted((c["disposition"], c["sip_status"]) for c in sw.wait_cdrs(2))
    assert dispositions == [("ANSWERED", 200), ("FAILED", 503)]
    assert "at its 1-call cap" in sw.log_tail()


def test_max_call_duration(tmp_path, switch_factory):
    """calls.max_duration_s: the switch hangs up both sides when the limit is reached."""
    sw = switch_factory(switch_config().replace("[calls]\n", "[calls]\nmax_duration_s = 1.5\n"))
    callee = uas(tmp_path, calls=1).start()
    uac(tmp_path, "uac_wait_bye.xml", calls=1).run().assert_success(1)
    callee.wait(20).assert_success(1)
    cdr = sw.wait_cdrs(1)[0]
    assert cdr["hangup_by"] == "system" and 1.3 < cdr["billsec"] < 3, cdr

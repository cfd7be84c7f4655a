"""End to end with SIPp: calls through the real switch process onto the loopback trunk.

SIPp uac → softswitch :5060 (prefix 9) → trunk `loopback` → SIPp uas :5090 — the README contract.
Each test checks both SIPp sides and the CDRs the switch wrote.
"""

from __future__ import annotations

import signal
import time

import pytest

from conftest import sipp_uac as uac, sipp_uas as uas, switch_config


def one_cdr(sw) -> dict:
    cdrs = sw.wait_cdrs(1)
    assert len(cdrs) == 1, f"expected one CDR, got {cdrs}\n{sw.log_tail()}"
    return cdrs[0]


@pytest.mark.parametrize("transport,calls,rate", [("u1", 500, 50), ("t1", 100, 50)])
def test_load_through_trunk(tmp_path, switch_factory, transport, calls, rate):
    """Acceptance 1: 500 calls at 50 CPS over UDP (100 over TCP), 0 failed on both sides, all ANSWERED."""
    gw_transport = "udp" if transport == "u1" else "tcp"
    sw = switch_factory(switch_config(trunk_gateways=[("127.0.0.1", 5090, gw_transport)]))
    callee = uas(tmp_path, calls=calls, transport=transport, timeout=90, name=f"uas_{transport}").start()
    if transport == "t1":
        time.sleep(0.5)  # SIPp's TCP listener: no UDP bind to wait on
    caller = uac(tmp_path, rate=rate, calls=calls, transport=transport, timeout=90, name=f"uac_{transport}")
    caller.run().assert_success(calls)
    callee.wait(30).assert_success(calls)
    cdrs = sw.wait_cdrs(calls)
    assert len(cdrs) == calls, sw.log_tail()
    assert {c["disposition"] for c in cdrs} == {"ANSWERED"}
    assert {c["sip_status"] for c in cdrs} == {200}
    assert all(c["trunk"] == "loopback" and c["to"] == "9123" for c in cdrs)
    assert all(c["answer"] and c["end"] and c["billsec"] >= 0 for c in cdrs)
    assert sw.alive()


def test_cancel_during_ringing(tmp_path, switch_factory):
    """Acceptance 2: the caller's CANCEL reaches the callee as CANCEL; both get 487; CDR CANCELLED."""
    sw = switch_factory(switch_config())
    callee = uas(tmp_path, "uas_ring_noanswer.xml", calls=1).start()
    uac(tmp_path, "uac_cancel.xml", calls=1, duration_ms=1000).run().assert_success(1)
    callee.wait(20).assert_success(1)
    cdr = one_cdr(sw)
    assert cdr["disposition"] == "CANCELLED" and cdr["sip_status"] == 487, cdr
    assert cdr["hangup_by"] == "caller" and cdr["answer"] is None
    assert [leg["status"] for leg in cdr["legs"] if leg["role"] == "b"] == [487]


def test_callee_busy(tmp_path, switch_factory):
    """Acceptance 2: 486 from the callee is ACKed there and passed to the caller; CDR BUSY."""
    sw = switch_factory(switch_config())
    callee = uas(tmp_path, "uas_busy.xml", calls=1).start()
    uac(tmp_path, "uac_expect_status.xml", calls=1, variables={"expected": 486}).run().assert_success(1)
    callee.wait(20).assert_success(1)
    cdr = one_cdr(sw)
    assert cdr["disposition"] == "BUSY" and cdr["sip_status"] == 486 and cdr["q850_cause"] == 17, cdr


def test_ring_timeout(tmp_path, switch_factory):
    """Acceptance 2: nobody answers: the switch CANCELs the callee at the ring timeout and the caller
    gets 480; CDR NO ANSWER."""
    sw = switch_factory(switch_config(ring_timeout=2))
    callee = uas(tmp_path, "uas_ring_noanswer.xml", calls=1).start()
    started = time.monotonic()
    uac(tmp_path, "uac_expect_status.xml", calls=1, variables={"expected": 480}).run().assert_success(1)
    assert 1.8 < time.monotonic() - started < 6
    callee.wait(20).assert_success(1)  # it saw CANCEL, answered 200 + 487 and got the ACK
    cdr = one_cdr(sw)
    assert cdr["disposition"] == "NO ANSWER" and cdr["sip_status"] == 480, cdr


def test_caller_hangs_up(tmp_path, switch_factory):
    """Acceptance 2: caller BYE → 200 to the caller, BYE to the callee; CDR ANSWERED, hangup by caller."""
    sw = switch_factory(switch_config())
    callee = uas(tmp_path, calls=1).start()
    uac(tmp_path, calls=1, duration_ms=1500).run().assert_success(1)
    callee.wait(20).assert_success(1)
    cdr = one_cdr(sw)
    assert cdr["disposition"] == "ANSWERED" and cdr["hangup_by"] == "caller", cdr
    assert 1.3 < cdr["billsec"] < 4


def test_callee_hangs_up(tmp_path, switch_factory):
    """Acceptance 2: callee BYE → 200 to the callee, BYE to the caller; CDR ANSWERED, hangup by callee."""
    sw = switch_factory(switch_config())
    callee = uas(tmp_path, "uas_callee_bye.xml", calls=1, duration_ms=1000).start()
    uac(tmp_path, "uac_wait_bye.xml", calls=1).run().assert_success(1)
    callee.wait(20).assert_success(1)
    cdr = one_cdr(sw)
    assert cdr["disposition"] == "ANSWERED" and cdr["hangup_by"] == "callee", cdr


def test_unknown_number_gets_404_with_a_cdr(tmp_path, switch_factory):
    sw = switch_factory(switch_config())
    uac(tmp_path, "uac_expect_status.xml", calls=1, service="555",
        variables={"expected": 404}).run().assert_success(1)
    cdr = one_cdr(sw)
    assert cdr["disposition"] == "FAILED" and cdr["sip_status"] == 404
    assert "no route for '555'" in sw.log_tail()


def test_trunk_failover_on_503(tmp_path, switch_factory):
    """Acceptance 6: the first gateway answers 503, the call fails over to the second; the 503 gateway
    then rests, so the next call goes straight to the second. With a 1-call cap on the trunk: a call
    holds one slot however many gateways it tries, and gives it back at the end."""
    sw = switch_factory(switch_config(trunk_gateways=[("127.0.0.1", 5090, "udp"), ("127.0.0.1", 5092, "udp")],
                                      trunk_extra="max_calls = 1"))
    broken = uas(tmp_path, "uas_503.xml", port=5090, calls=1).start()
    good = uas(tmp_path, port=5092, calls=2).start()
    uac(tmp_path, calls=1, name="uac1").run().assert_success(1)
    broken.wait(20).assert_success(1)
    uac(tmp_path, calls=1, name="uac2").run().assert_success(1)
    good.wait(20).assert_success(2)
    cdrs = sw.wait_cdrs(2)
    assert [c["disposition"] for c in cdrs] == ["ANSWERED", "ANSWERED"]
    first = [(leg["remote"], leg["status"]) for leg in cdrs[0]["legs"] if leg["role"] == "b"]
    second = [(leg["remote"], leg["status"]) for leg in cdrs[1]["legs"] if leg["role"] == "b"]
    assert first == [("udp:127.0.0.1:5090", 503), ("udp:127.0.0.1:5092", 200)]
    assert second == [("udp:127.0.0.1:5092", 200)]


def test_sigterm_hangs_up_calls_and_writes_cdrs(tmp_path, switch_factory):
    """Acceptance 8: SIGTERM with calls up: BYE to both sides of every call, every CDR complete, exit 0."""
    sw = switch_factory(switch_config(grace=0.5))
    callee = uas(tmp_path, calls=5).start()
    caller = uac(tmp_path, "uac_wait_bye.xml", calls=5, rate=20, timeout=30).start()
    time.sleep(1.5)  # all five calls are up (the uac waits for our BYE)
    assert sw.stop(signal.SIGTERM) == 0, sw.log_tail()
    caller.wait(20).assert_success(5)  # each caller got a BYE and answered it
    callee.wait(20).assert_success(5)  # each callee got a BYE and answered it
    cdrs = sw.cdrs()
    assert len(cdrs) == 5, sw.log_tail()
    for cdr in cdrs:
        assert cdr["disposition"] == "ANSWERED" and cdr["hangup_by"] == "system" and cdr["end"], cdr
        assert cdr["billsec"] > 0.5


def test_rtp_is_anchored_and_relayed_both_ways(tmp_path, switch_factory):
    """SIPp uac_pcap plays G.711 RTP into the call, the callee echoes it: every packet crosses the relay
    twice, and the CDR's per-leg counters say so (nothing dropped, each leg latched to its peer)."""
    sw = switch_factory(switch_config())
    callee = uas(tmp_path, calls=1, rtp_echo=True).start()
    uac(tmp_path, "uac_pcap", calls=1).run().assert_success(1)
    callee.wait(20).assert_success(1)
    cdr = one_cdr(sw)
    a = next(leg for leg in cdr["legs"] if leg["role"] == "a")["rtp"]
    b = next(leg for leg in cdr["legs"] if leg["role"] == "b")["rtp"]
    assert a["packets_in"] > 100, cdr["legs"]                   # the pcap's packets reached the relay
    assert b["packets_out"] == a["packets_in"]                   # ... and all went on to the callee
    assert b["packets_in"] > 0.9 * b["packets_out"]              # the echo came back
    assert a["packets_out"] == b["packets_in"]                   # ... and all went on to the caller
    assert a["dropped_source"] == b["dropped_source"] == 0
    assert a["latched_to"] and b["latched_to"]


def test_rtp_ports_exhausted_is_503_retry_after_not_a_crash(tmp_path, switch_factory):
    """One RTP port pair: a second concurrent call is refused 503 + Retry-After with one warning line."""
    sw = switch_factory(switch_config(rtp=(39990, 39991)))
    first = uac(tmp_path / "first", calls=1, service="echo", duration_ms=4000, name="first").start()
    time.sleep(1.0)
    uac(tmp_path / "second", "uac_expect_status.xml", calls=1, service="echo",
        variables={"expected": 503}).run().assert_success(1)
    first.wait().assert_success(1)
    log = sw.log_tail(200)
    assert "call refused: no free RTP port" in log and "Traceback" not in log, log

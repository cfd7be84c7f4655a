"""RFC 3261 §17 transaction state machines, driven with an injected clock (no sockets, no sleeps)."""

from __future__ import annotations

import pytest

from softswitch.sip.addr import Addr
from softswitch.sip.message import Request, Response, make_response, parse_message
from softswitch.sip.transaction import (
    AckTimeout, RequestReceived, ResponseReceived, State, Timers, TransactionLayer, TransactionTimeout, Transmit,
)

UDP = Addr("udp", "127.0.0.1", 5070)
TCP = Addr("tcp", "127.0.0.1", 5070)


def invite(branch: str = "z9hG4bKabc", method: str = "INVITE", transport: str = "UDP", rport: bool = True) -> Request:
    r = ";rport" if rport else ""
    text = (f"{method} sip:bob@127.0.0.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/{transport} 127.0.0.1:5070;branch={branch}{r}\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:bob@127.0.0.1>\r\n"
            f"Call-ID: c1@test\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n")
    msg = parse_message(text.encode())
    assert isinstance(msg, Request)
    return msg


def response_to(req: Request, status: int, tag: str = "b1") -> Response:
    return parse_message(make_response(req, status, to_tag=tag).to_bytes())  # type: ignore[return-value]


def transmits(events) -> list[Transmit]:
    return [e for e in events if isinstance(e, Transmit)]


def run_timers(layer: TransactionLayer, until: float) -> list[tuple[float, object]]:
    """Fire every timer up to `until`, returning (time, event) pairs."""
    out = []
    while (d := layer.next_deadline()) is not None and d <= until:
        out.extend((d, e) for e in layer.handle_timers(d))
    return out


# ------------------------------------------------------------------ INVITE client

def test_invite_client_timer_a_doubles_and_timer_b_times_out():
    layer = TransactionLayer(Timers(t1=0.5))
    txn, events = layer.send_request(invite(), UDP, now=0.0)
    assert len(transmits(events)) == 1
    fired = run_timers(layer, 40.0)
    retransmit_times = [t for t, e in fired if isinstance(e, Transmit)]
    assert retransmit_times == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]  # A = T1, 2T1, 4T1 ... until B
    timeouts = [(t, e) for t, e in fired if isinstance(e, TransactionTimeout)]
    assert timeouts and timeouts[0][0] == pytest.approx(32.0) and timeouts[0][1].txn is txn
    assert txn.state is State.TERMINATED and len(layer) == 0


def test_invite_client_no_retransmission_over_tcp():
    layer = TransactionLayer()
    txn, _ = layer.send_request(invite(transport="TCP"), TCP, now=0.0)
    fired = run_timers(layer, 40.0)
    assert not [e for _, e in fired if isinstance(e, Transmit)]
    assert isinstance(fired[-1][1], TransactionTimeout)


def test_invite_client_provisional_stops_retransmission_and_non2xx_is_acked_in_transaction():
    layer = TransactionLayer()
    req = invite()
    txn, _ = layer.send_request(req, UDP, now=0.0)
    ev = layer.receive(response_to(req, 180), UDP, now=0.1)
    assert isinstance(ev[0], ResponseReceived) and txn.state is State.PROCEEDING
    assert not [e for _, e in run_timers(layer, 5.0) if isinstance(e, Transmit)]
    ev = layer.receive(response_to(req, 486), UDP, now=6.0)
    acks = transmits(ev)
    assert len(acks) == 1 and acks[0].data.startswith(b"ACK sip:bob@127.0.0.1")
    ack = parse_message(acks[0].data)
    assert ack.top_via.branch == req.top_via.branch and ack.cseq == (1, "ACK") and ack.to.tag == "b1"
    assert txn.state is State.COMPLETED
    # a retransmitted 486 is absorbed and re-ACKed, not passed up again
    ev = layer.receive(response_to(req, 486), UDP, now=7.0)
    assert len(transmits(ev)) == 1 and not [e for e in ev if isinstance(e, ResponseReceived)]
    run_timers(layer, 6.0 + 32.0)  # Timer D
    assert len(layer) == 0


def test_invite_client_2xx_accepted_state_passes_retransmissions_up():
    layer = TransactionLayer()
    req = invite()
    txn, _ = layer.send_request(req, UDP, now=0.0)
    ev = layer.receive(response_to(req, 200), UDP, now=0.2)
    assert isinstance(ev[0], ResponseReceived) and txn.state is State.ACCEPTED
    assert not transmits(ev)  # the TU ACKs a 2xx, not the transaction
    ev = layer.receive(response_to(req, 200), UDP, now=0.7)
    assert isinstance(ev[0], ResponseReceived)  # RFC 6026: the TU re-ACKs
    run_timers(layer, 100)
    assert len(layer) == 0
    ev = layer.receive(response_to(req, 200), UDP, now=101)  # after Timer M: stray 2xx
    assert isinstance(ev[0], ResponseReceived) and ev[0].txn is None


# ------------------------------------------------------------------ non-INVITE client

def test_non_invite_client_timer_e_caps_at_t2_and_timer_f():
    layer = TransactionLayer(Timers(t1=0.5, t2=4.0))
    txn, _ = layer.send_request(invite(method="OPTIONS"), UDP, now=0.0)
    fired = run_timers(layer, 40.0)
    times = [t for t, e in fired if isinstance(e, Transmit)]
    assert times[:5] == [0.5, 1.5, 3.5, 7.5, 11.5]  # E doubles, capped at T2 = 4 s
    assert isinstance(fired[-1][1], TransactionTimeout) and fired[-1][0] == pytest.approx(32.0)


def test_non_invite_client_proceeding_uses_t2_and_final_ends_after_k():
    layer = TransactionLayer()
    req = invite(method="BYE")
    txn, _ = layer.send_request(req, UDP, now=0.0)
    layer.receive(response_to(req, 100), UDP, now=0.1)
    assert txn.state is State.PROCEEDING
    ev = layer.receive(response_to(req, 200), UDP, now=0.2)
    assert isinstance(ev[0], ResponseReceived) and txn.state is State.COMPLETED
    assert layer.receive(response_to(req, 200), UDP, now=0.3) == []  # absorbed
    run_timers(layer, 0.2 + 5.0)  # Timer K = T4
    assert len(layer) == 0


# ------------------------------------------------------------------ INVITE server

def test_invite_server_absorbs_retransmission_and_resends_last_provisional():
    layer = TransactionLayer()
    req = invite()
    ev = layer.receive(req, UDP, now=0.0)
    assert isinstance(ev[0], RequestReceived)
    txn = ev[0].txn
    layer.send_response(txn, make_response(req, 180, to_tag="t"), now=0.1)
    ev = layer.receive(invite(), UDP, now=0.5)
    assert len(ev) == 1 and isinstance(ev[0], Transmit) and b"180" in ev[0].data.split(b"\r\n")[0]


def test_invite_server_non2xx_retransmitted_with_timer_g_until_ack_then_absorbs():
    layer = TransactionLayer(Timers(t1=0.5, t2=4.0))
    req = invite()
    txn = layer.receive(req, UDP, now=0.0)[0].txn
    layer.send_response(txn, make_response(req, 486, to_tag="t"), now=0.0)
    fired = run_timers(layer, 8.0)
    assert [t for t, e in fired if isinstance(e, Transmit)] == [0.5, 1.5, 3.5, 7.5]
    ack = invite(method="ACK")
    assert layer.receive(ack, UDP, now=8.0) == []  # absorbed: the TU never sees a non-2xx ACK
    assert txn.state is State.CONFIRMED
    assert not [e for _, e in run_timers(layer, 20.0) if isinstance(e, Transmit)]
    assert len(layer) == 0


def test_invite_server_timer_h_without_ack():
    layer = TransactionLayer()
    req = invite()
    txn = layer.receive(req, UDP, now=0.0)[0].txn
    layer.send_response(txn, make_response(req, 404, to_tag="t"), now=0.0)
    fired = run_timers(layer, 40.0)
    assert any(isinstance(e, TransactionTimeout) and e.txn is txn for _, e in fired)


def test_2xx_retransmitted_until_ack_then_stops():
    layer = TransactionLayer(Timers(t1=0.5, t2=4.0))
    req = invite()
    txn = layer.receive(req, UDP, now=0.0)[0].txn
    ev = layer.send_response(txn, make_response(req, 200, to_tag="t"), now=0.0)
    assert len(transmits(ev)) == 1
    fired = run_timers(layer, 4.0)
    assert [t for t, e in fired if isinstance(e, Transmit)] == [0.5, 1.5, 3.5]  # §13.3.1.4: T1 doubling to T2
    ack = invite(method="ACK", branch="z9hG4bKnewbranch")  # the 2xx ACK is its own transaction
    ev = layer.receive(ack, UDP, now=4.0)
    assert isinstance(ev[0], RequestReceived) and ev[0].txn is None
    assert not [e for _, e in run_timers(layer, 60.0) if isinstance(e, Transmit)]


def test_2xx_without_ack_raises_ack_timeout():
    layer = TransactionLayer()
    req = invite()
    txn = layer.receive(req, UDP, now=0.0)[0].txn
    layer.send_response(txn, make_response(req, 200, to_tag="t"), now=0.0)
    fired = run_timers(layer, 40.0)
    assert [e for _, e in fired if isinstance(e, AckTimeout)] == [AckTimeout("c1@test", 1)]


def test_cancel_matches_invite_server_transaction():
    layer = TransactionLayer()
    req = invite()
    txn = layer.receive(req, UDP, now=0.0)[0].txn
    ev = layer.receive(invite(method="CANCEL"), UDP, now=1.0)
    assert isinstance(ev[0], RequestReceived) and ev[0].cancels is txn
    other = layer.receive(invite(method="CANCEL", branch="z9hG4bKother"), UDP, now=1.0)
    assert other[0].cancels is None


# ------------------------------------------------------------------ non-INVITE server and routing

def test_non_invite_server_resends_final_on_retransmission_until_timer_j():
    layer = TransactionLayer()
    req = invite(method="OPTIONS")
    txn = layer.receive(req, UDP, now=0.0)[0].txn
    layer.send_response(txn, make_response(req, 200), now=0.0)
    ev = layer.receive(invite(method="OPTIONS"), UDP, now=1.0)
    assert len(ev) == 1 and isinstance(ev[0], Transmit)
    run_timers(layer, 33.0)  # Timer J = 64*T1
    assert len(layer) == 0
    ev = layer.receive(invite(method="OPTIONS"), UDP, now=40.0)
    assert isinstance(ev[0], RequestReceived)  # a new transaction now


def test_rport_and_received_are_stamped_and_responses_follow_the_source():
    layer = TransactionLayer()
    natted = Addr("udp", "203.0.113.9", 40000)
    req = invite(rport=True)
    txn = layer.receive(req, natted, now=0.0)[0].txn
    ev = layer.send_response(txn, make_response(req, 100), now=0.0)
    assert ev[0].dest == natted
    via = parse_message(ev[0].data).top_via
    assert via.params["received"] == "203.0.113.9" and via.params["rport"] == "40000"


def test_without_rport_responses_go_to_the_via_port_at_the_received_address():
    layer = TransactionLayer()
    req = invite(rport=False)
    txn = layer.receive(req, Addr("udp", "203.0.113.9", 40000), now=0.0)[0].txn
    ev = layer.send_response(txn, make_response(req, 100), now=0.0)
    assert ev[0].dest == Addr("udp", "203.0.113.9", 5070)


def test_transport_failure_fails_client_transactions_to_that_destination():
    layer = TransactionLayer()
    txn, _ = layer.send_request(invite(transport="TCP"), TCP, now=0.0)
    ev = layer.transport_failed(TCP)
    assert len(ev) == 1 and ev[0].txn is txn and len(layer) == 0

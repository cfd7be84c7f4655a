"""End to end: the registrar of the real switch process, driven by SIPp and by a raw UDP socket.

* SIPp registers with digest auth (register_auth.xml) and the binding is used: a call to that user
  lands on a SIPp UAS started on the port the REGISTER came from. A wrong password is refused and
  leaves no binding (a call then gets 480).
* A raw-socket UA (digest via softswitch.sip.auth.DigestClient, SHA-256 where the config offers it)
  checks the RFC 3261 §10.3 details: several contacts per AOR, Expires: 0 removes one,
  ``Contact: *`` removes all, 423 + Min-Expires, the max_expires clamp, malformed expires → 400,
  and that one may only register one's own AOR.
* Bindings survive a restart (SIGTERM, new process on the same config and store) — and so do
  removals — and a SIGKILL shortly after the 200.

Every failure message carries the switch log tail and the peers' logs (see ``Evidence``).
"""

from __future__ import annotations

import os
import signal
import socket
import time
import uuid
from pathlib import Path

import pytest

from peers.evidence import Evidence
from peers.netutil import LOOPBACK, PortAllocator
from peers.sipp import Sipp, auth_inf_row, write_inf
from softswitch.sip.auth import DigestClient
from softswitch.sip.message import Response, parse_message

from conftest import SwitchProcess, switch_config

SWITCH_HOST = LOOPBACK


@pytest.fixture(scope="module")
def ports() -> PortAllocator:
    """One allocator for the module so no two peers in these tests share a port."""
    return PortAllocator()


@pytest.fixture
def sip_port(ports: PortAllocator) -> int:
    """The switch's SIP port (UDP+TCP) for one test.

    Why not 5060: other engineers' switches run on this machine at the same time, and the
    conftest readiness probe (any OPTIONS answer on the port) cannot tell our switch from theirs.
    A private port makes "the switch that answered" the one this test started.
    SOFTSWITCH_TEST_SIP_PORT=5060 forces the contract port on a machine of one's own.
    """
    return int(os.environ.get("SOFTSWITCH_TEST_SIP_PORT", "0")) or ports.port()


def make_config(sip_port: int, ports: PortAllocator, **kw) -> str:
    """switch_config() on our SIP port, with an RTP range of its own."""
    return switch_config(sip_port=sip_port, rtp=ports.range(40), **kw)


def log_lines(path: Path | None, needle: str) -> list[str]:
    try:
        return [line for line in path.read_text(errors="replace").splitlines() if needle in line] if path else []
    except OSError:
        return []


def last_line(sw: SwitchProcess, needle: str) -> str:
    """The last log line containing ``needle`` ('' if none): restarts append to the same log."""
    lines = log_lines(sw.log_path, needle)
    return lines[-1] if lines else ""


# --- a raw UDP user agent that does the digest dance ------------------------------------

class RawUA:
    """A UDP socket on 127.0.0.1 that sends requests to the switch and collects final responses.

    ``register()`` sends REGISTER, answers the 401 with ``DigestClient`` (SHA-256 preferred,
    as a modern phone would) and returns the final response. Requests are retransmitted every
    0.5 s until a final response arrives (loopback UDP rarely drops, but a test must not flake).
    """

    def __init__(self, switch_port: int, port: int | None = None, user: str = "1001",
                 password: str | None = None) -> None:
        self.switch_port = switch_port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((LOOPBACK, port or 0))
        self.port = self.sock.getsockname()[1]
        self.user = user
        self.password = password if password is not None else f"{user}pass"
        self.client = DigestClient(user, self.password)
        self.call_id = f"{uuid.uuid4().hex}@{LOOPBACK}"
        self.cseq = 0
        self.tag = uuid.uuid4().hex[:10]
        self.transcript: list[str] = []

    def contact(self, user: str | None = None, params: str = "") -> str:
        return f"sip:{user or self.user}@{LOOPBACK}:{self.port}{params}"

    def close(self) -> None:
        self.sock.close()

    def evidence(self) -> str:
        return f"--- raw UA :{self.port} transcript (tail) ---\n{self.transcript_tail()}"

    def transcript_tail(self, messages: int = 6) -> str:
        return "\n".join(self.transcript[-messages:]) or "(nothing sent)"

    def _send_and_wait(self, data: bytes, branch: str, timeout: float) -> Response:
        deadline = time.monotonic() + timeout
        next_send = 0.0
        self.transcript.append(">>> " + data.decode(errors="replace"))
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise AssertionError(f"raw UA :{self.port}: no final response within {timeout:.1f}s")
            if now >= next_send:
                self.sock.sendto(data, (SWITCH_HOST, self.switch_port))
                next_send = now + 0.5
            self.sock.settimeout(max(0.01, min(next_send, deadline) - now))
            try:
                raw, _ = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            message = parse_message(raw)
            if not isinstance(message, Response) or branch not in (message.headers.get("Via") or ""):
                continue  # a stray request or an old transaction's response
            self.transcript.append("<<< " + raw.decode(errors="replace"))
            if message.status >= 200:
                return message

    def request(self, method: str, headers: list[tuple[str, str]], uri: str | None = None,
                to_user: str | None = None, timeout: float = 5.0) -> Response:
        """One request in this UA's dialog-less "registration" context (Call-ID kept, CSeq grows)."""
        self.cseq += 1
        branch = "z9hG4bK" + uuid.uuid4().hex
        uri = uri or f"sip:{SWITCH_HOST}:{self.switch_port}"
        to_user = to_user or self.user
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {LOOPBACK}:{self.port};branch={branch};rport",
            "Max-Forwards: 70",
            f"From: <sip:{self.user}@{SWITCH_HOST}>;tag={self.tag}",
            f"To: <sip:{to_user}@{SWITCH_HOST}>",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} {method}",
            "User-Agent: raw-ua (test_registrar)",
            *[f"{name}: {value}" for name, value in headers],
            "Content-Length: 0",
        ]
        return self._send_and_wait(("\r\n".join(lines) + "\r\n\r\n").encode(), branch, timeout)

    def register(self, contacts: list[str] | None = None, expires: int | None = None,
                 extra: list[tuple[str, str]] | None = None, to_user: str | None = None) -> Response:
        """REGISTER (``contacts`` are full Contact values; None = a query), answering the 401."""
        headers = [("Contact", c) for c in (contacts or [])]
        if expires is not None:
            headers.append(("Expires", str(expires)))
        headers += extra or []
        uri = f"sip:{SWITCH_HOST}:{self.switch_port}"
        first = self.request("REGISTER", headers, uri, to_user)
        if first.status != 401:
            return first
        challenges = first.headers.get_all("WWW-Authenticate")
        assert challenges, f"401 without WWW-Authenticate:\n{first.to_bytes().decode()}"
        authorization = self.client.authorize(challenges, "REGISTER", uri)
        return self.request("REGISTER", headers + [("Authorization", authorization)], uri, to_user)


def bindings(response: Response) -> dict[str, int]:
    """Contact URI → expires from a REGISTER 200 (the registrar's view of the AOR)."""
    out = {}
    for contact in response.contacts:
        out[str(contact.uri)] = int(contact.params.get("expires") or -1)
    return out


def status_line(response: Response) -> str:
    return f"{response.status} {response.reason}"


# --- SIPp helpers -----------------------------------------------------------------------

def sipp_register(tmp_path: Path, switch: str, user: str, password: str, port: int, *, fail: bool = False,
                  expires: int = 300, name: str | None = None) -> Sipp:
    """register_auth.xml (or register_auth_fail.xml) for one account from a fixed local port."""
    scenario = "register_auth_fail.xml" if fail else "register_auth.xml"
    name = name or f"{'regfail' if fail else 'reg'}_{user}_{port}"
    inf = write_inf(tmp_path / f"{name}.csv", [auth_inf_row(user, password)])
    return Sipp(tmp_path, scenario, remote=switch, local_port=port, calls=1, inf=inf,
                keys={"expires": expires}, timeout=15, trace_msg=True, name=name)


def call_expecting(tmp_path: Path, switch: str, ports: PortAllocator, user: str, status: int, name: str) -> Sipp:
    """A SIPp caller (unregistered: a trunk call from 127.0.0.1) that must get ``status``."""
    return Sipp(tmp_path, "uac_expect_status.xml", remote=switch, local_port=ports.port(), service=user,
                calls=1, variables={"expected": status}, timeout=15, trace_msg=True, name=name)


def uas_on(tmp_path: Path, port: int, name: str) -> Sipp:
    """The built-in SIPp UAS (answers one call, waits for BYE) on a registered phone's port."""
    return Sipp(tmp_path, "uas", local_port=port, calls=1, timeout=20, trace_msg=True, name=name)


def uac_to(tmp_path: Path, switch: str, ports: PortAllocator, user: str, name: str) -> Sipp:
    """The built-in SIPp UAC: one call to ``user``, BYE after 0.5 s."""
    return Sipp(tmp_path, "uac", remote=switch, local_port=ports.port(), service=user, calls=1,
                duration_ms=500, timeout=15, trace_msg=True, name=name)


def md5_first(config: str) -> str:
    """The config with MD5 challenged before SHA-256.

    Why: SIPp 3.6.1's ``[authentication]`` reads the *first* ``algorithm=`` of the 401 (it does not
    pick among several WWW-Authenticate values, RFC 8760 §2.4) and aborts with "createAuthHeader:
    authentication must use MD5 or AKAv1-MD5" on the switch's default SHA-256-first challenge.
    """
    marker = "t1_ms = 500\n"
    assert marker in config
    return config.replace(marker, marker + 'auth_algorithms = ["MD5", "SHA-256"]\n', 1)


def wait_cdrs(sw: SwitchProcess, count: int) -> list[dict]:
    cdrs = sw.wait_cdrs(count)
    assert len(cdrs) == count, f"expected {count} CDRs, got {len(cdrs)}: {cdrs}"
    return cdrs


def b_legs(cdr: dict) -> list[tuple[str, int | None]]:
    return [(leg["remote"], leg["status"]) for leg in cdr["legs"] if leg["role"] == "b"]


# --- 1. SIPp REGISTER with digest; the binding routes calls ------------------------------

@pytest.mark.timeout(60)
def test_sipp_register_with_digest_then_call_reaches_it(tmp_path, switch_factory, ports, sip_port):
    """Acceptance 3: SIPp registers 1003 with digest (401 → 200); a call to 1003 lands on a SIPp UAS
    listening on the port that REGISTER came from. A wrong password for 1002 gets 403 (after the
    401) and creates no binding: a call to 1002 gets 480."""
    ev = Evidence()
    with ev:
        sw = ev.add(switch_factory(md5_first(make_config(sip_port, ports)), sip_port=sip_port))
        switch = f"{LOOPBACK}:{sip_port}"
        phone_port = ports.port()
        contact = f"sip:1003@127.0.0.1:{phone_port};transport=UDP"

        reg = ev.add(sipp_register(tmp_path, switch, "1003", "1003pass", phone_port))
        reg.run().assert_success(1)
        trace = reg.message_log.read_text(errors="replace") if reg.message_log else ""
        assert "SIP/2.0 401" in trace and "SIP/2.0 200" in trace, trace[-3000:]
        assert "algorithm=SHA-256" in trace and "algorithm=MD5" in trace, "both digest algorithms offered"
        assert last_line(sw, f"registered 1003 at {contact} via udp:127.0.0.1:{phone_port}"), "not logged"

        # The registrar's view, asked with a REGISTER without Contact (a query, §10.2.3).
        query = ev.add(RawUA(sip_port, user="1003"))
        listed = query.register()
        assert listed.status == 200, status_line(listed)
        assert list(bindings(listed)) == [contact], bindings(listed)
        assert 250 < bindings(listed)[contact] <= 300, bindings(listed)
        query.close()

        # The registered port now answers calls: the INVITE for 1003 must come here.
        callee = ev.add(uas_on(tmp_path, phone_port, "uas_1003").start())
        ev.add(uac_to(tmp_path, switch, ports, "1003", "uac_to_1003")).run().assert_success(1)
        callee.wait(15).assert_success(1)
        uas_trace = callee.message_log.read_text(errors="replace")
        assert f"INVITE {contact} SIP/2.0" in uas_trace, uas_trace[:2000]

        # Wrong password: 401, then 403 (register_auth_fail accepts 401 or 403 as the refusal)...
        bad = ev.add(sipp_register(tmp_path, switch, "1002", "not-the-password", ports.port(), fail=True))
        bad.run().assert_success(1)
        bad_trace = bad.message_log.read_text(errors="replace")
        assert "SIP/2.0 401" in bad_trace and "SIP/2.0 403" in bad_trace, bad_trace[-3000:]
        assert "SIP/2.0 200" not in bad_trace
        assert last_line(sw, "REGISTER from udp:127.0.0.1:") and "wrong response" in last_line(sw, "REGISTER from")
        # ... and no binding: the call to 1002 is refused as "temporarily unavailable".
        ev.add(call_expecting(tmp_path, switch, ports, "1002", 480, "uac_to_1002")).run().assert_success(1)

        answered, refused = wait_cdrs(sw, 2)
        assert answered["disposition"] == "ANSWERED" and answered["destination"] == "user:1003", answered
        assert b_legs(answered) == [(f"udp:127.0.0.1:{phone_port}", 200)], answered
        assert refused["sip_status"] == 480 and refused["answer"] is None, refused
        assert b_legs(refused) == [], refused
        assert not last_line(sw, "registered 1002"), "a wrong password created a binding"


# --- 2. Registrar details with a raw UA ------------------------------------------------

@pytest.mark.timeout(60)
def test_contacts_add_remove_wildcard_and_interval_checks(tmp_path, switch_factory, ports, sip_port):
    """RFC 3261 §10.3 on the real switch: two phones give 1001 three contacts; the 200 lists all of
    them with their own expiry; a refresh does not duplicate; Expires: 0 removes exactly one;
    Expires under min_expires (60) → 423 + Min-Expires: 60 with nothing stored; above max_expires is
    clamped; nobody registers another user's AOR; malformed expires params get 400; ``Contact: *``
    needs Expires: 0 and no other Contact, and then removes every contact (a call then gets 480)."""
    ev = Evidence()
    with ev:
        config = make_config(sip_port, ports).replace("t1_ms = 500\n", 't1_ms = 500\nauth_algorithms = ["SHA-256", "MD5"]\n')
        sw = ev.add(switch_factory(config, sip_port=sip_port))  # the raw UA answers SHA-256
        desk = ev.add(RawUA(sip_port, user="1001"))
        soft = ev.add(RawUA(sip_port, user="1001"))
        desk_contact, soft_a, soft_b = desk.contact(), soft.contact(), soft.contact("1001-b", ";transport=udp")

        r = desk.register([f"<{desk_contact}>"], expires=300)
        assert r.status == 200, status_line(r)
        assert bindings(r) == {desk_contact: 300}
        # Two contacts in one REGISTER: a per-contact expires param beats the Expires header.
        r = soft.register([f"<{soft_a}>;expires=600", f"<{soft_b}>"], expires=120)
        assert r.status == 200, status_line(r)
        listed = bindings(r)
        assert set(listed) == {desk_contact, soft_a, soft_b}, listed
        assert listed[soft_a] == 600 and listed[soft_b] == 120 and 295 <= listed[desk_contact] <= 300, listed
        assert r.headers.get("Date"), "a 200 to REGISTER should carry Date"

        # A refresh keeps one binding per contact (no duplicate), with the new expiry.
        r = desk.register([f"<{desk_contact}>"], expires=900)
        assert r.status == 200 and len(r.contacts) == 3 and bindings(r)[desk_contact] == 900, bindings(r)

        # Expires: 0 removes that one contact only.
        r = desk.register([f"<{desk_contact}>"], expires=0)
        assert r.status == 200, status_line(r)
        assert set(bindings(r)) == {soft_a, soft_b}, bindings(r)

        # Interval too brief: 423 with Min-Expires, and the binding is not stored.
        r = desk.register([f"<{desk_contact}>"], expires=30)
        assert r.status == 423, status_line(r)
        assert r.headers.get("Min-Expires") == "60", r.to_bytes().decode()
        r = desk.register([f"<{desk_contact}>;expires=59"])
        assert r.status == 423 and r.headers.get("Min-Expires") == "60", status_line(r)
        r = desk.register()  # query
        assert r.status == 200 and set(bindings(r)) == {soft_a, soft_b}, bindings(r)

        # Longer than max_expires (3600): accepted but clamped.
        r = desk.register([f"<{desk_contact}>"], expires=86400)
        assert r.status == 200 and bindings(r)[desk_contact] == 3600, bindings(r)

        # Only one's own AOR: 1001's credentials for To: 1002 are refused.
        r = desk.register([f"<{desk_contact}>"], expires=300, to_user="1002")
        assert r.status == 403, status_line(r)

        # delta-seconds are digits only: a negative or Python-style "1_000" expires is malformed, not a
        # binding "for -5s" (which the registrar used to store and log).
        for bad in ("-5", "1_000"):
            r = desk.register([f"<{desk_contact}>;expires={bad}"])
            assert r.status == 400, f"expires={bad}: {status_line(r)}"
        r = desk.register()
        assert r.status == 200 and 3590 < bindings(r)[desk_contact] <= 3600, bindings(r)

        # Contact: * needs Expires: 0 and must stand alone (§10.3 step 6) ...
        r = soft.register(["*"], expires=300)
        assert r.status == 400, status_line(r)
        r = soft.register(["*", f"<{soft_a}>"], expires=0)
        assert r.status == 400, status_line(r)
        r = soft.register()
        assert len(r.contacts) == 3, f"a refused wildcard removed bindings: {bindings(r)}"
        # ... with it, every contact of the AOR goes (also the other phone's).
        r = soft.register(["*"], expires=0)
        assert r.status == 200, status_line(r)
        assert r.contacts == [], bindings(r)
        r = desk.register()
        assert r.status == 200 and r.contacts == [], bindings(r)

        switch = f"{LOOPBACK}:{sip_port}"
        ev.add(call_expecting(tmp_path, switch, ports, "1001", 480, "uac_to_1001")).run().assert_success(1)
        cdr = wait_cdrs(sw, 1)[0]
        assert cdr["sip_status"] == 480 and cdr["destination"] == "user:1001", cdr
        desk.close()
        soft.close()


# --- 3. Bindings survive a restart -------------------------------------------------------

@pytest.mark.timeout(60)
def test_binding_survives_restart(tmp_path, switch_factory, ports, sip_port):
    """Register 1003 (SIPp, digest), stop the switch with SIGTERM, start a new process on the same
    config and store: the binding is restored (the query lists it with the remaining expiry) and a
    call to 1003 lands on the SIPp UAS at the registered port. Then unregister, restart again: the
    removal persisted too (480)."""
    ev = Evidence()
    with ev:
        config = md5_first(make_config(sip_port, ports))
        switch = f"{LOOPBACK}:{sip_port}"
        sw1 = ev.add(switch_factory(config, sip_port=sip_port))
        phone_port = ports.port()
        contact = f"sip:1003@127.0.0.1:{phone_port};transport=UDP"
        ev.add(sipp_register(tmp_path, switch, "1003", "1003pass", phone_port, expires=600)).run().assert_success(1)
        assert sw1.stop(signal.SIGTERM) == 0, "switch did not exit cleanly on SIGTERM"

        # Same tmp_path: same config file, same data/switch.db, log appended.
        sw2 = ev.add(switch_factory(config, sip_port=sip_port))
        assert "1 registrations restored" in last_line(sw2, "softswitch up"), "binding not loaded at start"
        query = ev.add(RawUA(sip_port, user="1003"))
        r = query.register()
        assert r.status == 200, status_line(r)
        assert list(bindings(r)) == [contact] and 500 < bindings(r)[contact] <= 600, bindings(r)
        query.close()

        callee = ev.add(uas_on(tmp_path, phone_port, "uas_after_restart").start())
        ev.add(uac_to(tmp_path, switch, ports, "1003", "uac_after_restart")).run().assert_success(1)
        callee.wait(15).assert_success(1)
        cdr = wait_cdrs(sw2, 1)[0]
        assert cdr["disposition"] == "ANSWERED" and b_legs(cdr) == [(f"udp:127.0.0.1:{phone_port}", 200)], cdr

        # The phone unregisters (same source port, wildcard): the removal must persist as well.
        phone = ev.add(RawUA(sip_port, port=phone_port, user="1003"))
        r = phone.register(["*"], expires=0)
        assert r.status == 200 and r.contacts == [], status_line(r)
        phone.close()
        assert sw2.stop(signal.SIGTERM) == 0
        sw3 = ev.add(switch_factory(config, sip_port=sip_port))
        assert "0 registrations restored" in last_line(sw3, "softswitch up")
        ev.add(call_expecting(tmp_path, switch, ports, "1003", 480, "uac_after_unregister")).run().assert_success(1)


@pytest.mark.timeout(60)
def test_binding_survives_a_crash(tmp_path, switch_factory, ports, sip_port):
    """The store write is prompt and atomic: SIGKILL half a second after the 200 loses nothing."""
    ev = Evidence()
    with ev:
        config = make_config(sip_port, ports)
        sw1 = ev.add(switch_factory(config, sip_port=sip_port))
        phone = ev.add(RawUA(sip_port, user="1002"))
        r = phone.register([f"<{phone.contact()}>"], expires=300)
        assert r.status == 200, status_line(r)
        time.sleep(0.5)
        sw1.stop(signal.SIGKILL)
        sw2 = ev.add(switch_factory(config, sip_port=sip_port))
        assert "1 registrations restored" in last_line(sw2, "softswitch up")
        r = phone.register()
        assert r.status == 200 and list(bindings(r)) == [phone.contact()], bindings(r)
        phone.close()

"""The ACD on live calls: baresip agents (auto-answer) registered to a real switch, SIPp and baresip callers.

Who got offered a call is read from the agents' own call events (baresip CALL_INCOMING), never from the
switch: ring-all rings all three, longest-idle picks the idlest, round-robin rotates, top-down always starts
at the first (acceptance 1); wrap-up holds across two queues, N no-answers auto-pause, a busy agent is
skipped (2); an abandon is logged with position and wait, overflow after max wait reaches its destination,
the position/EWT announcement is found in the caller's received audio (3).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from peers.audio import read_wav
from peers.baresip import Baresip
from peers.evidence import Evidence
from peers.netutil import LOOPBACK, PortAllocator, free_udp_port
from peers.sipp import Sipp

from conftest import switch_config

AGENTS = ("1001", "1002", "1003")


def acd_config(sip_port: int, ports: PortAllocator, queues: str, agents: str, routes: str = "") -> str:
    """The test switch with ACD sections; the control socket on a short path (Unix sockets allow ~107 bytes)."""
    sock = f"/tmp/ss-{uuid.uuid4().hex[:12]}.sock"
    extra = routes + "\n[control]\nsocket = \"" + sock + "\"\n\n[acd]\nqueue_log = \"data/queue_log\"\n" + queues + agents
    config = switch_config(sip_port=sip_port, rtp=ports.range(60), extra=extra)
    return config.replace("t1_ms = 500\n", 't1_ms = 500\nauth_algorithms = ["MD5"]\n', 1)


def queue(name: str, **settings: object) -> str:
    lines = [f'\n[[queues]]\nname = "{name}"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    return "\n".join(lines) + "\n"


def agent(name: str, queues: dict[str, int], **settings: object) -> str:
    qs = ", ".join(f"{q} = {lvl}" for q, lvl in queues.items())
    lines = [f'\n[[agents]]\nname = "{name}"\nqueues = {{ {qs} }}']
    lines += [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    return "\n".join(lines) + "\n"


def route(name: str, number: str, to: str) -> str:
    return f'\n[[routes]]\nname = "{name}"\nexact = "{number}"\nto = "{to}"\n'


def cli(sw, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "softswitch", *args, "--config", str(sw.config)],
                          capture_output=True, text=True, timeout=20)


def cli_json(sw, *args: str):
    out = cli(sw, *args, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def agent_states(sw) -> dict[str, dict]:
    return {a["name"]: a for a in cli_json(sw, "agent", "list")}


def queue_log(sw) -> list[list[str]]:
    path = sw.workdir / "data" / "queue_log"
    return [line.split("|") for line in path.read_text().splitlines()] if path.exists() else []


def start_agents(tmp_path: Path, ports: PortAllocator, sip_port: int, ev: Evidence, names=AGENTS,
                 auto_answer: bool = True, **kw) -> dict[str, Baresip]:
    phones = {}
    for name in names:
        phone = ev.add(Baresip(tmp_path / f"agent{name}", user=name, ports=ports, password=f"{name}pass",
                               registrar=f"{LOOPBACK}:{sip_port}", regint=600, auto_answer=auto_answer,
                               silence_seconds=120, record=False, **kw))
        phone.start()
        phones[name] = phone
    for phone in phones.values():
        phone.wait_registered(10)
    return phones


def incoming(phones: dict[str, Baresip]) -> dict[str, int]:
    """Calls each phone was offered: distinct baresip call ids of incoming calls (an auto-answering
    baresip reports no CALL_INCOMING, but every incoming call has a remote SDP offer)."""
    return {n: len({e.call_id for e in p.history if e.direction == "incoming"
                    or e.type == "CALL_INCOMING" or (e.type == "CALL_REMOTE_SDP" and e.param == "offer")})
            for n, p in phones.items()}


def offered_to(phones: dict[str, Baresip], before: dict[str, int]) -> list[str]:
    now = incoming(phones)
    return sorted(n for n in phones if now[n] > before[n])


def sipp_caller(tmp_path: Path, sip_port: int, number: str, hold_ms: int, name: str, calls: int = 1,
                **kw) -> Sipp:
    return Sipp(tmp_path / name, "uac", remote=f"{LOOPBACK}:{sip_port}", local_port=free_udp_port(),
                service=number, calls=calls, duration_ms=hold_ms, timeout=60, name=name, **kw)


def one_call(tmp_path: Path, sip_port: int, phones: dict[str, Baresip], label: str, number: str = "200",
             hold_ms: int = 2500) -> list[str]:
    """Place one queued call (SIPp holds ``hold_ms`` after the switch answers); return who was offered it."""
    before = incoming(phones)
    sipp_caller(tmp_path, sip_port, number, hold_ms, label).run().assert_success(1)
    time.sleep(0.3)
    return offered_to(phones, before)


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def dial_code(phone: Baresip, sip_port: int, code: str) -> None:
    """An agent dials a feature code: the switch answers, says what it did and hangs up."""
    phone.dial(f"sip:{code}@{LOOPBACK}:{sip_port}")
    phone.wait_event("CALL_ESTABLISHED", 10, fail_on=("CALL_CLOSED",))
    phone.wait_event("CALL_CLOSED", 15)


# --- 1. strategies, from the agents' own events -----------------------------------------

@pytest.mark.timeout(240)
def test_strategies_seen_from_the_agents_phones(tmp_path, switch_factory, ports, sip_port):
    config = acd_config(sip_port, ports, queue("support", strategy="longest-idle-agent", ring_timeout_s=8,
                                               record="bridge"),
                        "".join(agent(n, {"support": 0}, logged_in=False) for n in AGENTS),
                        route("queue", "200", "queue:support"))
    ev = Evidence()
    with ev:
        sw = ev.add(switch_factory(config, sip_port=sip_port))
        phones = start_agents(tmp_path, ports, sip_port, ev)
        assert {a["state"] for a in agent_states(sw).values()} == {"logged_out"}
        # log in by feature code from the phones, in the order 1003, 1001, 1002: 1003 is the idlest
        for name in ("1003", "1001", "1002"):
            dial_code(phones[name], sip_port, "*45")
            time.sleep(1.2)
        states = agent_states(sw)
        assert all(states[n]["state"] == "available" for n in AGENTS), states

        got = [one_call(tmp_path, sip_port, phones, f"lia{i}") for i in range(3)]
        assert got == [["1003"], ["1001"], ["1002"]], f"longest-idle-agent offered {got}"

        # round-robin remembers the last agent offered in the queue (1002): it goes on after it
        assert cli(sw, "queue", "set", "support", "strategy=round-robin").returncode == 0
        got = [one_call(tmp_path, sip_port, phones, f"rr{i}") for i in range(4)]
        assert got == [["1003"], ["1001"], ["1002"], ["1003"]], f"round-robin offered {got}"

        assert cli(sw, "queue", "set", "support", "strategy=top-down").returncode == 0
        got = [one_call(tmp_path, sip_port, phones, f"td{i}") for i in range(2)]
        assert got == [["1001"], ["1001"]], f"top-down offered {got}"

        assert cli(sw, "queue", "set", "support", "strategy=ring-all").returncode == 0
        got = one_call(tmp_path, sip_port, phones, "ra")
        assert got == ["1001", "1002", "1003"], f"ring-all offered {got}"

        cdrs = sw.wait_cdrs(10 + 3, timeout=20)
        queued = [c for c in cdrs if c.get("queue")]
        assert len(queued) == 10, [c.get("queue") for c in cdrs]
        assert all(c["queue"]["outcome"] == "answered" and c["queue"]["agent"] in AGENTS for c in queued), \
            [c["queue"] for c in queued]
        # the queue records from the bridge: one stereo WAV per answered call, with its statistics
        for c in queued:
            rec = c["recording"]
            assert Path(rec["path"]).is_file() and rec["duration_s"] > 1.0 and "error" not in rec, rec
            assert {"caller_talk_s", "agent_talk_s", "overlap_s", "silence_s"} <= set(rec["stats"]), rec
        status = cli_json(sw, "queue", "status")
        support = next(q for q in status if q["name"] == "support")
        assert support["offered"] == support["answered"] == 10 and support["waiting"] == 0, support
        events = [row[4] for row in queue_log(sw)]
        assert events.count("CONNECT") == 10 and events.count("ENTERQUEUE") == 10, events
        assert events.count("COMPLETECALLER") + events.count("COMPLETEAGENT") == 10, events
        # ring-all: the two agents who lost the race were hung up, nobody is left offering or on a call
        wait_for(lambda: all(a["state"] == "available" for a in agent_states(sw).values()), 10,
                 "every agent available again")


# --- 2. wrap-up across queues, auto-pause after no-answers, busy agents skipped -----------

@pytest.mark.timeout(240)
def test_wrap_up_across_queues_auto_pause_and_busy_skip(tmp_path, switch_factory, ports, sip_port):
    queues = (queue("support", strategy="top-down", wrap_up_s=5, ring_timeout_s=5)
              + queue("sales", strategy="top-down", ring_timeout_s=5)
              + queue("backoffice", strategy="top-down", ring_timeout_s=2, leave_when_empty=True))
    agents = (agent("1001", {"support": 0, "sales": 0}) + agent("1002", {"sales": 1})
              + agent("1003", {"backoffice": 0}, max_no_answer=2, no_answer_delay_s=0.5))
    routes = route("support", "201", "queue:support") + route("sales", "202", "queue:sales") + \
        route("backoffice", "203", "queue:backoffice")
    ev = Evidence()
    with ev:
        sw = ev.add(switch_factory(acd_config(sip_port, ports, queues, agents, routes), sip_port=sip_port))
        phones = start_agents(tmp_path, ports, sip_port, ev, names=("1001", "1002"))
        phones |= start_agents(tmp_path, ports, sip_port, ev, names=("1003",), auto_answer=False)
        duo = {n: phones[n] for n in ("1001", "1002")}

        # wrap-up: 1001 takes a support call; during its 5 s wrap-up a sales call goes to 1002 (level 1)
        assert one_call(tmp_path, sip_port, duo, "support1", "201", hold_ms=1500) == ["1001"]
        assert agent_states(sw)["1001"]["state"] == "wrap_up"
        assert one_call(tmp_path, sip_port, duo, "sales1", "202", hold_ms=1500) == ["1002"]
        wait_for(lambda: agent_states(sw)["1001"]["state"] == "available", 10, "1001's wrap-up to end")
        time.sleep(0.3)
        assert one_call(tmp_path, sip_port, duo, "sales2", "202", hold_ms=1500) == ["1001"]
        time.sleep(0.3)
        assert agent_states(sw)["1001"]["state"] == "available"   # sales has no wrap-up

        # busy: 1001 is on a call the ACD did not place (to the echo service): the sales call skips it
        phones["1001"].dial(f"sip:echo@{LOOPBACK}:{sip_port}")
        phones["1001"].wait_event("CALL_ESTABLISHED", 10, fail_on=("CALL_CLOSED",))
        assert agent_states(sw)["1001"]["state"] == "busy"
        assert one_call(tmp_path, sip_port, duo, "sales3", "202", hold_ms=1500) == ["1002"]
        phones["1001"].hangup()
        wait_for(lambda: agent_states(sw)["1001"]["state"] == "available", 5, "1001 free after its own call")

        # auto-pause: 1003 never answers; after 2 no-answers it is paused and the caller leaves the
        # now-empty queue (leave_when_empty)
        before = incoming({"1003": phones["1003"]})
        Sipp(tmp_path / "back1", "uac_wait_bye.xml", remote=f"{LOOPBACK}:{sip_port}", local_port=free_udp_port(),
             service="203", calls=1, timeout=40).run().assert_success(1)
        rung = incoming({"1003": phones["1003"]})["1003"] - before["1003"]
        assert rung == 2, f"1003 was offered {rung} times"
        paused = agent_states(sw)["1003"]
        assert paused["state"] == "paused" and paused["pause_reason"] == "auto-no-answer", paused

        log = queue_log(sw)
        assert [r[4] for r in log if r[3] == "1003" and r[4] in ("RINGNOANSWER", "PAUSE")] == \
            ["RINGNOANSWER", "RINGNOANSWER", "PAUSE"], log
        cdrs = [c for c in sw.wait_cdrs(7, timeout=20) if c.get("queue")]
        outcomes = sorted((c["queue"]["queue"], c["queue"]["outcome"], c["queue"]["agent"] or "") for c in cdrs)
        assert outcomes == [("backoffice", "left_empty", ""), ("sales", "answered", "1001"),
                            ("sales", "answered", "1002"), ("sales", "answered", "1002"),
                            ("support", "answered", "1001")], outcomes


# --- 3. abandon with position and wait, overflow after max wait, the announcement heard ---

def best_window_correlation(received: np.ndarray, expected: np.ndarray) -> float:
    """max over lags of the normalised correlation of ``expected`` with the same-length window of
    ``received`` (so the music on hold around the announcement does not dilute it)."""
    r = received.astype(np.float64)
    e = expected.astype(np.float64) - expected.mean()
    n = len(r) + len(e)
    nfft = 1 << (n - 1).bit_length()
    num = np.fft.irfft(np.fft.rfft(r, nfft) * np.conj(np.fft.rfft(e, nfft)), nfft)[:len(r) - len(e) + 1]
    csum = np.concatenate([[0.0], np.cumsum(r)])
    csum2 = np.concatenate([[0.0], np.cumsum(r * r)])
    m = len(e)
    win_sum = csum[m:] - csum[:-m]
    win_energy = csum2[m:] - csum2[:-m] - win_sum ** 2 / m
    denom = np.sqrt(np.maximum(win_energy, 1e-9) * np.dot(e, e))
    return float(np.max(num / denom))


@pytest.mark.timeout(180)
def test_abandon_overflow_and_the_position_announcement(tmp_path, switch_factory, ports, sip_port):
    import asyncio

    from softswitch.acd.service import announcement_text
    from softswitch.media.tts import EspeakTts
    queues = (queue("support", ring_timeout_s=60, announce_frequency_s=30,
                    periodic_announce="say:Thank you for holding.", periodic_announce_s=4)
              + queue("sales", max_wait_s=3, overflow="user:1003")
              + queue("night", join_empty=False, overflow="flow:voicemail"))
    agents = agent("1002", {"support": 0}) + agent("1003", {"sales": 0}, logged_in=False)
    routes = route("support", "201", "queue:support") + route("sales", "202", "queue:sales") + \
        route("night", "203", "queue:night")
    ev = Evidence()
    with ev:
        sw = ev.add(switch_factory(acd_config(sip_port, ports, queues, agents, routes), sip_port=sip_port))
        ringing = start_agents(tmp_path, ports, sip_port, ev, names=("1002",), auto_answer=False)
        answering = start_agents(tmp_path, ports, sip_port, ev, names=("1003",))

        # a caller waits 8 s while 1002 rings unanswered, hears its position/EWT, and hangs up
        caller = ev.add(Baresip(tmp_path / "caller", user="1001", ports=ports, password="1001pass",
                                registrar=f"{LOOPBACK}:{sip_port}", regint=600, silence_seconds=30))
        caller.start()
        caller.wait_registered(10)
        caller.dial(f"sip:201@{LOOPBACK}:{sip_port}")
        caller.wait_event("CALL_ESTABLISHED", 10, fail_on=("CALL_CLOSED",))
        time.sleep(8)
        caller.hangup()
        caller.wait_event("CALL_CLOSED", 10)
        abandon = wait_for(lambda: [r for r in queue_log(sw) if r[4] == "ABANDON"], 5, "the ABANDON line")
        assert len(abandon) == 1, queue_log(sw)
        position, orig_position, wait = abandon[0][5:8]
        assert (position, orig_position) == ("1", "1") and 7 <= int(wait) <= 10, abandon
        ringing["1002"].wait_event("CALL_CLOSED", 10)   # its offer was cancelled

        # the announcement: 1002 is staffed (ringing), no call handled yet -> 1 x 180 s / 1 agent
        text = announcement_text(1, 180.0)
        assert text == "You are number 1 in the queue. Your estimated wait time is about 3 minutes."
        tts = EspeakTts(tmp_path / "tts")
        expected = asyncio.run(tts.synthesize(text))
        heard = read_wav(caller.recordings()[1])[1]
        score = best_window_correlation(heard, expected)
        other = best_window_correlation(heard, asyncio.run(tts.synthesize("Please leave a message after the tone.")))
        periodic = best_window_correlation(heard, asyncio.run(tts.synthesize("Thank you for holding.")))
        print(f"[measured] announcement correlation {score:.2f}, periodic {periodic:.2f} "
              f"(unrelated speech {other:.2f})")
        assert score > 0.6 and score > other + 0.25, (score, other)
        assert periodic > 0.6 and periodic > other + 0.25, (periodic, other)

        # overflow: nobody in sales; after max_wait_s = 3 the caller goes to extension 1003
        before = incoming(answering)
        sipp_caller(tmp_path, sip_port, "202", 6000, "overflow").run().assert_success(1)
        assert offered_to(answering, before) == ["1003"]
        events = [r[4] for r in queue_log(sw) if r[2] == "sales"]
        assert events == ["ENTERQUEUE", "EXITWITHTIMEOUT"], queue_log(sw)
        cdrs = sw.wait_cdrs(2, timeout=15)
        by_queue = {c["queue"]["queue"]: c for c in cdrs if c.get("queue")}
        assert by_queue["support"]["queue"]["outcome"] == "abandoned", by_queue["support"]["queue"]
        assert by_queue["support"]["queue"]["position"] == 1, by_queue["support"]["queue"]
        sales = by_queue["sales"]
        assert sales["queue"]["outcome"] == "overflowed" and sales["queue"]["overflow"] == "user:1003", sales
        assert 2.5 <= sales["queue"]["wait_s"] <= 5, sales["queue"]
        assert any(leg.get("target") == "user:1002" or leg.get("target") == "user:1003" and leg["status"] == 200
                   for leg in sales["legs"]), sales["legs"]

        # overflow to an IVR flow: nobody staffed in night (join_empty false) -> the shipped voicemail flow
        Sipp(tmp_path / "night", "uac_wait_bye.xml", remote=f"{LOOPBACK}:{sip_port}", local_port=free_udp_port(),
             service="203", calls=1, timeout=60).run().assert_success(1)
        night = next(c for c in sw.wait_cdrs(3, timeout=15) if (c.get("queue") or {}).get("queue") == "night")
        assert night["queue"]["outcome"] == "overflowed" and night["queue"]["overflow"] == "flow:voicemail", night
        assert night["ivr"]["flow"] == "voicemail" and night["ivr"]["path"][:2] == ["greeting", "message"], night
        status = {q["name"]: q for q in cli_json(sw, "queue", "status")}
        assert status["support"]["abandoned"] == 1 and status["sales"]["overflowed"] == 1, status
        assert status["night"]["overflowed"] == 1 and status["night"]["offered"] == 1, status

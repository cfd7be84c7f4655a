"""The ACD under load (acceptance 4): 200 SIPp callers, 20 SIPp agents that register and auto-answer.

One SIPp process registers the 20 agent users (digest auth, register_auth.xml, all with a Contact at the same
port P) and exits; a SIPp UAS (acd_agent_uas.xml) then binds P and answers every call the switch offers to
any of them: 180, 200 after a 300 ms ring, 1-3 s of talk, BYE; a CANCEL while ringing, a CANCEL crossing the
200 and the caller's BYE first are handled too. SIPp callers (acd_caller.xml) dial queue `support` at 12.5
calls/s; each has a patience of 1-15 s after the switch answered, then hangs up unless the switch hung up
first. `support` (all 20 agents; longest-idle-agent, and in a second run ring-all, where most offers end in a
CANCEL, often crossing the agent's 200) gives up on a caller after 2.5 s and overflows it to
queue `backup` (ring-all, two of the agents, served first: weight 1), which times callers out after 3 s
(the switch says sorry and hangs up): every outcome happens — answered, abandoned, overflowed, timed out
(the agents' capacity, about 8 calls/s with 1-3 s talk, is below the 12.5 calls/s offered).

What is checked is the switch's own bookkeeping, against itself and the callers:
- per queue, offered == answered + abandoned + timed_out + overflowed + left_empty; support offered 200,
  backup offered == support overflowed; nobody waiting at the end;
- every agent `available` again (none offering, on a call, resting or paused: `agent list`), and the agents'
  calls add up to the answered stays;
- 200 CDRs with a `queue` object (one per caller); per queue the CDR outcomes (the last attempt and the
  `previous` ones) count what `queue status` counts;
- queue_log: per stay exactly one terminal line matching the CDR's outcome (CONNECT then one COMPLETEAGENT or
  COMPLETECALLER for answered, ABANDON, EXITWITHTIMEOUT for timed out and overflowed), and ENTERQUEUE once;
- the switch log has no traceback/error, the SIPp peers saw no protocol failure.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from peers.netutil import LOOPBACK, PortAllocator, free_udp_port
from peers.sipp import Sipp, auth_inf_row, write_inf

from conftest import switch_config

AGENTS = [str(n) for n in range(2001, 2021)]
BACKUP_AGENTS = AGENTS[-2:]
CALLERS = 200
RATE = 12.5
QUEUE_NUMBER = "200"
TERMINAL = {"CONNECT", "ABANDON", "EXITWITHTIMEOUT", "EXITEMPTY", "JOINEMPTY", "FULL"}
OUTCOME_EVENT = {"answered": "CONNECT", "abandoned": "ABANDON", "timed_out": "EXITWITHTIMEOUT",
                 "overflowed": "EXITWITHTIMEOUT", "left_empty": "EXITEMPTY"}


def load_config(sip_port: int, ports: PortAllocator, strategy: str) -> str:
    sock = f"/tmp/ss-{uuid.uuid4().hex[:12]}.sock"
    users = "".join(f'\n[[users]]\nname = "{n}"\npassword = "{n}pass"\n' for n in AGENTS)
    queues = f"""
[[queues]]
name = "support"
strategy = "{strategy}"
ring_timeout_s = 5
max_wait_s = 2.5
service_level_s = 20
overflow = "queue:backup"

[[queues]]
name = "backup"
strategy = "ring-all"
ring_timeout_s = 5
max_wait_s = 3
weight = 1
"""
    agents = "".join(
        f'\n[[agents]]\nname = "{n}"\nqueues = {{ support = 0{", backup = 0" if n in BACKUP_AGENTS else ""} }}\n'
        for n in AGENTS)
    extra = (users + f'\n[[routes]]\nname = "queue"\nexact = "{QUEUE_NUMBER}"\nto = "queue:support"\n'
             + f'\n[control]\nsocket = "{sock}"\n\n[acd]\nqueue_log = "data/queue_log"\n' + queues + agents)
    # 200 terminated callers + 20 agent legs: 2 RTP/RTCP pairs each at most
    config = switch_config(sip_port=sip_port, rtp=ports.range(1000), extra=extra)
    return config.replace("t1_ms = 500\n", 't1_ms = 500\nauth_algorithms = ["MD5"]\n', 1)


def cli_json(sw, *args: str):
    out = subprocess.run([sys.executable, "-m", "softswitch", *args, "--config", str(sw.config), "--json"],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def queue_log(sw) -> list[list[str]]:
    path = sw.workdir / "data" / "queue_log"
    return [line.split("|") for line in path.read_text().splitlines()] if path.exists() else []


def register_agents(tmp_path: Path, sip_port: int, agent_port: int) -> None:
    """All 20 agents registered from ``agent_port`` (Contact sip:NAME@127.0.0.1:agent_port), 1 h expiry."""
    inf = write_inf(tmp_path / "agents.csv", [auth_inf_row(n, f"{n}pass") for n in AGENTS])
    reg = Sipp(tmp_path / "register", "register_auth.xml", remote=f"{LOOPBACK}:{sip_port}",
               local_port=agent_port, inf=inf, keys={"expires": 3600}, calls=len(AGENTS), rate=50, timeout=20)
    reg.run().assert_success(len(AGENTS))


def poll_until(predicate, timeout: float) -> bool:
    """True once ``predicate()`` is; False after ``timeout`` (the assertions that follow say what is wrong)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.25)
    return True


def stays(cdr: dict) -> list[dict]:
    """Every queue stay of a call, in order: the CDR's ``queue`` object is the last, ``previous`` the others."""
    q = cdr.get("queue")
    if not q:
        return []
    return [*q.get("previous", []), {k: v for k, v in q.items() if k != "previous"}]


@pytest.mark.timeout(150)
@pytest.mark.parametrize("strategy", ["longest-idle-agent", "ring-all"])
def test_200_callers_20_sipp_agents(tmp_path, switch_factory, strategy):
    """``strategy`` of queue `support`: ring-all rings every available agent for each caller, so most offers end
    in a CANCEL, many of them crossing the agent's 200 (the switch then ACKs and hangs up that leg)."""
    ports = PortAllocator()
    sip_port = ports.port()
    agent_port = free_udp_port()
    sw = switch_factory(load_config(sip_port, ports, strategy), sip_port=sip_port)

    register_agents(tmp_path, sip_port, agent_port)
    time.sleep(0.3)  # SIPp has let go of the port
    uas = Sipp(tmp_path / "agents", "acd_agent_uas.xml", local_port=agent_port, media_port=ports.port(),
               timeout=None, name="agents", extra_args=["-fd", "1"]).start()
    try:
        states = {a["name"]: a["state"] for a in cli_json(sw, "agent", "list")}
        assert all(states[n] == "available" for n in AGENTS), states

        callers = Sipp(tmp_path / "callers", "acd_caller.xml", remote=f"{LOOPBACK}:{sip_port}",
                       local_port=free_udp_port(), media_port=ports.port(), service=QUEUE_NUMBER,
                       calls=CALLERS, rate=RATE, limit=CALLERS, timeout=90, name="callers")
        started = time.monotonic()
        result = callers.run()
        caller_s = time.monotonic() - started

        # the switch writes the last CDRs off the event loop
        cdrs = sw.wait_cdrs(CALLERS, timeout=20)
        # nobody offering or on a call; an agent resting after a failed offer is back within its 5 s rest
        poll_until(lambda: {a["state"] for a in cli_json(sw, "agent", "list")} == {"available"}, 10)
    finally:
        agents_result = uas.stop(grace=3.0)

    assert result.returncode == 0 and not result.failed_calls, result.describe()
    assert result.successful_calls == CALLERS, result.describe()

    status = {q["name"]: q for q in cli_json(sw, "queue", "status")}
    agents = cli_json(sw, "agent", "list")
    log_rows = queue_log(sw)
    summary = {n: {k: status[n][k] for k in ("offered", "answered", "abandoned", "timed_out", "overflowed",
                                               "left_empty", "waiting")} for n in status}
    print(f"callers took {caller_s:.1f} s; queues {json.dumps(summary)}")

    # --- the queues' own counters
    for name, q in status.items():
        assert q["waiting"] == 0, (name, q)
        assert q["offered"] == q["answered"] + q["abandoned"] + q["timed_out"] + q["overflowed"] + q["left_empty"], \
            (name, q)
    support, backup = status["support"], status["backup"]
    assert support["offered"] == CALLERS, support
    assert backup["offered"] == support["overflowed"], (support, backup)
    stuck = [a for a in agents if a["state"] != "available"]
    assert not stuck, stuck
    # every answered stay was one agent's call; with longest-idle-agent every agent got some
    assert sum(a["calls"] for a in agents) == support["answered"] + backup["answered"], agents
    if strategy == "longest-idle-agent":
        assert all(a["calls"] > 0 for a in agents), agents

    # --- CDRs: one per caller, each with its stays; per queue their outcomes are the queue's counters
    queued = [c for c in cdrs if c.get("queue")]
    assert len(cdrs) == CALLERS and len(queued) == CALLERS, (len(cdrs), len(queued))
    per_queue: dict[str, Counter] = defaultdict(Counter)
    for cdr in queued:
        for stay in stays(cdr):
            per_queue[stay["queue"]][stay["outcome"]] += 1
    for name, q in status.items():
        counted = {k: per_queue[name][k] for k in ("answered", "abandoned", "timed_out", "overflowed", "left_empty")}
        assert counted == {k: q[k] for k in counted}, (name, counted, q)
        assert sum(per_queue[name].values()) == q["offered"], (name, per_queue[name], q)
    # every outcome happened (the load and the settings are chosen for it)
    assert support["answered"] and support["abandoned"] and support["overflowed"], support
    assert backup["timed_out"] or backup["abandoned"], backup

    # --- queue_log against the CDRs: per (call, queue) exactly one terminal line, and it matches the outcome
    events: dict[tuple[str, str], list[str]] = defaultdict(list)
    for row in log_rows:
        if len(row) >= 5 and row[1] != "NONE":
            events[(row[1], row[2])].append(row[4])
    problems = []
    for cdr in queued:
        for stay in stays(cdr):
            evs = events.pop((cdr["call_id"], stay["queue"]), [])
            terminal = [e for e in evs if e in TERMINAL]
            want = OUTCOME_EVENT.get(stay["outcome"])
            if evs.count("ENTERQUEUE") != 1 or terminal != [want]:
                problems.append((cdr["call_id"], stay["queue"], stay["outcome"], evs))
            elif want == "CONNECT":
                completes = [e for e in evs if e in ("COMPLETEAGENT", "COMPLETECALLER")]
                if len(completes) != 1 or evs.index(completes[0]) < evs.index("CONNECT"):
                    problems.append((cdr["call_id"], stay["queue"], stay["outcome"], evs))
    assert not problems, f"{len(problems)} stays whose queue_log does not match the CDR: {problems[:10]}"
    assert not events, f"queue_log lines for calls without a CDR stay: {list(events.items())[:10]}"

    # --- no trouble in the switch log, and the agents' side saw no protocol failure
    log_text = sw.log_path.read_text(errors="replace")
    bad = [line for line in log_text.splitlines() if "Traceback" in line or " ERROR " in line or "CRITICAL" in line]
    assert not bad, "\n".join(bad[:20])
    # the agents' SIPp: every INVITE it got (answered, or cancelled while ringing) ended as its scenario wants
    assert agents_result.successful_calls and agents_result.failed_calls == 0, agents_result.describe()
    assert agents_result.successful_calls >= support["answered"] + backup["answered"], agents_result.describe()

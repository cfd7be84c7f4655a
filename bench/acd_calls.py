#!/usr/bin/env python3
"""Calls per second the ACD sustains end to end, with SIPp agents registered to the switch.

  SIPp callers (bench/scenarios/acd_caller.xml)  -> softswitch, route `200` -> queue `support`      pinned: taskset -c 0
     answered by the switch, music on hold, then bridged to an agent; the agent hangs up
  SIPp agents (bench/scenarios/acd_agent_uas.xml): --agents users registered with digest auth from one port
     (tests/scenarios/register_auth.xml, then the UAS binds that port), ring 50 ms, 200 OK, talk 50-150 ms, BYE
  Both SIPp processes (and this script) run on core 1. Queue `support`: longest-idle-agent, zero wrap-up, no
  max wait, service_level_s = --service-level; callers are patient (30 s), so every call should be answered.

For each rate R of --rates (going up until a step fails, then one step halfway back) a freshly started switch
(fresh CDR store and queue_log) gets the agents registered, then R x --step-seconds callers at R calls/s.
Measured per step from the moment the callers start until every CDR is written:
  - offered/answered (`softswitch queue status --json`), the share answered within the service level, ASA
    (queue status) and the wait time p50/p95/max from the CDRs' `queue.wait_s`;
  - the switch's CPU (utime+stime, /proc/<pid>/stat, checked against the `cpu_s=` of its SIGUSR1 `stats:` line):
    % of its core and ms of CPU per call; from the same line, how late its media clock ran (the music on hold
    every waiting caller gets: late + skipped frames, busy seconds);
  - nothing stuck afterwards: no caller waiting, every agent `available` (`softswitch agent list --json`), no call
    left in the switch (`calls=0` in the stats line);
  - the longest stall: seconds in a row, mid-step, in which the agents' SIPp got no call (its -fd 1 statistics).
A step passes when >= 99 % of the callers were answered within the service level, every SIPp call succeeded
and nothing is stuck.
Peer, measured in the same run on the same switch right after each ACD step: the same callers at the same
rate dial `9200` instead, a route straight out of trunk `loopback` to the same SIPp UAS (one "agent", which
rings and talks the same), without the ACD: the switch relays the call instead of answering, holding and
bridging it. ACD CPU per call / peer CPU per call is what the ACD costs.

Prints one JSON object and rewrites the ``acd_calls`` section of docs/benchmarks.md (``--doc`` for another file).
Run: ``python bench/acd_calls.py`` (about 4-7 minutes), ``--quick`` for a smoke test (< 1 min), ``--no-write``
to leave the docs alone.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (CALL_PORTS as PORT, CALL_RTP_RANGE as RTP_RANGE, REPO, SCENARIOS, SIPP,  # noqa: E402
                     SIPP_BUFF, SIPP_CPU, Processes, Proc, add_output_options, climb_steps, halfway_back, commands_block,
                     log_problems, machine_info, make_workdir, md_table, pinned_command, prefer_checkout, read_cdrs,
                     run_and_report, say, sipp_stats, start_switch, switch_config, update_doc_section,
                     keep_off_switch_core)
from media_calls import switch_stats  # noqa: E402 - SIGUSR1 -> the `stats:` line, with /proc CPU times

QUEUE_NUMBER = "200"
PEER_NUMBER = "9200"                  # prefix 9 (stripped) -> trunk loopback -> the agents' SIPp port
REGISTER = REPO / "tests" / "scenarios" / "register_auth.xml"
AGENT_UAS = SCENARIOS / "acd_agent_uas.xml"
CALLER = SCENARIOS / "acd_caller.xml"
REGISTER_CP = 15887
MIN_IN_SL = 0.99
TALK_S = (0.05, 0.15)                 # bench/scenarios/acd_agent_uas.xml: uniform talk time
RING_S = 0.05                         # ... and ring delay


# ---------------------------------------------------------------------------------------------- set-up
def agent_names(n: int) -> list[str]:
    return [str(2001 + i) for i in range(n)]


def acd_config(agents: list[str], service_level: float, log_level: str, db: str, queue_log: str, sock: str) -> str:
    """harness.switch_config (prefix 9 -> trunk loopback -> the agents' port: the peer) plus the agent users,
    queue `support`, its route and the control socket the CLI talks to."""
    text = switch_config(PORT["switch"], PORT["uas"], RTP_RANGE, db=db, log_level=log_level)
    if 'domain = "127.0.0.1"\n' not in text:
        raise RuntimeError("harness.switch_config changed: no [sip] domain line to add auth_algorithms after")
    text = text.replace('domain = "127.0.0.1"\n', 'domain = "127.0.0.1"\nauth_algorithms = ["MD5"]\n', 1)
    users = "".join(f'\n[[users]]\nname = "{n}"\npassword = "{n}pass"\n' for n in agents)
    members = "".join(f'\n[[agents]]\nname = "{n}"\nqueues = {{ support = 0 }}\n' for n in agents)
    return text + users + f"""
[[routes]]
name = "queue"
exact = "{QUEUE_NUMBER}"
source = "any"
to = "queue:support"

[control]
socket = "{sock}"

[acd]
queue_log = "{queue_log}"

[[queues]]
name = "support"
strategy = "longest-idle-agent"
ring_timeout_s = 5
wrap_up_s = 0
max_wait_s = 0
service_level_s = {service_level:g}
""" + members


def register_argv(n: int, inf: Path, stat: Path, err: Path) -> list[str]:
    return [SIPP, "-nostdin", "-sf", str(REGISTER), "-i", "127.0.0.1", "-p", str(PORT["uas"]), "-cp",
            str(REGISTER_CP), "-inf", str(inf), "-key", "expires", "3600", "-m", str(n), "-r", "100",
            "-timeout", "20s", "-timeout_error", "-trace_stat", "-stf", str(stat), "-trace_err", "-error_file",
            str(err), f"127.0.0.1:{PORT['switch']}"]


def agents_argv(stat: Path, err: Path) -> list[str]:
    return [SIPP, "-nostdin", "-sf", str(AGENT_UAS), "-i", "127.0.0.1", "-p", str(PORT["uas"]), "-cp",
            str(PORT["uas_cp"]), "-mp", str(PORT["uas_media"]), *SIPP_BUFF, "-trace_stat", "-stf", str(stat),
            "-fd", "1", "-trace_err", "-error_file", str(err), "-max_log_size", "1000000"]


def callers_argv(number: str, rate: float, calls: int, stat: Path, err: Path) -> list[str]:
    return [SIPP, "-nostdin", "-sf", str(CALLER), "-i", "127.0.0.1", "-p", str(PORT["uac"]), "-cp",
            str(PORT["uac_cp"]), "-mp", str(PORT["uac_media"]), "-s", number, "-r", f"{rate:g}", "-m", str(calls),
            "-l", str(calls), *SIPP_BUFF, "-trace_stat", "-stf", str(stat), "-fd", "1", "-trace_err",
            "-error_file", str(err), "-max_log_size", "1000000", f"127.0.0.1:{PORT['switch']}"]


def cli_json(config: Path, work: Path, *args: str):
    out = subprocess.run([sys.executable, "-m", "softswitch", *args, "--config", str(config), "--json"],
                         cwd=work, capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        raise RuntimeError(f"softswitch {' '.join(args)} failed: {out.stderr.strip()[-300:]}")
    return json.loads(out.stdout)


def offer_stall_s(agents_csv: Path, since: float) -> int | None:
    """Longest run of whole seconds, after ``since`` (epoch), in which the agents' SIPp got no new call although
    calls came again after it (its -fd 1 statistics): how long the ACD offered nothing to anyone mid-step."""
    try:
        rows = list(csv.reader(agents_csv.open(newline=""), delimiter=";"))
    except OSError:
        return None
    if len(rows) < 2 or "IncomingCall(P)" not in rows[0]:
        return None
    i, t = rows[0].index("IncomingCall(P)"), rows[0].index("CurrentTime")
    series = [int(r[i]) for r in rows[1:] if len(r) > i and float(r[t].split("\t")[-1]) >= since]
    longest = run = 0
    seen = False
    for n in series:
        if n:
            if seen:
                longest = max(longest, run)
            seen, run = True, 0
        elif seen:
            run += 1
    return longest


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))], 3)


# ---------------------------------------------------------------------------------------------- one phase
def run_callers(procs: Processes, work: Path, switch: Proc, config: Path, name: str, number: str, rate: float,
                calls: int) -> dict:
    """R x S callers dialling ``number``; CPU from their start until the last CDR is written."""
    stat, err = work / f"{name}-callers.csv", work / f"{name}-callers-err.log"
    s0 = switch_stats(switch)
    t0 = time.monotonic()
    uac = procs.start(f"callers-{name}", callers_argv(number, rate, calls, stat, err), work,
                      work / f"{name}-callers.log", cpu=SIPP_CPU)
    try:
        uac.wait(calls / rate + 60)
    except subprocess.TimeoutExpired:
        say(f"  {name}: callers still running {calls / rate + 60:.0f} s after start: stopping them")
    procs.stop(uac)
    marker = f"-{uac.pid}@"
    deadline = time.monotonic() + 30
    cdrs = [c for c in read_cdrs(config, work) if marker in c.get("sip_call_id", "")]
    while len(cdrs) < calls and time.monotonic() < deadline:
        time.sleep(0.5)
        cdrs = [c for c in read_cdrs(config, work) if marker in c.get("sip_call_id", "")]
    t1 = time.monotonic()
    s1 = switch_stats(switch)
    st = sipp_stats(stat)
    out: dict = {"calls": calls, "successful": st.successful if st else 0, "failed": st.failed if st else None,
                 "sipp_failures": st.failures if st else {}, "cdrs": len(cdrs),
                 "answered_cdrs": sum(1 for c in cdrs if c.get("answer_ts")), "wall_s": round(t1 - t0, 1)}
    starts = sorted(c["start_ts"] for c in cdrs if c.get("start_ts"))
    if len(starts) > 1:
        out["achieved_cps"] = round((len(starts) - 1) / (starts[-1] - starts[0]), 1)
    if s0 and s1:
        cpu = (s1["proc_utime"] + s1["proc_stime"]) - (s0["proc_utime"] + s0["proc_stime"])
        out.update(cpu_s=round(cpu, 2), stats_cpu_s=round(s1.get("cpu_s", 0) - s0.get("cpu_s", 0), 2),
                   switch_core_pct=round(100 * cpu / (s1["t"] - s0["t"]), 1),
                   cpu_ms_per_call=round(1000 * cpu / calls, 2))
        d = {k: s1.get(k, 0) - s0.get(k, 0) for k in ("media_frames", "media_late_frames", "media_skipped_frames",
                                                      "media_busy_s")}
        sent = d["media_frames"] + d["media_skipped_frames"]
        out.update(moh_frames=d["media_frames"], media_busy_s=round(d["media_busy_s"], 1),
                   media_late_pct=round(100 * (d["media_late_frames"] + d["media_skipped_frames"]) / sent, 1)
                   if sent else 0.0)
    out["_cdrs"] = cdrs
    return out


def acd_figures(res: dict, config: Path, work: Path, switch: Proc, service_level: float) -> None:
    """Queue counters, waits, and the stuck check of an ACD phase (into ``res``)."""
    cdrs = res.pop("_cdrs")
    deadline = time.monotonic() + 10
    while True:  # an agent whose call just ended is `available` again within the event loop's next turn
        agents = cli_json(config, work, "agent", "list")
        status = next(q for q in cli_json(config, work, "queue", "status") if q["name"] == "support")
        busy = sorted({a["state"] for a in agents} - {"available"})
        if (not busy and not status["waiting"]) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    stats = switch_stats(switch)
    queued = [c["queue"] for c in cdrs if c.get("queue")]
    waits = [q["wait_s"] for q in queued if q.get("outcome") == "answered" and q.get("wait_s") is not None]
    in_sl = sum(1 for w in waits if w <= service_level)
    res.update({k: status[k] for k in ("offered", "answered", "abandoned", "timed_out", "overflowed", "left_empty",
                                       "waiting", "asa_s", "service_level_pct")})
    res.update(answer_ratio=round(status["answered"] / res["calls"], 4) if res["calls"] else None,
               in_sl=in_sl, in_sl_ratio=round(in_sl / res["calls"], 4) if res["calls"] else None,
               wait_p50_s=pct(waits, 50), wait_p95_s=pct(waits, 95), wait_max_s=max(waits) if waits else None,
               agents_not_available=[f"{a['name']}:{a['state']}" for a in agents if a["state"] != "available"],
               agent_calls_min=min(a["calls"] for a in agents), agent_calls_max=max(a["calls"] for a in agents),
               calls_left_in_switch=stats.get("calls") if stats else None)
    problems = []
    if res["successful"] != res["calls"] or res["failed"]:
        problems.append(f"SIPp callers: {res['successful']} of {res['calls']} succeeded"
                        + (f" ({res['sipp_failures']})" if res["sipp_failures"] else ""))
    if res["in_sl_ratio"] is None or res["in_sl_ratio"] < MIN_IN_SL:
        problems.append(f"{in_sl} of {res['calls']} answered within {service_level:g} s "
                        f"(< {100 * MIN_IN_SL:g} %)")
    if status["offered"] != res["calls"]:
        problems.append(f"{status['offered']} of {res['calls']} callers reached the queue")
    outcomes = ("answered", "abandoned", "timed_out", "overflowed", "left_empty")
    if status["offered"] != sum(status[k] for k in outcomes):
        problems.append("queue counters do not add up: " + ", ".join(f"{k} {status[k]}"
                                                                      for k in ("offered", *outcomes)))
    elif status["abandoned"]:
        problems.append(f"{status['abandoned']} callers gave up after 30 s")
    if status["waiting"] or res["agents_not_available"] or res["calls_left_in_switch"]:
        problems.append(f"stuck: {status['waiting']} waiting, agents {res['agents_not_available'] or 'ok'}, "
                        f"{res['calls_left_in_switch']} calls left in the switch")
    res["passed"], res["reason"] = not problems, "; ".join(problems)


def peer_figures(res: dict, switch: Proc) -> None:
    cdrs = res.pop("_cdrs")
    stats = switch_stats(switch)
    res["calls_left_in_switch"] = stats.get("calls") if stats else None
    setup = [c["answer_ts"] - c["start_ts"] for c in cdrs if c.get("answer_ts") and c.get("start_ts")]
    res.update(answer_p50_s=pct(setup, 50), answer_p95_s=pct(setup, 95))
    ok = res["successful"] == res["calls"] and not res["failed"] and res["answered_cdrs"] == res["calls"]
    res["passed"] = ok
    res["reason"] = "" if ok else f"SIPp callers: {res['successful']} of {res['calls']} succeeded, " \
                                  f"{res['answered_cdrs']} answered CDRs {res['sipp_failures'] or ''}"


# ---------------------------------------------------------------------------------------------- one step
def run_step(procs: Processes, work: Path, rate: float, args: argparse.Namespace, commands: dict[str, str]) -> dict:
    tag = f"r{rate:g}"
    names = agent_names(args.agents)
    sock = f"/tmp/ss-acd-bench-{tag}-{int(time.time()) % 100000}.sock"
    config = work / f"softswitch-{tag}.toml"
    config.write_text(acd_config(names, args.service_level, args.switch_log_level, f"data/acd-{tag}.db",
                                 f"data/queue_log-{tag}", sock))
    calls = int(round(rate * args.step_seconds))
    step: dict = {"rate": rate, "calls": calls, "agents": args.agents}
    switch = start_switch(procs, config, work, work / f"softswitch-{tag}.log")
    commands["softswitch"] = switch.command.replace(f"softswitch-{tag}.toml", "softswitch-rR.toml")
    try:
        inf = work / "agents.csv"
        inf.write_text("SEQUENTIAL\n" + "".join(f"{n};[authentication username={n} password={n}pass]\n"
                                                for n in names))
        reg = procs.start("register", register_argv(len(names), inf, work / f"{tag}-register.csv",
                                                    work / f"{tag}-register-err.log"), work,
                          work / f"{tag}-register.log", cpu=SIPP_CPU)
        rc = reg.wait(30)
        procs.stop(reg)
        rst = sipp_stats(work / f"{tag}-register.csv")
        if rc != 0 or not rst or rst.successful != len(names):
            raise RuntimeError(f"agent registration failed (exit {rc}): {reg.log_tail(10)}")
        commands["register"] = pinned_command(SIPP_CPU, register_argv(len(names), Path("WORK/agents.csv"),
                                                                      Path("register.csv"), Path("register-err.log")))
        time.sleep(0.3)
        agents = procs.start("agents", agents_argv(work / f"{tag}-agents.csv", work / f"{tag}-agents-err.log"),
                             work, work / f"{tag}-agents.log", cpu=SIPP_CPU)
        commands["agents"] = pinned_command(SIPP_CPU, agents_argv(Path("agents-stat.csv"), Path("agents-err.log")))
        time.sleep(0.5)
        if not agents.alive():
            raise RuntimeError(f"agents' SIPp exited: {agents.log_tail(10)}")
        states = {a["state"] for a in cli_json(config, work, "agent", "list")}
        if states != {"available"}:
            raise RuntimeError(f"agents not all available after registering: {states}")

        for label, number in (("callers (ACD)", QUEUE_NUMBER), ("callers (peer)", PEER_NUMBER)):
            commands[label] = pinned_command(SIPP_CPU, callers_argv(number, rate, calls, Path("callers.csv"),
                                                                    Path("callers-err.log"))).replace(
                f"-r {rate:g} -m {calls} -l {calls}", "-r R -m N -l N")
        acd_start = time.time()
        acd = run_callers(procs, work, switch, config, f"{tag}-acd", QUEUE_NUMBER, rate, calls)
        acd_figures(acd, config, work, switch, args.service_level)
        acd["offer_stall_s"] = offer_stall_s(work / f"{tag}-agents.csv", acd_start)
        step["acd"] = acd
        if not args.no_peer:
            time.sleep(1.0)
            peer = run_callers(procs, work, switch, config, f"{tag}-peer", PEER_NUMBER, rate, calls)
            peer_figures(peer, switch)
            step["peer"] = peer
        procs.stop(agents)
        ast = sipp_stats(work / f"{tag}-agents.csv")
        step["agents_sipp"] = ({"calls": ast.created, "successful": ast.successful, "failed": ast.failed}
                               if ast else None)
    except Exception as exc:  # noqa: BLE001 - one broken step is reported, the run goes on
        step["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        if not switch.alive():
            say(switch.log_tail())
            step["switch_died"] = True
        procs.stop(switch)
    count, first = log_problems(work / f"softswitch-{tag}.log")
    step["switch_log_problem_lines"], step["switch_log_problems_first"] = count, first[:5]
    acd, peer = step.get("acd", {}), step.get("peer", {})
    if acd.get("cpu_ms_per_call") and peer.get("cpu_ms_per_call"):
        step["cpu_ratio"] = round(acd["cpu_ms_per_call"] / peer["cpu_ms_per_call"], 2)
    reasons = [r for r in (step.get("error"), acd.get("reason"),
                           ("peer: " + peer["reason"]) if peer.get("reason") else None,
                           "the switch died" if step.get("switch_died") else None,
                           f"{count} ERROR/WARNING lines in the switch log" if count else None) if r]
    step["passed"] = bool(acd.get("passed")) and not reasons
    step["reason"] = "; ".join(reasons)
    return step


# ---------------------------------------------------------------------------------------------- report
def summarize(result: dict) -> None:
    steps = result["steps"]
    first_fail = min((s["rate"] for s in steps if not s.get("passed")), default=None)
    passing = [s["rate"] for s in steps if s.get("passed") and (first_fail is None or s["rate"] < first_fail)]
    result["max_cps"] = max(passing) if passing else 0
    result["limit_not_reached"] = bool(steps) and all(s.get("passed") for s in steps)
    best = next((s for s in steps if s["rate"] == result["max_cps"]), None)
    result["cpu_ratio_at_max"] = best.get("cpu_ratio") if best else None


def verdict(result: dict, args: argparse.Namespace) -> str:
    best = result["max_cps"]
    if not best:
        return "**No step passed.**"
    text = f"**The ACD sustained {best:g} calls/s end to end**"
    text += (" (every step passed: the limit is higher)" if result["limit_not_reached"] else "")
    fails = [s for s in result["steps"] if not s.get("passed")]
    if fails:
        f = min(fails, key=lambda s: s["rate"])
        a = f.get("acd", {})
        text += f"; at {f['rate']:g} calls/s: {f['reason']}"
        if a.get("switch_core_pct") is not None:
            text += f" (the switch used {a['switch_core_pct']} % of its core, {a.get('cpu_ms_per_call')} ms per call"
            if a.get("media_late_pct") is not None:
                text += (f"; its media clock sent {a['media_late_pct']} % of the music-on-hold frames late or "
                         f"skipped them")
            if a.get("offer_stall_s"):
                text += (f"; for {a['offer_stall_s']} s in a row the agents' SIPp got no call at all, in the middle "
                         f"of the step")
            text += ")"
    text += "."
    top = next((s for s in result["steps"] if s["rate"] == best), {})
    a = top.get("acd", {})
    if a.get("cpu_ms_per_call") and a.get("switch_core_pct") is not None:
        hold = RING_S + sum(TALK_S) / 2
        text += (f" At {best:g} calls/s the switch used {a['switch_core_pct']} % of its core, "
                 f"{a['cpu_ms_per_call']} ms of CPU per ACD call (one core's worth would be about "
                 f"{1000 / a['cpu_ms_per_call']:.0f} calls/s); {args.agents} agents holding a call {hold:.2f} s each "
                 f"(ring + talk) could take about {args.agents / hold:.0f} calls/s.")
        if top.get("cpu_ratio"):
            text += (f" The ACD costs {top['cpu_ratio']}× the CPU of the same call relayed without it (the switch "
                     f"answers the caller, plays music on hold, offers the call and bridges it; the peer only relays).")
    shed = [s for s in fails if "UnexpectedMessage" in (s.get("reason") or "")
            and (s.get("acd", {}).get("wait_max_s") or 0) <= args.service_level]
    if shed:
        s0 = min(shed, key=lambda s: s["rate"])
        a0 = s0.get("acd", {})
        text += (f" Past the limit the switch sheds load instead of collapsing: while its media clock runs a frame "
                 f"late on average it refuses new calls with 503 + Retry-After (`calls.overload_lateness`; SIPp "
                 f"counts those as unexpected messages), and the calls it admits are still answered within the "
                 f"service level (at {s0['rate']:g} calls/s: {a0.get('answered')} answered, wait p95 "
                 f"{a0.get('wait_p95_s')} s, max {a0.get('wait_max_s')} s). Without that protection the same "
                 f"step collapsed: the music on hold of ~2,000 piled-up callers took the event loop, agents got no "
                 f"offer for 25 s and only 25-40 % of callers were answered.")
    if fails and any((s.get("acd", {}).get("wait_max_s") or 0) > args.service_level for s in fails):
        text += (" Past the limit the queue does not degrade gracefully: once callers pile up, every waiting caller "
                 "gets music on hold (50 packets/s each) from the same event loop that has to offer calls to agents "
                 "and handle their BYEs, so the backlog itself slows the ACD down (see the failing step's waits and "
                 "late media frames).")
    return text


def cell(v, suffix: str = "") -> str:
    return "-" if v is None else f"{v}{suffix}"


def para(text: str) -> str:
    return textwrap.fill(" ".join(text.split()), width=115, break_long_words=False, break_on_hyphens=False)


def report(result: dict, args: argparse.Namespace, commands: dict[str, str]) -> str:
    m = result["machine"]
    rows = []
    for s in sorted(result["steps"], key=lambda s: s["rate"]):
        a, p = s.get("acd", {}), s.get("peer", {})
        rows.append([
            f"{s['rate']:g}", s["calls"], f"{cell(a.get('offered'))} / {cell(a.get('answered'))}",
            cell(None if a.get("in_sl_ratio") is None else round(100 * a["in_sl_ratio"], 1), " %"),
            cell(a.get("asa_s"), " s"), f"{cell(a.get('wait_p50_s'))} / {cell(a.get('wait_p95_s'))} / "
                                        f"{cell(a.get('wait_max_s'))}",
            cell(a.get("achieved_cps")), cell(a.get("switch_core_pct")), cell(a.get("cpu_ms_per_call")),
            cell(a.get("media_late_pct"), " %"),
            cell(p.get("switch_core_pct")), cell(p.get("cpu_ms_per_call")), cell(s.get("cpu_ratio"), "×"),
            "✓" if s.get("passed") else "✗ " + (s.get("reason") or "")])
    table = md_table(["calls/s", "calls", "offered / answered", f"answered in SL ({args.service_level:g} s)", "ASA",
                      "wait p50 / p95 / max (s)", "achieved calls/s", "switch % core (ACD)", "CPU ms/call (ACD)",
                      "MOH frames late", "switch % core (peer)", "CPU ms/call (peer)", "ACD / peer", "step"], rows)
    notes = []
    for s in sorted(result["steps"], key=lambda s: s["rate"]):
        a = s.get("acd", {})
        if a.get("agent_calls_min") is not None:
            notes.append(f"{s['rate']:g} calls/s: calls per agent {a['agent_calls_min']}-{a['agent_calls_max']}; "
                         f"switch CPU {a.get('cpu_s')} s by /proc, {a.get('stats_cpu_s')} s by its SIGUSR1 `cpu_s`"
                         + (f"; peer answer time p50 {s['peer'].get('answer_p50_s')} s" if s.get("peer") else ""))
        if s.get("switch_log_problems_first"):
            shown = list(dict.fromkeys(re.sub(r"^\S+ (\S+) \S+ call=\S+ ", r"\1 ", x)[:110]
                                       for x in s["switch_log_problems_first"]
                                       if re.search(r"\b(ERROR|CRITICAL|WARNING)\b", x)))[:2]
            notes.append(f"{s['rate']:g} calls/s, switch log ({s['switch_log_problem_lines']} ERROR/WARNING lines): "
                         + "; ".join(f"`{x}`" for x in shown))
        if s.get("error"):
            notes.append(f"{s['rate']:g} calls/s: {s['error']}")
    erlangs = ", ".join(f"{s['rate']:g}/s → {s['rate'] * (RING_S + sum(TALK_S) / 2):.0f}"
                        for s in sorted(result["steps"], key=lambda s: s["rate"]))
    trace = ", ".join(f"{s['rate']:g}{'✓' if s.get('passed') else '✗'}" for s in result["steps"])
    intro = para(f"""Run {result['date']} on {m['cpus']} vCPU ({m['cpu']}), Python {m['python']}, uvloop {m['uvloop']},
        {m['sipp']}; {'**quick smoke run, not a measurement**; ' if args.quick else ''}{args.step_seconds:g} s of calls
        per step, load average at start {' / '.join(m['loadavg_at_start'])}. Command: `python bench/acd_calls.py`
        (`--quick`: a smoke run in under a minute).""")
    what = para(f"""How many calls per second the ACD takes end to end. SIPp callers dial queue `support`: the switch
        answers, plays music on hold, offers the call to an agent's registered phone and bridges the two.
        {args.agents} SIPp agents, registered with digest auth, ring {RING_S * 1000:.0f} ms, answer, talk
        {TALK_S[0] * 1000:.0f}-{TALK_S[1] * 1000:.0f} ms and hang up (longest-idle-agent, zero wrap-up; callers
        patient: 30 s). The switch is pinned to core 0, both SIPp processes to core 1. Each step starts a fresh
        switch, registers the agents, then sends R × {args.step_seconds:g} s callers at R calls/s; the rate goes up
        until a step fails, then one step halfway back ({trace}). A step passes when ≥ {100 * MIN_IN_SL:g} % of the
        callers are answered within the service level ({args.service_level:g} s, the queue's `service_level_s`; a
        wait includes the agent's {RING_S * 1000:.0f} ms ring), every SIPp call succeeds and nothing is stuck
        afterwards (no caller waiting, every agent `available`, no call left in the switch). Offered load: {erlangs}
        Erlangs on {args.agents} agents.""")
    peer = para("""Peer, in the same run on the same switch right after each ACD step: the same callers at the same
        rate go straight to the same SIPp UAS through a trunk (same ring, talk and hang-up), without the ACD. "ACD /
        peer" is the ACD's CPU per call over the plain relayed call's. CPU is the switch's utime+stime from the
        callers' start until the last CDR is written; "MOH frames late" is the share of the switch's media-clock
        frames (the music on hold of waiting callers) sent over 10 ms late or skipped, from its SIGUSR1 `stats:`
        line.""")
    return f"""\
## ACD calls end to end (`bench/acd_calls.py`)

{intro}

{what}

{peer}

{table}

{para(verdict(result, args))}

{chr(10).join('- ' + n for n in notes)}

Commands (WORK = the work directory, where the script writes `softswitch-rR.toml` and `agents.csv`; the switch,
the registration and the agents are started afresh for every rate R; the peer dials `{PEER_NUMBER}`):
{commands_block(commands, result['workdir'])}
"""


def output(result: dict, args: argparse.Namespace, commands: dict[str, str]) -> dict:
    return {"max_cps": result.get("max_cps"), "limit_not_reached": result.get("limit_not_reached"),
            "cpu_ratio_at_max": result.get("cpu_ratio_at_max"), "steps": result["steps"],
            "agents": args.agents, "step_seconds": args.step_seconds, "service_level_s": args.service_level,
            "commands": [f"{k}: {v}" for k, v in commands.items()], "machine": result["machine"],
            "workdir": result["workdir"], "date": result["date"], "quick": args.quick}


# ---------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rates", default="10,20,40,80,160,240,320",
                   help="caller rates (calls/s) of the steps, climbed until one fails (10,20,40,80,160,240,320)")
    p.add_argument("--step-seconds", type=float, default=10.0, help="seconds of calls per step (10)")
    p.add_argument("--no-refine", action="store_true", help="no extra step halfway back after the first failure")
    p.add_argument("--agents", type=int, default=50, help="SIPp agents (50)")
    p.add_argument("--service-level", type=float, default=5.0, help="the queue's service_level_s (5)")
    p.add_argument("--no-peer", action="store_true", help="skip the no-ACD peer after each step")
    p.add_argument("--quick", action="store_true", help="smoke test: rates 10,20, 5 s per step, 20 agents")
    p.add_argument("--switch-log-level", default="INFO", help="the switch's [log] level (INFO: the stats line)")
    add_output_options(p)
    args = p.parse_args(argv)
    if args.render:
        saved = json.loads(args.render.read_text())
        args.agents, args.step_seconds = saved["agents"], saved["step_seconds"]
        args.service_level, args.quick = saved["service_level_s"], saved["quick"]
        result = {k: saved[k] for k in ("steps", "machine", "workdir", "date")}
        summarize(result)
        commands = dict(c.split(": ", 1) for c in saved.get("commands", []))
        update_doc_section("acd_calls", report(result, args, commands), args.doc)
        say(f"updated {args.doc} from {args.render}")
        return 0
    if args.quick:
        args.rates, args.step_seconds, args.agents = "10,20", 5.0, 20
    rates = [int(x) for x in args.rates.split(",") if x.strip()]
    if not rates or min(rates) <= 0 or not 1 <= args.agents <= 999:
        p.error("--rates must be positive whole calls/s, --agents 1..999")
    keep_off_switch_core()
    prefer_checkout()
    work = make_workdir(args, "acd_calls")
    (work / "data").mkdir(exist_ok=True)
    result: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine_info(), "steps": [],
                    "workdir": str(work)}
    def measure(args: argparse.Namespace, rates: list[int], work: Path, result: dict,
                commands: dict[str, str]) -> None:
        with Processes() as procs:
            def one(rate: int) -> dict:
                step = run_step(procs, work, rate, args, commands)
                result["steps"].append(step)
                a, pr = step.get("acd", {}), step.get("peer", {})
                say(f"  {rate:g} calls/s x {step['calls']}: {'PASS' if step['passed'] else 'fail'}"
                    f"  answered {a.get('answered')}/{a.get('offered')}  in SL {a.get('in_sl')}"
                    f"  ASA {a.get('asa_s')} s  wait p50/p95 {a.get('wait_p50_s')}/{a.get('wait_p95_s')} s"
                    f"  ACD {a.get('switch_core_pct')} % core {a.get('cpu_ms_per_call')} ms/call"
                    f"  peer {pr.get('switch_core_pct')} % {pr.get('cpu_ms_per_call')} ms/call"
                    f"  ratio {step.get('cpu_ratio')}  {step.get('reason') or ''}")
                return step

            climb_steps(rates, one, halfway_back(not args.no_refine))

    return run_and_report("acd_calls", args, rates, work, result, measure, summarize, output, report)


if __name__ == "__main__":
    sys.exit(main())

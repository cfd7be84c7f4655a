#!/usr/bin/env python3
"""Concurrent bridged calls with G.711 RTP both ways through the softswitch's media relay, on ONE core.

  SIPp uac (bench/scenarios/uac_rtp.xml: PCMA, 20 ms packets, looped g711a audio for the whole call)
    -> softswitch (prefix 9 -> trunk loopback; media anchored)      pinned: taskset -c 0
    -> SIPp uas (bench/scenarios/uas.xml, -rtp_echo: every packet goes back)
  SIPp uac and uas share core 1. Every call is 4 RTP streams through the relay (caller->switch->callee and
  back): 2 x 50 packets/s in and 2 x 50 out.

For each step of concurrent calls N (--steps), a freshly started switch gets N calls opened at --setup-cps, held
up for --window seconds of measurement, then hung up. Measured per step:
  - packet loss in the switch: kernel receive-queue drops on the switch's RTP sockets (/proc/net/udp "drops",
    sampled every second per socket) plus the relay's own dropped_* counters, over what was offered to it
    (the per-leg RTP counters of the CDRs, ``softswitch cdr --format json``);
  - the switch's CPU (utime+stime from /proc/<pid>/stat) over the window, as % of one core and per call;
  - what SIPp itself lost (drops at the uas echo socket) and SIPp's CPU, to tell a generator limit apart.
A step passes with < 0.5 % loss in the switch, every call answered, >= 95 % of the N calls up on average in
the window and >= 95 % of the nominal packets really offered by SIPp. The search stops at the first failing step
(after one more step halfway back). Then the same SIPp pair without the switch (uac -> uas directly) runs at the
best N as the reference.

Prints one JSON object and rewrites the ``relay_calls`` section of docs/benchmarks.md (``--doc`` for another file).
Run: ``python bench/relay_calls.py`` (about 6-9 minutes), ``--quick`` for a smoke test, ``--no-write`` to
leave the docs alone.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (CALL_PORTS as PORT, CALL_RTP_RANGE as RTP_RANGE, G711A_PCAP as PCAP,  # noqa: E402
                     SIPP_CPU, DropTracker, Proc, Processes, add_output_options, add_step_options, best_step,
                     calls_in_window, climb_steps, commands_block, core_cell, first_lines, force_rcvbuf, headline,
                     keep_off_switch_core, limit_line, log_problems, log_problems_line, machine_info, make_workdir,
                     md_table, parse_steps, pinned_command, render_saved, run_and_report, run_fields, run_paragraph,
                     say, setup_cell, softnet_dropped, start_switch, status_cell, step_switch, step_timing,
                     summarize_steps, switch_config, hold_window, uac_figures, uac_rtp_argv, uac_rtp_command,
                     uas_echo_argv, wait_cdrs, write_pcap_audio)

MAX_LOSS = 0.005
MIN_OFFERED = 0.95                    # a step counts only if SIPp really sent >= 95 % of the nominal packets
MIN_HELD = 0.95                       # ... and >= 95 % of its calls were up (answered) on average in the window
PPS_PER_STREAM = 50                   # 20 ms packets


def echo_count(path: Path) -> int:
    """SIPp uas: the last "N Total echo RTP pckts 1st stream" of its screen (printed when it exits)."""
    found = re.findall(r"(\d+) Total echo RTP pckts 1st stream", path.read_text(errors="replace"))
    return int(found[-1]) if found else 0


def cpu(procs: list[Proc]) -> float:
    return sum(p.cpu_seconds() for p in procs)


def run_step(procs: Processes, work: Path, switch: Proc | None, config: Path | None, n: int,
             args: argparse.Namespace, tag: str) -> dict:
    """N concurrent calls (through the switch, or direct when switch is None); returns the step's figures."""
    base = work / f"{tag}-{n}"
    ramp, hold_ms = step_timing(n, args)
    uas = procs.start("uas", uas_echo_argv() + ["-trace_err", "-error_file", f"{base}-uas-err.log",
                      "-max_log_size", "1000000"], work, Path(f"{base}-uas.out"), cpu=SIPP_CPU,
                      nice=args.sipp_nice)
    time.sleep(0.5)
    echo_buffer = force_rcvbuf(uas, PORT["uas_media"], args.echo_rcvbuf) if args.echo_rcvbuf else 0
    target = (f"9{n}", PORT["switch"]) if switch else (str(n), PORT["uas"])
    watched = {"uas": (uas, (PORT["uas_media"], PORT["uas_media"]))}
    if switch:
        watched["switch"] = (switch, RTP_RANGE)
    tracker = DropTracker(watched)
    softnet0 = softnet_dropped()
    uac = procs.start("uac", uac_rtp_argv(target[0], target[1], n, args.setup_cps, hold_ms, Path(f"{base}-uac.csv"),
                      Path(f"{base}-uac-err.log")), work, Path(f"{base}-uac.out"), cpu=SIPP_CPU,
                      nice=args.sipp_nice)
    window: dict = {}

    def open_window(now: float) -> None:
        window.update(t0=now, wall0=time.time(), sw0=switch.cpu_seconds() if switch else 0.0,
                      sys0=switch.cpu_times()[1] if switch else 0.0, sipp0=cpu([uac, uas]))

    def close_window(now: float) -> None:
        window.update(t1=now, wall1=time.time(), sw1=switch.cpu_seconds() if switch else 0.0,
                      sys1=switch.cpu_times()[1] if switch else 0.0, sipp1=cpu([uac, uas]))
    try:
        hold_window(uac, tracker, ramp, hold_ms, args, open_window, close_window)
    finally:
        procs.stop(uac)
        procs.stop(uas)
    softnet = softnet_dropped() - softnet0
    _, res = uac_figures(Path(f"{base}-uac.csv"), n, hold_ms)
    ok = res["successful"]
    res.update({"softnet_backlog_drops": softnet, "echoed_by_uas": echo_count(Path(f"{base}-uas.out")),
                "uas_socket_drops": tracker.drops("uas"), "uas_echo_rcvbuf": echo_buffer})
    res["uas_loss_pct"] = round(100 * res["uas_socket_drops"] / max(1, res["echoed_by_uas"] + res["uas_socket_drops"]), 3)
    if "t1" in window:
        span = window["t1"] - window["t0"]
        res["window_s"] = round(span, 2)
        res["sipp_core_pct"] = round(100 * (window["sipp1"] - window["sipp0"]) / span, 1)
        if switch:
            res["switch_core_pct"] = round(100 * (window["sw1"] - window["sw0"]) / span, 1)
            res["switch_sys_share"] = round((window["sys1"] - window["sys0"]) / max(1e-9, window["sw1"] - window["sw0"]), 2)
    else:
        res["window_s"] = 0.0
    if switch is not None and config is not None:
        res["alive"] = switch.alive()
        cdrs = [c for c in wait_cdrs(config, work, f"-{uac.pid}@", ok) if c.get("disposition") == "ANSWERED"]
        legs = [(leg["role"], leg.get("rtp") or {}) for c in cdrs for leg in c["legs"] if leg.get("rtp")]
        total = lambda key: sum(rtp.get(key, 0) for _, rtp in legs)  # noqa: E731
        caller_in = sum(rtp.get("packets_in", 0) for role, rtp in legs if role == "a")
        relay_in, relay_out = total("packets_in"), total("packets_out")
        refused = total("dropped_source") + total("dropped_malformed")
        lost = tracker.drops("switch") + refused + total("dropped_unroutable")
        billsec = sum(c.get("billsec") or 0 for c in cdrs)
        if "wall1" in window:
            res.update(calls_in_window(cdrs, window["wall0"], window["wall1"]))
        res.update(cdrs=len(cdrs), relay_packets_in=relay_in, relay_packets_out=relay_out,
                   switch_socket_drops=tracker.drops("switch"), relay_dropped_counters=lost - tracker.drops("switch"),
                   loss_pct=round(100 * lost / max(1, relay_in + refused + tracker.drops("switch")), 3),
                   relayed_pps_per_call=round(relay_in / billsec, 1) if billsec else None,
                   caller_pace=round(caller_in / (billsec * PPS_PER_STREAM), 3) if billsec else None)
        if res.get("switch_core_pct") is not None and res.get("calls_avg_in_window"):
            calls_up = res["calls_avg_in_window"]
            res["cpu_pct_per_call"] = round(res["switch_core_pct"] / calls_up, 4)
            pps = (res["relayed_pps_per_call"] or 2 * PPS_PER_STREAM) * calls_up
            res["cpu_us_per_packet"] = round(1e6 * res["switch_core_pct"] / 100 / pps, 2)
        # The load really offered to the switch: packets it received per call-second, over the nominal 2 x 50.
        res["offered_vs_nominal"] = round(relay_in / (billsec * 2 * PPS_PER_STREAM), 3) if billsec else None
        res["generator_ok"] = (res["offered_vs_nominal"] or 0) >= MIN_OFFERED
        reasons = []
        if not res["alive"]:
            reasons.append("switch died")
        if res["failed"] > 0.001 * n:
            reasons.append(f"{res['failed']} calls failed")
        if res["loss_pct"] >= 100 * MAX_LOSS:
            reasons.append(f"loss {res['loss_pct']} % >= {100 * MAX_LOSS} %")
        if res["window_s"] == 0.0:
            reasons.append("no measurement window (calls ended early?)")
        if res.get("calls_avg_in_window") is not None and res["calls_avg_in_window"] < MIN_HELD * n:
            reasons.append(f"only {res['calls_avg_in_window']:g} of {n} calls up on average in the window "
                           f"(setups lagging)")
        if not res["generator_ok"]:
            reasons.append(f"SIPp offered only {res['offered_vs_nominal']} of the nominal packet rate (generator limit)")
        res["passed"] = not reasons
        res["reason"] = "; ".join(reasons) or "ok"
        if reasons:
            res["errors"] = first_lines(Path(f"{base}-uac-err.log"), 4) + first_lines(Path(f"{base}-uas-err.log"), 2)
    return res


def report(result: dict, args: argparse.Namespace, commands: dict[str, str]) -> str:
    rows = []
    for s in sorted(result["steps"], key=lambda s: s["calls"]):
        rows.append((s["calls"], f"{s.get('calls_up_in_window', '-')} / {s.get('calls_avg_in_window', '-')}",
                     f"{s['successful']}/{s['calls']}", setup_cell(s),
                     s.get("offered_vs_nominal", "-"), f"{s.get('loss_pct', '-')} %", core_cell(s),
                     s.get("cpu_pct_per_call", "-"), s.get("cpu_us_per_packet", "-"), f"{s['uas_loss_pct']} %",
                     s.get("sipp_core_pct", "-"), status_cell(s)))
    ref_rows = []
    for r in result["reference"]:
        ref_rows.append((r["calls"], f"{r['successful']}/{r['calls']}", r["echoed_by_uas"],
                         f"{r['uas_loss_pct']} %", r.get("sipp_core_pct", "-"), r.get("delivered_vs_switch", "-")))
    limit = headline(result, [
        (("generator_limited",), " (above it SIPp, not the switch, fell short: the switch's own limit was not reached)"),
        (("switch_saturated", "setup_limited"), " (above it the switch's core was saturated: the relay still lost no"
                                                " packets, but new calls could not be set up in time)")])
    return f"""## Media relay: concurrent calls per core (`bench/relay_calls.py`)

{run_paragraph(result, args)}

Each call: SIPp uac sends G.711 A-law (the audio of SIPp's `g711a.pcap`, looped, 20 ms packets) to the switch,
which relays it to SIPp uas `-rtp_echo`, which sends every packet back the same way: 4 RTP streams per call,
the relay receives 2 × 50 packets/s and sends as many. The switch is pinned to core 0 (`taskset -c 0`), both SIPp
processes to core 1. A step of N calls passes when every call is answered (SIPp waits up to 32 s), on average
≥ 95 % of the N calls were up during the window, SIPp really offered ≥ 95 % of the nominal packets
("offered"), and the switch lost < 0.5 %. Loss = kernel receive-queue drops on
the switch's RTP sockets (`/proc/net/udp`, sampled every second per socket) + the relay's `dropped_*` counters,
over the packets offered to it (CDR `legs[].rtp` counters). CPU = the switch's utime+stime over the window
(after the last INVITE, so media only unless setups lag); "µs per packet" is per packet received and
forwarded; "up all window" counts the calls answered before the window opened and still up when it closed;
CPU per call divides by the average number of answered calls during the window.

**Max concurrent calls with < 0.5 % packet loss on one core: {limit}** (project goal: ≥ 1,000 with uvloop).

{md_table(("calls", "up all window / avg", "answered", "setup s (avg ± sd)", "offered", "loss in switch",
           "switch % of core 0", "% core per call", "µs CPU per packet", "SIPp uas echo loss", "SIPp % of core 1",
           "pass"), rows)}

Reference without the switch (SIPp uac → SIPp uas `-rtp_echo` directly, same call count and timing):

{md_table(("calls", "answered", "packets echoed", "uas echo loss", "SIPp % of core 1", "echoed: switch / direct"),
          ref_rows) if ref_rows else '(not run)'}

{result.get('analysis', '')}

SIPp's echo socket: SIPp 3.6.1 leaves its `-rtp_echo` socket at the kernel's default receive buffer
(`net.core.rmem_default`, 208 KiB, about 270 small packets; `-rtp_buffsize` does not apply to it), and its one
echo thread shares core 1 with the caller's RTP threads: without the switch in the path it already dropped
2–4 % of the packets at 1,000 calls (up to 19 % at 1,000 calls through the switch). The script raises that one
socket's buffer to 4 MiB (`--echo-rcvbuf`; the kernel reports 8 MiB) with `SO_RCVBUFFORCE` on a copy of SIPp's
descriptor taken with `pidfd_getfd(2)`. The switch's own sockets keep the kernel defaults, as users run it.

Why `rtp_stream` rather than `uac_pcap`: SIPp 3.6.1's `play_pcap_audio` sends each play from its own thread
through its own raw socket, and Linux delivers a copy of every UDP packet on the host to every raw UDP socket:
with N calls playing, every packet (the switch's relayed ones included) costs O(N) in the kernel, charged to
whichever process sends it. `rtp_stream` uses a pool of threads and ordinary UDP sockets.

Commands (WORK = the work directory: `softswitch.toml` and `g711a.raw` are written there, SIPp runs there;
N = calls of the step, HOLD = (N / setup CPS + settle + window + 1) s in ms; the switch and the uas are started
afresh for every step, and the uas's echo socket's receive buffer is raised once it runs, see above):
{commands_block(commands, result["workdir"])}
"""


def analyse(result: dict) -> str:
    steps, refs = result["steps"], result["reference"]
    if not steps:
        return ""
    lines = [limit_line(steps)[1]]
    passing = [s for s in steps if s.get("passed") and s.get("cpu_pct_per_call")]
    if passing:
        s = max(passing, key=lambda s: s["calls"])
        lines.append(f"CPU per call at {s['calls']} calls: {s['cpu_pct_per_call']} % of a core "
                     f"({s['cpu_us_per_packet']} µs per packet received and forwarded, "
                     f"{int(100 * (s.get('switch_sys_share') or 0))} % of it in the kernel), the core "
                     f"{s.get('switch_core_pct')} % busy.")
        light = [x for x in passing if (x.get("switch_core_pct") or 100) < 90]
        if light and light[-1] is not s:
            x = max(light, key=lambda x: x["calls"])
            lines.append(f"Below saturation the cost is higher per call: {x['cpu_pct_per_call']} % of a core at "
                         f"{x['calls']} calls ({x['cpu_us_per_packet']} µs per packet, the core {x['switch_core_pct']} % "
                         f"busy), which alone would predict {int(100 / x['cpu_pct_per_call']):,} calls per core; per-packet "
                         f"cost falls as the load rises (probably more datagrams per event-loop wake-up and fewer "
                         f"cross-CPU wake-ups).")
    slow = [s for s in steps if (s.get("setup_s_avg") or 0) > 0.5]
    if slow:
        s = max(slow, key=lambda s: s["setup_s_avg"])
        lines.append(f"Call setup slows down under media load: {s['setup_s_avg']} s ± {s['setup_s_stdev']} "
                     f"(INVITE to 200 OK) at {s['calls']} calls, against "
                     f"{min(steps, key=lambda s: s['calls']).get('setup_s_avg')} s at "
                     f"{min(s['calls'] for s in steps)} (see Known issues below).")
    for r in refs:
        lines.append(f"Direct SIPp at {r['calls']} calls: uas echo loss {r['uas_loss_pct']} %, SIPp at "
                     f"{r.get('sipp_core_pct')} % of core 1.")
    if problems := log_problems_line(result):
        lines.append(problems)
    return "\n".join(f"- {line}" for line in lines)


def summarize(result: dict) -> None:
    """The headline figures of a run, from its steps (also used to re-render a saved run)."""
    first_fail = summarize_steps(result)
    # Only SIPp's fault if the switch still had headroom; a saturated switch also slows SIPp down
    # (late call setups, bursty output into SIPp's echo socket).
    result["generator_limited"] = bool(
        first_fail and first_fail.get("alive") and not first_fail.get("generator_ok")
        and first_fail["failed"] <= 0.001 * first_fail["calls"] and first_fail.get("loss_pct", 100) < 100 * MAX_LOSS
        and (first_fail.get("switch_core_pct") or 100) < 85
        and (first_fail.get("calls_avg_in_window") or 0) >= MIN_HELD * first_fail["calls"])
    result["setup_limited"] = bool(first_fail and first_fail.get("loss_pct", 100) < 100 * MAX_LOSS and (
        first_fail["failed"] > 0.001 * first_fail["calls"]
        or (first_fail.get("calls_avg_in_window") or 0) < MIN_HELD * first_fail["calls"]))
    result["analysis"] = analyse(result)


def output(result: dict, args: argparse.Namespace, commands: dict[str, str]) -> dict:
    best = best_step(result, {})
    return {"max_calls_lt_0_5pct_loss": result.get("max_calls"),
            **{k: result.get(k) for k in ("limit_not_reached", "generator_limited", "switch_saturated",
                                          "setup_limited")},
            "cpu_pct_per_call_at_max": best.get("cpu_pct_per_call"),
            "cpu_us_per_packet_at_max": best.get("cpu_us_per_packet"),
            "switch_core_pct_at_max": best.get("switch_core_pct"),
            "steps": result["steps"], "reference": result["reference"], **run_fields(result, args, commands)}


def render(path: Path, args: argparse.Namespace) -> int:
    return render_saved("relay_calls", path, args, lambda saved: {"reference": saved["reference"]}, summarize, report)


def measure(args: argparse.Namespace, steps: list[int], work: Path, result: dict, commands: dict[str, str]) -> None:
    """The steps through the switch, then the direct reference; fills ``result`` and ``commands``."""
    config = work / "softswitch.toml"
    config.write_text(switch_config(PORT["switch"], PORT["uas"], RTP_RANGE, db="data/relay_calls.db",
                                    log_level=args.switch_log_level))
    with Processes() as procs:
        commands["uas"] = pinned_command(SIPP_CPU, uas_echo_argv())
        commands["uac"] = uac_rtp_command("9N", PORT["switch"], args.setup_cps)
        commands["uac (direct reference)"] = commands["uac"].replace(
            f"127.0.0.1:{PORT['switch']}", f"127.0.0.1:{PORT['uas']}").replace("-s 9N", "-s N")

        def step(n: int) -> dict:
            with step_switch(procs, start_switch(procs, config, work, work / "softswitch.log")) as switch:
                commands["softswitch"] = switch.command
                res = run_step(procs, work, switch, config, n, args, "switch")
            result["steps"].append(res)
            say(f"  {n:5d} calls: {'PASS' if res['passed'] else 'fail'}  loss {res.get('loss_pct')} %"
                f"  switch {res.get('switch_core_pct')} % core  {res.get('cpu_pct_per_call')} %/call"
                f"  {res.get('cpu_us_per_packet')} µs/pkt  uas loss {res['uas_loss_pct']} %"
                f"  SIPp {res.get('sipp_core_pct')} %  up {res.get('calls_up_in_window')}/{res.get('calls_avg_in_window')}"
                f"  offered {res.get('offered_vs_nominal')}  setup {res.get('setup_s_avg')}±{res.get('setup_s_stdev')} s"
                f"  {'' if res['passed'] else res['reason']}")
            return res

        climb_steps(steps, step, lambda last_pass, n: (last_pass + n) // 2
                    if not args.no_refine and last_pass and n - last_pass >= 100 else None)
        summarize(result)
        count, lines = log_problems(work / "softswitch.log")
        result["switch_log_problem_lines"], result["switch_log_problems_first"] = count, lines
        if not args.no_reference:
            n = result["max_calls"] or steps[0]
            ref = run_step(procs, work, None, None, n, args, "direct")
            through = next((s for s in result["steps"] if s["calls"] == n), None)
            if through and ref["echoed_by_uas"]:
                ref["delivered_vs_switch"] = round(through["echoed_by_uas"] / ref["echoed_by_uas"], 4)
            result["reference"].append(ref)
            say(f"  direct {n} calls: uas echoed {ref['echoed_by_uas']}  uas loss {ref['uas_loss_pct']} %"
                f"  SIPp {ref.get('sipp_core_pct')} % core")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_step_options(p, "250,500,750,1000,1250,1500,1750,2000", 15.0)
    p.add_argument("--echo-rcvbuf", type=int, default=4 * 1024 * 1024,
                   help="receive buffer forced on SIPp's echo socket, 0 = leave SIPp's default (4 MiB)")
    p.add_argument("--sipp-nice", type=int, default=0,
                   help="run SIPp under `nice -n N` (e.g. -10 on a busy shared machine; needs root for < 0)")
    p.add_argument("--no-refine", action="store_true", help="no extra step between the last pass and the first fail")
    p.add_argument("--no-reference", action="store_true", help="skip the direct SIPp reference run")
    p.add_argument("--quick", action="store_true", help="smoke test: steps 50,100, 4 s window")
    p.add_argument("--switch-log-level", default="WARNING", help="the switch's [log] level (WARNING)")
    add_output_options(p)
    args = p.parse_args(argv)
    if args.render:
        return render(args.render, args)
    if args.quick:
        args.steps, args.window, args.settle = "50,100", 4.0, 1.0
    steps = parse_steps(p, args, "steps must be 1..2499 calls (4 RTP ports per call in 40000-49998)")
    keep_off_switch_core()

    work = make_workdir(args, "relay_calls")
    seconds = write_pcap_audio(PCAP, work / "g711a.raw")
    result: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine_info(), "steps": [],
                    "reference": [], "workdir": str(work), "audio_seconds": round(seconds, 2)}
    return run_and_report("relay_calls", args, steps, work, result, measure, summarize, output, report)


if __name__ == "__main__":
    sys.exit(main())

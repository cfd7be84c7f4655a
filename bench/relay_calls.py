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

Prints one JSON object and rewrites the ``relay_calls`` section of docs/benchmarks.md.
Run: ``python bench/relay_calls.py`` (about 6-9 minutes), ``--quick`` for a smoke test.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (DOC, SCENARIOS, SIPP, SIPP_BUFF, DropTracker, Proc, Processes, first_lines, force_rcvbuf,  # noqa: E402
                     log_problems, machine_info, md_table, options_probe, read_cdrs, say, sipp_stats,
                     sipp_uas_argv, softnet_dropped, switch_argv, pretty, switch_config, update_doc_section)

SWITCH_CPU, SIPP_CPU = 0, 1
PORT = {"switch": 15060, "uac": 15061, "uas": 15090, "uac_cp": 15889, "uas_cp": 15888,
        "uas_media": 16000, "uac_media": 16010}
RTP_RANGE = (40000, 49998)            # 4 ports per call (2 sides x RTP+RTCP): room for 2,499 calls
PCAP = Path("/usr/share/sip-tester/g711a.pcap")
MAX_LOSS = 0.005
MIN_OFFERED = 0.95                    # a step counts only if SIPp really sent >= 95 % of the nominal packets
MIN_HELD = 0.95                       # ... and >= 95 % of its calls were up (answered) on average in the window
PPS_PER_STREAM = 50                   # 20 ms packets


def write_audio(pcap: Path, out: Path) -> float:
    """The RTP payloads of a pcap (Ethernet/IPv4/UDP/RTP) concatenated: raw PCMA for rtp_stream. Seconds of audio."""
    data = pcap.read_bytes()
    little = data[:4] == b"\xd4\xc3\xb2\xa1"
    off, audio = 24, bytearray()
    while off + 16 <= len(data):
        incl = struct.unpack("<I" if little else ">I", data[off + 8:off + 12])[0]
        pkt = data[off + 16:off + 16 + incl]
        off += 16 + incl
        if len(pkt) < 14 + 20 + 8 + 12:
            continue
        ihl = (pkt[14] & 0x0F) * 4
        rtp = pkt[14 + ihl + 8:]
        if rtp[0] >> 6 == 2 and (rtp[1] & 0x7F) == 8:
            cc = rtp[0] & 0x0F
            audio += rtp[12 + 4 * cc:]
    out.write_bytes(bytes(audio))
    return len(audio) / 8000


def uac_argv(service: str, port: int, calls: int, rate: float, hold_ms: int, stat: Path, err: Path) -> list[str]:
    return [SIPP, "-nostdin", "-sf", str(SCENARIOS / "uac_rtp.xml"), "-i", "127.0.0.1", "-p", str(PORT["uac"]),
            "-cp", str(PORT["uac_cp"]), "-mp", str(PORT["uac_media"]), "-s", service, "-r", f"{rate:g}",
            "-m", str(calls), "-l", str(calls), "-d", str(hold_ms), "-recv_timeout", "32000", *SIPP_BUFF,
            "-trace_stat", "-stf", str(stat), "-fd", "5", "-trace_err", "-error_file", str(err),
            "-max_log_size", "1000000", f"127.0.0.1:{port}"]


def uas_argv() -> list[str]:
    return sipp_uas_argv(PORT["uas"], PORT["uas_cp"], ["-mp", str(PORT["uas_media"]), "-rtp_echo"],
                         codec=(8, "PCMA"))


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
    ramp = n / args.setup_cps
    hold_ms = int((ramp + args.settle + args.window + 1.0) * 1000)
    uas = procs.start("uas", uas_argv() + ["-trace_err", "-error_file", f"{base}-uas-err.log",
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
    uac = procs.start("uac", uac_argv(target[0], target[1], n, args.setup_cps, hold_ms, Path(f"{base}-uac.csv"),
                      Path(f"{base}-uac-err.log")), work, Path(f"{base}-uac.out"), cpu=SIPP_CPU,
                      nice=args.sipp_nice)
    t0 = time.monotonic()
    w0 = t0 + ramp + args.settle
    w1 = w0 + args.window
    deadline = t0 + hold_ms / 1000 + ramp + 60
    window: dict = {}
    try:
        while uac.alive() and time.monotonic() < deadline:
            tracker.sample()
            now = time.monotonic()
            if "t0" not in window and now >= w0:
                window.update(t0=now, wall0=time.time(), sw0=switch.cpu_seconds() if switch else 0.0,
                              sys0=switch.cpu_times()[1] if switch else 0.0, sipp0=cpu([uac, uas]))
            elif "t0" in window and "t1" not in window and now >= w1:
                window.update(t1=now, wall1=time.time(), sw1=switch.cpu_seconds() if switch else 0.0,
                              sys1=switch.cpu_times()[1] if switch else 0.0, sipp1=cpu([uac, uas]))
            boundary = w0 if "t0" not in window else w1 if "t1" not in window else None
            time.sleep(1.0 if boundary is None else min(1.0, max(0.05, boundary - time.monotonic())))
        if uac.alive():
            say(f"  uac still running {deadline - t0:.0f} s after start: stopping it")
    finally:
        procs.stop(uac)
        procs.stop(uas)
    softnet = softnet_dropped() - softnet0
    st = sipp_stats(Path(f"{base}-uac.csv"))
    ok = st.successful if st else 0
    res: dict = {"calls": n, "successful": ok, "failed": n - ok, "hold_s": hold_ms / 1000,
                 "setup_s_avg": round(st.response_time, 3) if st else None,
                 "setup_s_stdev": round(st.response_stdev, 3) if st else None,
                 "softnet_backlog_drops": softnet, "echoed_by_uas": echo_count(Path(f"{base}-uas.out")),
                 "uas_socket_drops": tracker.drops("uas"), "uas_echo_rcvbuf": echo_buffer}
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
            w0, w1 = window["wall0"], window["wall1"]
            # answered before the window opened and still up when it closed
            res["calls_up_in_window"] = sum(1 for c in cdrs if (c.get("answer_ts") or 1e99) <= w0
                                            and (c.get("end_ts") or 0) >= w1)
            # average number of answered calls during the window (late answers count for their share)
            res["calls_avg_in_window"] = round(sum(max(0.0, min(w1, c.get("end_ts") or 0) - max(w0, c.get("answer_ts") or 1e99))
                                                   for c in cdrs) / (w1 - w0), 1)
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


def wait_cdrs(config: Path, work: Path, marker: str, expected: int, timeout: float = 30.0) -> list[dict]:
    """This step's CDRs (SIPp's Call-IDs are <n>-<pid>@<ip>); they are written off the event loop."""
    deadline = time.monotonic() + timeout
    while True:
        cdrs = [c for c in read_cdrs(config, work) if marker in c.get("sip_call_id", "")]
        if len(cdrs) >= expected or time.monotonic() > deadline:
            return cdrs
        time.sleep(1.0)


def _status(s: dict) -> str:
    if s.get("passed"):
        return "✓"
    return "✗ " + s.get("reason", "")


def report(result: dict, args: argparse.Namespace, commands: dict[str, str]) -> str:
    m = result["machine"]
    rows = []
    for s in sorted(result["steps"], key=lambda s: s["calls"]):
        setup = f"{s['setup_s_avg']} ± {s['setup_s_stdev']}" if s.get("setup_s_avg") is not None else "-"
        core = f"{s.get('switch_core_pct', '-')} ({int(100 * s['switch_sys_share'])} % kernel)" \
            if s.get("switch_sys_share") is not None else s.get("switch_core_pct", "-")
        rows.append((s["calls"], f"{s.get('calls_up_in_window', '-')} / {s.get('calls_avg_in_window', '-')}",
                     f"{s['successful']}/{s['calls']}", setup,
                     s.get("offered_vs_nominal", "-"), f"{s.get('loss_pct', '-')} %", core,
                     s.get("cpu_pct_per_call", "-"), s.get("cpu_us_per_packet", "-"), f"{s['uas_loss_pct']} %",
                     s.get("sipp_core_pct", "-"), _status(s)))
    ref_rows = []
    for r in result["reference"]:
        ref_rows.append((r["calls"], f"{r['successful']}/{r['calls']}", r["echoed_by_uas"],
                         f"{r['uas_loss_pct']} %", r.get("sipp_core_pct", "-"), r.get("delivered_vs_switch", "-")))
    best = result["max_calls"]
    headline = f"{best:,} calls" if best else "none of the steps"
    if result.get("limit_not_reached"):
        headline += " (every step passed: the limit is higher)"
    elif result.get("generator_limited"):
        headline += " (above it SIPp, not the switch, fell short: the switch's own limit was not reached)"
    elif result.get("switch_saturated") and result.get("setup_limited"):
        headline += (" (above it the switch's core was saturated: the relay still lost no packets, but new calls"
                     " could not be set up in time)")
    elif result.get("switch_saturated"):
        headline += " (above it the switch's core was saturated)"
    return f"""## Media relay: concurrent calls per core (`bench/relay_calls.py`)

Run {result['date']} on {m['cpus']} vCPU ({m['cpu']}), Python {m['python']}, uvloop {m['uvloop']}, {m['sipp']};
{'**quick smoke run, not a measurement**; ' if args.quick else ''}{args.window:g} s measurement window per step,
calls opened at {args.setup_cps:g} CPS, load average at start {' / '.join(m['loadavg_at_start'])}.

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

**Max concurrent calls with < 0.5 % packet loss on one core: {headline}** (project goal: ≥ 1,000 with uvloop).

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
```
{chr(10).join(f'{k}: {pretty(v, Path(result["workdir"]))}' for k, v in commands.items())}
```
"""


def analyse(result: dict) -> str:
    steps, refs = result["steps"], result["reference"]
    if not steps:
        return ""
    lines = []
    fails = sorted((s for s in steps if not s.get("passed")), key=lambda s: s["calls"])
    if fails:
        f = fails[0]
        core = f.get("switch_core_pct")
        lines.append(f"First failing step, {f['calls']} calls: {f['reason']}; the switch used {core} % of core 0"
                     f"{' (saturated)' if core and core >= 90 else ''}, SIPp {f.get('sipp_core_pct')} % of core 1.")
    else:
        last = max(steps, key=lambda s: s["calls"])
        lines.append(f"No step failed up to {last['calls']} calls; the switch used {last.get('switch_core_pct')} % "
                     f"of core 0 at that step.")
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
    if result.get("switch_log_problem_lines"):
        kinds = sorted({re.sub(r"^\S+ (\S+) \S+ call=\S+ ", r"\1 ", line)[:90]
                        for line in result.get("switch_log_problems_first", [])})
        lines.append(f"The switch logged {result['switch_log_problem_lines']} WARNING/ERROR lines, e.g. "
                     + "; ".join(f"`{k}`" for k in kinds) + ".")
    return "\n".join(f"- {line}" for line in lines)


def summarize(result: dict) -> None:
    """The headline figures of a run, from its steps (also used to re-render a saved run)."""
    steps = result["steps"]
    passing = [s["calls"] for s in steps if s.get("passed")]
    result["max_calls"] = max(passing) if passing else 0
    result["limit_not_reached"] = bool(steps) and all(s.get("passed") for s in steps)
    first_fail = min((s for s in steps if not s.get("passed")), key=lambda s: s["calls"], default=None)
    # Only SIPp's fault if the switch still had headroom; a saturated switch also slows SIPp down
    # (late call setups, bursty output into SIPp's echo socket).
    result["generator_limited"] = bool(
        first_fail and first_fail.get("alive") and not first_fail.get("generator_ok")
        and first_fail["failed"] <= 0.001 * first_fail["calls"] and first_fail.get("loss_pct", 100) < 100 * MAX_LOSS
        and (first_fail.get("switch_core_pct") or 100) < 85
        and (first_fail.get("calls_avg_in_window") or 0) >= MIN_HELD * first_fail["calls"])
    result["switch_saturated"] = bool(first_fail and (first_fail.get("switch_core_pct") or 0) >= 85)
    result["setup_limited"] = bool(first_fail and first_fail.get("loss_pct", 100) < 100 * MAX_LOSS and (
        first_fail["failed"] > 0.001 * first_fail["calls"]
        or (first_fail.get("calls_avg_in_window") or 0) < MIN_HELD * first_fail["calls"]))
    result["analysis"] = analyse(result)


def output(result: dict, args: argparse.Namespace, commands: dict[str, str]) -> dict:
    best = next((s for s in result["steps"] if s["calls"] == result.get("max_calls")), {})
    return {"max_calls_lt_0_5pct_loss": result.get("max_calls"),
            **{k: result.get(k) for k in ("limit_not_reached", "generator_limited", "switch_saturated",
                                          "setup_limited")},
            "cpu_pct_per_call_at_max": best.get("cpu_pct_per_call"),
            "cpu_us_per_packet_at_max": best.get("cpu_us_per_packet"),
            "switch_core_pct_at_max": best.get("switch_core_pct"),
            "steps": result["steps"], "reference": result["reference"],
            "commands": [f"{k}: {v}" for k, v in commands.items()],
            "machine": result["machine"], "workdir": result["workdir"], "date": result["date"], "quick": args.quick,
            "window": args.window, "settle": args.settle, "setup_cps": args.setup_cps,
            "switch_log_problem_lines": result.get("switch_log_problem_lines"),
            "switch_log_problems_first": result.get("switch_log_problems_first")}


def render(path: Path, args: argparse.Namespace) -> int:
    """--render: rewrite the docs section from the JSON a previous run printed (no measuring)."""
    saved = json.loads(path.read_text())
    for key in ("window", "settle", "setup_cps", "quick"):
        if key in saved:
            setattr(args, key, saved[key])
    result = {"steps": saved["steps"], "reference": saved["reference"], "machine": saved["machine"],
              "workdir": saved["workdir"], "switch_log_problem_lines": saved.get("switch_log_problem_lines"),
              "switch_log_problems_first": saved.get("switch_log_problems_first"),
              "date": saved.get("date") or time.strftime("%Y-%m-%d %H:%M", time.localtime(path.stat().st_mtime))}
    commands = dict(c.split(": ", 1) for c in saved.get("commands", []))
    summarize(result)
    update_doc_section("relay_calls", report(result, args, commands))
    say(f"updated {DOC} from {path}")
    return 0


def measure(args: argparse.Namespace, steps: list[int], work: Path, result: dict, commands: dict[str, str]) -> None:
    """The steps through the switch, then the direct reference; fills ``result`` and ``commands``."""
    config = work / "softswitch.toml"
    config.write_text(switch_config(PORT["switch"], PORT["uas"], RTP_RANGE, db="data/relay_calls.db",
                                    log_level=args.switch_log_level))
    with Processes() as procs:
        def start_switch() -> Proc:
            switch = procs.start("softswitch", switch_argv(config), work, work / "softswitch.log", cpu=SWITCH_CPU,
                                 env={"PYTHONUNBUFFERED": "1"})
            if not options_probe("127.0.0.1", PORT["switch"], 20.0):
                raise RuntimeError(f"softswitch did not come up:\n{switch.log_tail()}")
            commands["softswitch"] = switch.command
            return switch
        commands["uas"] = shlex.join(["taskset", "-c", str(SIPP_CPU)] + uas_argv())
        commands["uac"] = shlex.join(["taskset", "-c", str(SIPP_CPU)] + uac_argv(
            "9N", PORT["switch"], 0, args.setup_cps, 0, Path("uac.csv"), Path("uac-err.log"))).replace(
            "-m 0 -l 0 -d 0", "-m N -l N -d HOLD")
        commands["uac (direct reference)"] = commands["uac"].replace(
            f"127.0.0.1:{PORT['switch']}", f"127.0.0.1:{PORT['uas']}").replace("-s 9N", "-s N")

        def step(n: int) -> dict:
            # A fresh switch per step: calls a failed step left behind must not weigh on the next one.
            switch = start_switch()
            try:
                res = run_step(procs, work, switch, config, n, args, "switch")
            finally:
                if not switch.alive():
                    say(switch.log_tail())
                procs.stop(switch)
            result["steps"].append(res)
            say(f"  {n:5d} calls: {'PASS' if res['passed'] else 'fail'}  loss {res.get('loss_pct')} %"
                f"  switch {res.get('switch_core_pct')} % core  {res.get('cpu_pct_per_call')} %/call"
                f"  {res.get('cpu_us_per_packet')} µs/pkt  uas loss {res['uas_loss_pct']} %"
                f"  SIPp {res.get('sipp_core_pct')} %  up {res.get('calls_up_in_window')}/{res.get('calls_avg_in_window')}"
                f"  offered {res.get('offered_vs_nominal')}  setup {res.get('setup_s_avg')}±{res.get('setup_s_stdev')} s"
                f"  {'' if res['passed'] else res['reason']}")
            return res

        last_pass = 0
        for n in steps:
            if not step(n)["passed"]:
                if not args.no_refine and last_pass and n - last_pass >= 100:
                    step((last_pass + n) // 2)
                break
            last_pass = n
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
    p.add_argument("--steps", default="250,500,750,1000,1250,1500,1750,2000",
                   help="concurrent calls per step, comma separated (max 2499: RTP range)")
    p.add_argument("--window", type=float, default=15.0, help="seconds measured with all calls up (15)")
    p.add_argument("--settle", type=float, default=3.0, help="seconds after the last call is set up (3)")
    p.add_argument("--setup-cps", type=float, default=50.0, help="rate calls are opened at (50)")
    p.add_argument("--echo-rcvbuf", type=int, default=4 * 1024 * 1024,
                   help="receive buffer forced on SIPp's echo socket, 0 = leave SIPp's default (4 MiB)")
    p.add_argument("--sipp-nice", type=int, default=0,
                   help="run SIPp under `nice -n N` (e.g. -10 on a busy shared machine; needs root for < 0)")
    p.add_argument("--no-refine", action="store_true", help="no extra step between the last pass and the first fail")
    p.add_argument("--no-reference", action="store_true", help="skip the direct SIPp reference run")
    p.add_argument("--quick", action="store_true", help="smoke test: steps 50,100, 4 s window")
    p.add_argument("--switch-log-level", default="WARNING", help="the switch's [log] level (WARNING)")
    p.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")
    p.add_argument("--render", type=Path, metavar="JSON",
                   help="only rewrite the docs section from the JSON output of an earlier run")
    p.add_argument("--workdir", type=Path, help="keep logs, config and CDR store here (default: a temp dir)")
    args = p.parse_args(argv)
    if args.render:
        return render(args.render, args)
    if args.quick:
        args.steps, args.window, args.settle = "50,100", 4.0, 1.0
    steps = [int(x) for x in args.steps.split(",") if x.strip()]
    if not steps or max(steps) > (RTP_RANGE[1] - RTP_RANGE[0] + 1) // 4:
        p.error("steps must be 1..2499 calls (4 RTP ports per call in 40000-49998)")
    try:
        os.sched_setaffinity(0, {SIPP_CPU})  # this script's sampling stays off the switch's core
    except OSError:
        pass

    work = args.workdir or Path(tempfile.mkdtemp(prefix="relay_calls-"))
    work.mkdir(parents=True, exist_ok=True)
    seconds = write_audio(PCAP, work / "g711a.raw")
    result: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine_info(), "steps": [],
                    "reference": [], "workdir": str(work), "audio_seconds": round(seconds, 2)}
    commands: dict[str, str] = {}
    say(f"relay_calls: logs in {work}")
    interrupted = False
    try:
        measure(args, steps, work, result, commands)
    except KeyboardInterrupt:
        interrupted = True
        say("interrupted: every process stopped")
    summarize(result)
    print(json.dumps(output(result, args, commands), indent=2))
    if interrupted:
        return 130
    if not args.no_doc and result["steps"]:
        update_doc_section("relay_calls", report(result, args, commands))
        say(f"updated {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

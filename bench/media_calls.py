#!/usr/bin/env python3
"""Concurrent terminated calls on ONE core: the switch itself plays audio to every caller and decodes what they send.

  SIPp uac (bench/scenarios/uac_rtp.xml: PCMA, 20 ms packets, looped g711a audio for the whole call)
    -> softswitch, route `moh` -> service:moh (music on hold: a prompt looped to the caller)   pinned: taskset -c 0
  SIPp runs on core 1; there is no callee: the switch answers. Every call is 2 RTP streams (50 packets/s in,
  50 out). Per call and per 20 ms tick the switch encodes a PCMA frame of the prompt, takes the caller's frame
  out of its jitter buffer and decodes it, runs in-band DTMF detection on it (`[media] dtmf_inband = true`, the
  default) and offers both directions to a tap consumer, the level meter (`[media] level_meter = true`), whose
  rx/tx levels end up in the CDR.

For each step of concurrent calls N (--steps), a freshly started switch gets N calls opened at --setup-cps,
held up for --window seconds of measurement, then hung up. The switch's media clock counts frames, late
frames (sent > 10 ms after their tick was due) and skipped frames (ticks dropped after the loop fell 100 ms
behind); the switch logs these counters on SIGUSR1 (`stats: calls=.. cpu_s=.. media_frames=..`). The script
sends SIGUSR1 when the window opens and when it closes and works on the differences:
  - late % = (late + skipped) / (frames + skipped) over the window, and the largest lateness seen;
  - the switch's CPU (utime+stime from /proc/<pid>/stat) over the window, as % of one core and as ms of CPU
    per call-second;
  - from every CDR of the step (`softswitch cdr --format json`): legs[0].rtp packet counters and
    legs[0].rtp.levels (rx_dbfs/tx_dbfs): the share of calls with audio both ways.
A step passes with late % < 0.5 %, every call answered, >= 95 % of the N calls up on average in the window
and no media tick errors. The search stops at the first failing step (after one more step halfway back).
Then, as the peer measured in the same run, the switch's own relay path (bench/relay_calls.py's set-up:
bridged to SIPp uas -rtp_echo) runs at the best N, for a CPU-per-call ratio.

Prints one JSON object and rewrites the ``media_calls`` section of docs/benchmarks.md (``--doc`` for another file).
Run: ``python bench/media_calls.py`` (about 6-8 minutes), ``--quick`` for a smoke test, ``--no-write`` to
leave the docs alone.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import time
import wave
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# The same cores, ports and caller as bench/relay_calls.py (its set-up is the peer; the two never run together).
from harness import (CALL_PORTS as PORT, CALL_RTP_RANGE as RTP_RANGE, G711A_PCAP as PCAP,  # noqa: E402
                     DOC, REPO, SIPP_CPU, SWITCH_CPU, DropTracker, Proc, Processes, add_output_options,
                     add_step_options, best_step, calls_in_window, climb_steps, halfway_back, commands_block, core_cell, first_lines,
                     headline, hold_window, keep_off_switch_core, limit_line, log_problems, log_problems_line,
                     machine_info, make_workdir, md_table, parse_steps, pinned_command, render_saved, run_and_report,
                     run_fields, run_paragraph, say, setup_cell, softnet_dropped, start_switch, status_cell,
                     step_switch, step_timing, summarize_steps, switch_config, uac_figures, uac_rtp_argv,
                     uac_rtp_command, uas_echo_argv, wait_cdrs, write_pcap_audio)
from harness import check_stats_log_level, prefer_checkout  # noqa: E402

SERVICE = "moh"
MAX_LATE = 0.005
MIN_HELD = 0.95                       # >= 95 % of the step's calls up (answered) on average in the window
PPS = 50                              # 20 ms packets/frames
GOAL = 500
CONTENDED_WAIT_PCT = 5.0              # the loop's thread waited >= 5 % of the window for core 0 ...
CONTENDED_OTHERS_PCT = 10.0           # ... or other tasks / the hypervisor took >= 10 % of core 0


# ---------------------------------------------------------------------------------------------- audio
def _alaw_to_linear(a: int) -> int:
    a ^= 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t = (t + 0x108) << (seg - 1)
    return t if a & 0x80 else -t


def write_prompt(raw: Path, out: Path) -> float:
    """The caller's PCMA audio decoded to a 16-bit 8 kHz mono WAV: the prompt `moh` loops. Seconds of audio."""
    table = [_alaw_to_linear(i).to_bytes(2, "little", signed=True) for i in range(256)]
    pcm = b"".join(table[b] for b in raw.read_bytes())
    with wave.open(str(out), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(pcm)
    return len(pcm) / 2 / 8000


def media_config(prompt: Path, log_level: str) -> str:
    """harness.switch_config (trunk `loopback` from 127.0.0.1, prefix 9 -> SIPp uas for the relay peer) plus the
    level meter and in-band DTMF in its [media] table, the `moh` route and the prompt it loops."""
    text = switch_config(PORT["switch"], PORT["uas"], RTP_RANGE, db="data/media_calls.db", log_level=log_level)
    if "\n[media]\n" not in text:
        raise RuntimeError("harness.switch_config wrote no [media] table: cannot add level_meter")
    text = text.replace("\n[media]\n", "\n[media]\nlevel_meter = true\ndtmf_inband = true\n", 1)
    return text + f"""
[[routes]]
name = "moh"
exact = "{SERVICE}"
source = "any"
to = "service:{SERVICE}"

[services]
moh_prompt = "{prompt}"
"""


# ---------------------------------------------------------------------------------------------- the switch's counters
STATS_RE = re.compile(r"\bstats: (.*)$")


def switch_stats(switch: Proc, timeout: float = 5.0) -> dict | None:
    """SIGUSR1 to the switch, then its `stats:` log line (counters since it started) as a dict, with the
    moment the signal went out and the process's CPU times from /proc. None if no line came."""
    try:
        offset = switch.log_path.stat().st_size
    except OSError:
        offset = 0
    utime, stime = switch.cpu_times()
    run_ns, wait_ns = schedstat(switch.pid)
    core = cpu_jiffies(SWITCH_CPU)
    sent, wall = time.monotonic(), time.time()
    try:
        os.kill(switch.pid, signal.SIGUSR1)
    except ProcessLookupError:
        return None
    deadline = sent + timeout
    while time.monotonic() < deadline:
        try:
            with open(switch.log_path, "rb") as f:
                f.seek(offset)
                chunk = f.read().decode(errors="replace")
        except OSError:
            chunk = ""
        for line in chunk.splitlines():
            m = STATS_RE.search(line)
            if m:
                out: dict = {"t": sent, "wall": wall, "proc_utime": utime, "proc_stime": stime,
                             "run_ns": run_ns, "wait_ns": wait_ns, "core": core,
                             "reply_s": round(time.monotonic() - sent, 3)}
                for key, value in re.findall(r"(\w+)=(\S+)", m.group(1)):
                    try:
                        out[key] = int(value)
                    except ValueError:
                        try:
                            out[key] = float(value)
                        except ValueError:
                            out[key] = value
                return out
        time.sleep(0.02)
    return None


def schedstat(pid: int) -> tuple[int, int]:
    """(ns on the CPU, ns runnable but waiting for it) of a process's main thread (the event loop's)."""
    try:
        run, wait, _ = Path(f"/proc/{pid}/schedstat").read_text().split()[:3]
        return int(run), int(wait)
    except (OSError, ValueError):
        return 0, 0


def cpu_jiffies(cpu: int) -> dict[str, int]:
    """One CPU's /proc/stat counters: busy (user+nice+system+irq+softirq), steal (the hypervisor's), total."""
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith(f"cpu{cpu} "):
                v = [int(x) for x in line.split()[1:9]]
                return {"busy": v[0] + v[1] + v[2] + v[5] + v[6], "steal": v[7], "total": sum(v)}
    except (OSError, ValueError):
        pass
    return {"busy": 0, "steal": 0, "total": 0}


def window_figures(s0: dict, s1: dict) -> dict:
    """What happened between two stats snapshots."""
    span = s1["t"] - s0["t"]
    d = lambda key: (s1.get(key) or 0) - (s0.get(key) or 0)  # noqa: E731
    frames, late, skipped = d("media_frames"), d("media_late_frames"), d("media_skipped_frames")
    cpu = (s1["proc_utime"] + s1["proc_stime"]) - (s0["proc_utime"] + s0["proc_stime"])
    out = {
        "window_s": round(span, 2), "frames": frames, "late_frames": late, "skipped_frames": skipped,
        "late_pct": round(100 * (late + skipped) / max(1, frames + skipped), 3),
        "ticks_per_s": round(d("media_ticks") / span, 2) if span > 0 else None,
        "max_late_ms_run": s1.get("media_max_late_ms"),
        # the counter is a maximum since the switch started: it only tells about the window if it moved in it
        "max_late_ms_rose_in_window": (s1.get("media_max_late_ms") or 0) > (s0.get("media_max_late_ms") or 0),
        "media_errors": s1.get("media_errors"),
        "calls_at_start": s0.get("calls"), "calls_at_end": s1.get("calls"),
        "members_at_start": s0.get("media_members"), "members_at_end": s1.get("media_members"),
        "sessions_at_end": s1.get("media_sessions"),
        "switch_core_pct": round(100 * cpu / span, 1) if span > 0 else None,
        "switch_sys_share": round((s1["proc_stime"] - s0["proc_stime"]) / cpu, 2) if cpu > 0 else None,
        "switch_cpu_s_rusage": round(d("cpu_s"), 3),
        # wall-clock time inside media ticks (includes time the switch was preempted in them)
        "tick_wall_pct": round(100 * d("media_busy_s") / span, 1) if span > 0 else None,
        "stats_reply_s": max(s0["reply_s"], s1["reply_s"]),
        "switch_cpu_s": round(cpu, 3),
        # Contention: how long the event loop's thread was runnable but another task had core 0, and how busy
        # core 0 was with everything else (the machine is shared; the switch is pinned, the others are not).
        "runqueue_wait_pct": round(100 * (s1["wait_ns"] - s0["wait_ns"]) / 1e9 / span, 1) if span > 0 else None,
    }
    c0, c1 = s0["core"], s1["core"]
    total = c1["total"] - c0["total"]
    if total > 0:
        out["core0_busy_pct"] = round(100 * (c1["busy"] - c0["busy"]) / total, 1)
        out["core0_steal_pct"] = round(100 * (c1["steal"] - c0["steal"]) / total, 1)
        out["core0_others_pct"] = round(max(0.0, out["core0_busy_pct"] - (out["switch_core_pct"] or 0)), 1)
    out["contended"] = bool((out["runqueue_wait_pct"] or 0) >= CONTENDED_WAIT_PCT
                            or out.get("core0_others_pct", 0) + out.get("core0_steal_pct", 0) >= CONTENDED_OTHERS_PCT)
    return out


# ---------------------------------------------------------------------------------------------- CDRs
def _first(rtp: dict, *names: str) -> int:
    for name in names:
        if isinstance(rtp.get(name), (int, float)):
            return rtp[name]
    return 0


def cdr_figures(cdrs: list[dict], wall0: float | None, wall1: float | None) -> dict:
    """Audio both ways, packet pace, level-meter and jitter-buffer totals of the answered calls."""
    answered = [c for c in cdrs if c.get("disposition") == "ANSWERED"]
    both = rx_pkts = tx_pkts = billsec = tap_frames = tap_dropped = dtmf = 0
    one_way: dict[str, int] = {}
    jitter: dict[str, float] = {}
    rx_db: list[float] = []
    tx_db: list[float] = []
    for c in answered:
        leg = (c.get("legs") or [{}])[0]
        rtp = leg.get("rtp") or {}
        levels = rtp.get("levels") or {}
        pin = _first(rtp, "packets_in", "packets_received")
        pout = _first(rtp, "packets_out", "packets_sent")
        rx_pkts += pin
        tx_pkts += pout
        billsec += c.get("billsec") or 0
        tap_frames += levels.get("frames") or 0
        tap_dropped += levels.get("dropped") or 0
        dtmf += len(leg.get("dtmf") or [])
        if levels.get("rx_dbfs") is not None:
            rx_db.append(levels["rx_dbfs"])
        if levels.get("tx_dbfs") is not None:
            tx_db.append(levels["tx_dbfs"])
        ok = {"packets in": pin > 0, "packets out": pout > 0, "rx level": levels.get("rx_dbfs") is not None,
              "tx level": levels.get("tx_dbfs") is not None}
        if all(ok.values()):
            both += 1
        for what, good in ok.items():
            if not good:
                one_way[f"no {what}"] = one_way.get(f"no {what}", 0) + 1
        for key, value in (rtp.get("jitter_buffer") or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if key.endswith("_ms") or "depth" in key:  # a level, not a counter: the largest
                    jitter[f"{key} (max)"] = max(jitter.get(f"{key} (max)", value), value)
                else:
                    jitter[key] = jitter.get(key, 0) + value
    out: dict = {
        "cdrs": len(cdrs), "answered_cdrs": len(answered),
        "audio_both_ways": both, "audio_both_ways_pct": round(100 * both / len(answered), 1) if answered else None,
        "audio_missing": one_way,
        "rx_pace": round(rx_pkts / (billsec * PPS), 3) if billsec else None,
        "tx_pace": round(tx_pkts / (billsec * PPS), 3) if billsec else None,
        "packets_in": rx_pkts, "packets_out": tx_pkts,
        "rx_dbfs_range": [min(rx_db), max(rx_db)] if rx_db else None,
        "tx_dbfs_range": [min(tx_db), max(tx_db)] if tx_db else None,
        "tap_frames": tap_frames, "tap_dropped": tap_dropped,
        # SIPp sends no DTMF: anything the in-band detector reported is a false detection in the speech
        "dtmf_detected": dtmf,
        "jitter_buffer_totals": {k: round(v, 3) for k, v in sorted(jitter.items())},
        "rtp_keys": sorted(((answered[0].get("legs") or [{}])[0].get("rtp") or {}).keys()) if answered else [],
    }
    if wall0 is not None and wall1 is not None:
        out.update(calls_in_window(answered, wall0, wall1))
    return out


# ---------------------------------------------------------------------------------------------- one step
def run_step(procs: Processes, work: Path, switch: Proc, config: Path, n: int, args: argparse.Namespace) -> dict:
    base = work / f"moh-{n}"
    ramp, hold_ms = step_timing(n, args)
    softnet0 = softnet_dropped()
    uac = procs.start("uac", uac_rtp_argv(SERVICE, PORT["switch"], n, args.setup_cps, hold_ms, Path(f"{base}-uac.csv"),
                      Path(f"{base}-uac-err.log")), work, Path(f"{base}-uac.out"), cpu=SIPP_CPU, nice=args.sipp_nice)
    # SIPp's rtp_stream sockets (from -mp up) receive the switch's audio: their kernel drops, for information
    tracker = DropTracker({"switch": (switch, RTP_RANGE), "uac": (uac, (PORT["uac_media"], 65535))})
    snaps: dict[str, dict | None] = {}
    sipp_cpu: dict[str, float] = {}

    def snapshot(key: str) -> Callable[[float], None]:
        def take(now: float) -> None:
            snaps[key] = switch_stats(switch)
            sipp_cpu[key] = uac.cpu_seconds()
        return take
    try:
        hold_window(uac, tracker, ramp, hold_ms, args, snapshot("s0"), snapshot("s1"))
    finally:
        procs.stop(uac)
    st, res = uac_figures(Path(f"{base}-uac.csv"), n, hold_ms)
    ok = res["successful"]
    res.update({"sipp_failures": st.failures if st else {},
                "softnet_backlog_drops": softnet_dropped() - softnet0,
                "switch_socket_drops": tracker.drops("switch"), "uac_socket_drops": tracker.drops("uac"),
                "alive": switch.alive()})
    s0, s1 = snaps.get("s0"), snaps.get("s1")
    if s0 and s1:
        res.update(window_figures(s0, s1))
        res["sipp_core_pct"] = round(100 * (sipp_cpu["s1"] - sipp_cpu["s0"]) / max(1e-9, s1["t"] - s0["t"]), 1)
    else:
        res["window_s"] = 0.0
        res["stats_missing"] = [k for k in ("s0", "s1") if not snaps.get(k)]
    cdrs = wait_cdrs(config, work, f"-{uac.pid}@", ok) if res["alive"] else []
    res.update(cdr_figures(cdrs, s0["wall"] if s0 else None, s1["wall"] if s1 else None))
    calls_up = res.get("calls_avg_in_window") or min(res.get("calls_at_start") or 0, res.get("calls_at_end") or 0)
    if res.get("switch_core_pct") is not None and calls_up:
        res["cpu_pct_per_call"] = round(res["switch_core_pct"] / calls_up, 4)
        res["cpu_ms_per_call_s"] = round(1000 * res["switch_cpu_s"] / (calls_up * res["window_s"]), 3)
        res["calls_per_core_linear"] = int(100 / res["cpu_pct_per_call"]) if res["cpu_pct_per_call"] else None
    problems, first = log_problems(switch.log_path, 6)
    res["log_problem_lines"], res["log_problems_first"] = problems, first
    reasons = []
    if not res["alive"]:
        reasons.append("switch died")
    if res["failed"] > 0 or res.get("answered_cdrs", 0) < n:
        reasons.append(f"{res['failed']} calls failed, {res.get('answered_cdrs', 0)}/{n} answered CDRs")
    if res["window_s"] == 0.0:
        reasons.append("no measurement window (stats line missing or calls ended early)")
    elif res["late_pct"] >= 100 * MAX_LATE:
        reasons.append(f"late frames {res['late_pct']} % >= {100 * MAX_LATE} %")
    if res["window_s"] and calls_up < MIN_HELD * n:
        reasons.append(f"only {calls_up:g} of {n} calls up on average in the window")
    if res.get("media_errors"):
        reasons.append(f"{res['media_errors']} media tick errors")
    res["passed"] = not reasons
    res["reason"] = "; ".join(reasons) or "ok"
    if reasons:
        res["errors"] = first_lines(Path(f"{base}-uac-err.log"), 4)
    return res


# ---------------------------------------------------------------------------------------------- the peer
def run_relay_peer(procs: Processes, work: Path, config: Path, n: int, args: argparse.Namespace,
                   start_switch) -> dict:
    """The same N through the switch's relay path, exactly as bench/relay_calls.py measures a step."""
    import relay_calls  # noqa: PLC0415 - only needed for the peer
    peer_args = argparse.Namespace(setup_cps=args.setup_cps, settle=args.settle, window=args.window,
                                   sipp_nice=args.sipp_nice, echo_rcvbuf=args.echo_rcvbuf)
    with step_switch(procs, start_switch(work / f"softswitch-relay-{n}.log")) as switch:
        res = relay_calls.run_step(procs, work, switch, config, n, peer_args, "relay")
    keep = ("calls", "successful", "failed", "window_s", "calls_avg_in_window", "loss_pct", "switch_core_pct",
            "switch_sys_share", "cpu_pct_per_call", "cpu_us_per_packet", "relayed_pps_per_call",
            "offered_vs_nominal", "uas_loss_pct", "sipp_core_pct", "passed", "reason")
    out = {k: res.get(k) for k in keep}
    if res.get("switch_core_pct") is not None and res.get("calls_avg_in_window") and res.get("window_s"):
        out["cpu_ms_per_call_s"] = round(10 * res["switch_core_pct"] / res["calls_avg_in_window"], 3)
    return out


# ---------------------------------------------------------------------------------------------- reporting
def codec_cost(path: Path = DOC) -> dict | None:
    """PCMA encode/decode µs per 20 ms frame from the `codec_cost` section of docs/benchmarks.md (written by
    bench/codec_cost.py), speech-like signal preferred; None if the section or the rows are missing."""
    try:
        text = path.read_text()
    except OSError:
        return None
    m = re.search(r"<!-- codec_cost:start -->(.*?)<!-- codec_cost:end -->", text, re.S)
    if not m:
        return None
    rows = [[c.strip(" `*") for c in ln.strip().strip("|").split("|")] for ln in m.group(1).splitlines()
            if ln.strip().startswith("|") and not ln.strip().startswith("|---")]
    if len(rows) < 2:
        return None
    header = [h.lower() for h in rows[0]]
    try:
        op_i, sig_i = header.index("operation"), header.index("signal")
        ours_i = next(i for i, h in enumerate(header) if h.startswith("ours") and "µs" in h)
    except (ValueError, StopIteration):
        return None
    found: dict[str, tuple[str, float]] = {}
    for row in rows[1:]:
        try:
            op, sig, us = row[op_i], row[sig_i], float(row[ours_i])
        except (IndexError, ValueError):
            continue
        if op in ("alaw_encode", "alaw_decode") and (op not in found or "speech" in sig):
            found[op] = (sig, us)
    if len(found) < 2:
        return None
    enc, dec = found["alaw_encode"][1], found["alaw_decode"][1]
    return {"signal": found["alaw_decode"][0], "alaw_encode_us": enc, "alaw_decode_us": dec,
            "codec_ms_per_call_s": round((enc + dec) * PPS / 1000, 4)}


def codec_line(result: dict) -> str | None:
    c = result.get("codec_cost")
    if not c:
        return None
    best = best_step(result) or next((s for s in result["steps"] if s.get("cpu_ms_per_call_s")), None)
    line = (f"PCMA encode + decode, one of each per call per 20 ms frame: {c['alaw_encode_us']} + "
            f"{c['alaw_decode_us']} µs per frame ({c['signal']} signal, the `codec_cost` section, measured "
            f"separately) = {c['codec_ms_per_call_s']} ms per call-second")
    if best and best.get("cpu_ms_per_call_s"):
        line += (f", {round(100 * c['codec_ms_per_call_s'] / best['cpu_ms_per_call_s'], 1)} % of the "
                 f"{best['cpu_ms_per_call_s']} ms a terminated call cost at {best['calls']} calls")
    return line + "."


def report(result: dict, args: argparse.Namespace, commands: dict[str, str]) -> str:
    rows = []
    for s in sorted(result["steps"], key=lambda s: s["calls"]):
        late = f"{s['late_pct']} % ({s['late_frames']:,}+{s['skipped_frames']:,} of {s['frames']:,})" \
            if s.get("frames") is not None else "-"
        max_late = s.get("max_late_ms_run", "-")
        if s.get("max_late_ms_rose_in_window") is False:
            max_late = f"≤ {max_late} (before)"
        rows.append((s["calls"], f"{s.get('calls_up_in_window', '-')} / {s.get('calls_avg_in_window', '-')}",
                     f"{s['successful']}/{s['calls']}", setup_cell(s), late, max_late, core_cell(s),
                     s.get("cpu_ms_per_call_s", "-"), s.get("tick_wall_pct", "-"),
                     f"{s.get('runqueue_wait_pct', '-')} / {s.get('core0_others_pct', '-')} / "
                     f"{s.get('core0_steal_pct', '-')}{' ⚠' if s.get('contended') else ''}",
                     f"{s.get('audio_both_ways', '-')}/{s.get('answered_cdrs', '-')}",
                     f"{s.get('rx_pace', '-')} / {s.get('tx_pace', '-')}", s.get("sipp_core_pct", "-"), status_cell(s)))
    peer_rows = []
    for p in result.get("peer", []):
        if "error" in p:
            peer_rows.append((p.get("calls", "-"), "-", "-", "-", "-", "-", f"✗ {p['error']}"))
            continue
        peer_rows.append((p["calls"], f"{p['successful']}/{p['calls']}", p.get("calls_avg_in_window", "-"),
                          f"{p.get('loss_pct', '-')} %", p.get("switch_core_pct", "-"), p.get("cpu_ms_per_call_s", "-"),
                          p.get("terminated_vs_relayed", "-")))
    limit = headline(result)
    codec = codec_line(result)
    return f"""## Terminated media: concurrent calls per core (`bench/media_calls.py`)

{run_paragraph(result, args)}

Each call: SIPp uac (`uac_rtp.xml`) dials `moh` and sends G.711 A-law (SIPp's `g711a.pcap` audio, looped,
20 ms packets) for the whole call; the switch answers it itself with the `moh` service, which loops a prompt
(the same audio as a WAV) back. Per call and per 20 ms tick of the switch's media clock: one PCMA frame
encoded and sent, the caller's packet taken from the jitter buffer and decoded, in-band DTMF detection on it
(`dtmf_inband = true`, the default), both directions offered to a tap consumer (the level meter,
`level_meter = true`, whose rx/tx levels go into the CDR). The switch is pinned to core 0 (`taskset -c 0`),
SIPp to core 1; a fresh switch per step. The switch's config is the one above plus, in `[media]`,
`level_meter = true` and `dtmf_inband = true`, a route `exact = "moh"` → `service:moh`,
`[services] moh_prompt` = that WAV, and `[log] level = "INFO"` (the SIGUSR1 stats line is an INFO line; the
other INFO lines are three per call: INVITE, answered, ended; none during the window).

Method: the switch's media clock counts every frame it sends, frames sent more than 10 ms after their
tick was due ("late") and frames of ticks dropped once the loop fell 100 ms behind ("skipped"); it logs the
counters on SIGUSR1. The script signals it when the window opens (every call set up + {args.settle:g} s) and
when it closes, and works on the differences: late % = (late + skipped) / (frames + skipped). CPU = the switch's
utime+stime over the window (`/proc/<pid>/stat`), in ms of CPU per call-second (divided by the average number
of answered calls during the window, from the CDRs); "in ticks" = % of the window's wall-clock time spent
inside the media clock's ticks (encoding, jitter buffer, decoding, DTMF detection, tap offers; it includes any
time the switch was preempted inside them; the rest of its CPU is receiving RTP, the level meter's task, the
kernel, signalling). The machine is shared and only the switch is pinned, so each step also records the
contention on core 0: "wait" = % of the window the event loop's thread was runnable but not running
(`/proc/<pid>/schedstat`), "others" = core 0 busy (`/proc/stat`) minus the switch's own CPU, "steal" = time
the hypervisor took; ⚠ marks a step with wait ≥ {CONTENDED_WAIT_PCT:g} % or others + steal ≥
{CONTENDED_OTHERS_PCT:g} %, whose late frames are not the switch's alone. "audio both
ways" = answered calls whose CDR `legs[0].rtp` counted packets in and out and whose level meter measured
both an rx and a tx level; "pace" = packets received / sent per call-second over the nominal 50. A step
passes with late % < 0.5 %, every call answered, ≥ 95 % of the N calls up on average in the window and no
media tick errors. Steps go up until one fails, then one step halfway back. SIPp's `rtp_stream` does not
read the audio it receives: the kernel drop counters of its sockets (`uac_socket_drops` in the JSON) count
most of what the switch sent and are no loss measure; the switch's pace out and the CDR levels are.

**Max concurrent terminated calls with < 0.5 % late frames on one core: {limit}** (project goal: ≥ {GOAL}).

{md_table(("calls", "up all window / avg", "answered", "setup s (avg ± sd)", "late frames (late+skipped of frames)",
           "max late ms", "switch % of core 0", "ms CPU per call-s", "% in ticks",
           "core 0 wait / others / steal %", "audio both ways",
           "pace in / out", "SIPp % of core 1", "pass"), rows)}

Peer in the same run: the switch's own relay path at the best N, bridged to SIPp uas `-rtp_echo` exactly as
`bench/relay_calls.py` measures a step (4 RTP streams per call, no decoding; its loss criterion, not late frames):

{md_table(("calls", "answered", "avg up", "relay loss", "switch % of core 0", "ms CPU per call-s",
           "terminated / relayed CPU per call"), peer_rows) if peer_rows else '(not run)'}

{result.get('analysis', '')}
{f'{chr(10)}Codec cost: {codec}{chr(10)}' if codec else ''}
Commands (WORK = the work directory: `softswitch.toml`, `g711a.raw` and `moh.wav` are written there, SIPp runs
there; N = calls of the step, HOLD = (N / setup CPS + settle + window + 1) s in ms; the switch is started afresh
for every step and gets SIGUSR1 at both ends of the window):
{commands_block(commands, result["workdir"])}
"""


def analyse(result: dict) -> str:
    steps = result["steps"]
    if not steps:
        return ""
    f, line = limit_line(steps)
    lines = [line]
    if f and f.get("contended"):
        lines.append(f"That step was contended: the switch's event loop waited {f.get('runqueue_wait_pct')} % of "
                     f"the window for core 0, other tasks used {f.get('core0_others_pct')} % of it and the "
                     f"hypervisor {f.get('core0_steal_pct')} %; the limit found is this machine's at that "
                     f"moment, not the switch's alone: re-run on a quiet machine.")
    passing = [s for s in steps if s.get("passed") and s.get("cpu_ms_per_call_s")]
    if passing:
        s = max(passing, key=lambda s: s["calls"])
        lines.append(f"CPU per call at {s['calls']} calls: {s['cpu_ms_per_call_s']} ms per call-second "
                     f"({s['cpu_pct_per_call']} % of a core, {int(100 * (s.get('switch_sys_share') or 0))} % of it in "
                     f"the kernel; {s.get('tick_wall_pct')} % of the window inside media ticks), the core "
                     f"{s.get('switch_core_pct')} % busy: linearly {s.get('calls_per_core_linear'):,} calls per core.")
    for s in sorted(steps, key=lambda s: s["calls"]):
        if s.get("audio_both_ways_pct") is not None and s["audio_both_ways_pct"] < 100:
            lines.append(f"At {s['calls']} calls only {s['audio_both_ways']} of {s['answered_cdrs']} answered calls had "
                         f"audio both ways ({', '.join(f'{k}: {v}' for k, v in s['audio_missing'].items())}).")
        if s.get("tap_dropped"):
            lines.append(f"At {s['calls']} calls the level meter fell behind: {s['tap_dropped']:,} of "
                         f"{s['tap_frames'] + s['tap_dropped']:,} tap frames dropped.")
    detected = [s for s in steps if s.get("dtmf_detected")]
    if detected:
        lines.append("In-band DTMF detection reported digits SIPp never sent (false detections in speech): "
                     + ", ".join(f"{s['dtmf_detected']} in {s['answered_cdrs']} calls at {s['calls']}" for s in detected)
                     + ".")
    for p in result.get("peer", []):
        if p.get("terminated_vs_relayed"):
            lines.append(f"At {p['calls']} calls a terminated call costs {p['terminated_vs_relayed']}× the CPU of a "
                         f"relayed one ({p['terminated_ms']} vs {p['cpu_ms_per_call_s']} ms per call-second; the relay "
                         f"moves twice the packets but decodes nothing).")
    if problems := log_problems_line(result):
        lines.append(problems)
    return "\n".join(f"- {line}" for line in lines)


def summarize(result: dict) -> None:
    """The headline figures of a run, from its steps (also used to re-render a saved run)."""
    summarize_steps(result)
    for p in result.get("peer", []):
        mine = next((s for s in result["steps"] if s["calls"] == p.get("calls")), None)
        if mine and mine.get("cpu_ms_per_call_s") and p.get("cpu_ms_per_call_s"):
            p["terminated_ms"] = mine["cpu_ms_per_call_s"]
            p["terminated_vs_relayed"] = round(mine["cpu_ms_per_call_s"] / p["cpu_ms_per_call_s"], 2)
    result["analysis"] = analyse(result)


def output(result: dict, args: argparse.Namespace, commands: dict[str, str]) -> dict:
    best = best_step(result, {})
    return {"max_calls_lt_0_5pct_late": result.get("max_calls"), "goal": GOAL,
            **{k: result.get(k) for k in ("limit_not_reached", "switch_saturated")},
            "cpu_ms_per_call_s_at_max": best.get("cpu_ms_per_call_s"),
            "cpu_pct_per_call_at_max": best.get("cpu_pct_per_call"),
            "switch_core_pct_at_max": best.get("switch_core_pct"),
            "late_pct_at_max": best.get("late_pct"),
            "steps": result["steps"], "peer": result.get("peer", []),
            "codec_cost": result.get("codec_cost"), "codec_cost_line": codec_line(result),
            **run_fields(result, args, commands)}


def render(path: Path, args: argparse.Namespace) -> int:
    return render_saved("media_calls", path, args,
                        lambda saved: {"peer": saved.get("peer", []), "codec_cost": saved.get("codec_cost")},
                        summarize, report)


# ---------------------------------------------------------------------------------------------- the run
def measure(args: argparse.Namespace, steps: list[int], work: Path, result: dict, commands: dict[str, str]) -> None:
    """The steps of terminated calls, then the relay peer; fills ``result`` and ``commands``."""
    config = work / "softswitch.toml"
    config.write_text(media_config(work / "moh.wav", args.switch_log_level))
    logs: list[Path] = []
    with Processes() as procs:
        def fresh_switch(log_path: Path) -> Proc:
            logs.append(log_path)  # the switch's log is scanned for problems even when it does not come up
            switch = start_switch(procs, config, work, log_path)
            commands["softswitch"] = switch.command
            return switch
        commands["uac"] = uac_rtp_command(SERVICE, PORT["switch"], args.setup_cps)
        commands["stats"] = "kill -USR1 <softswitch pid>   # at both ends of the window; read `stats:` in its log"

        def step(n: int) -> dict:
            with step_switch(procs, fresh_switch(work / f"softswitch-moh-{n}.log")) as switch:
                res = run_step(procs, work, switch, config, n, args)
            result["steps"].append(res)
            say(f"  {n:5d} calls: {'PASS' if res['passed'] else 'fail'}  late {res.get('late_pct')} %"
                f" ({res.get('late_frames')}+{res.get('skipped_frames')} of {res.get('frames')})"
                f"  max late {res.get('max_late_ms_run')} ms  switch {res.get('switch_core_pct')} % core"
                f"  {res.get('cpu_ms_per_call_s')} ms/call-s  both ways {res.get('audio_both_ways')}/"
                f"{res.get('answered_cdrs')}  pace {res.get('rx_pace')}/{res.get('tx_pace')}"
                f"  up {res.get('calls_up_in_window')}/{res.get('calls_avg_in_window')}"
                f"  SIPp {res.get('sipp_core_pct')} %  setup {res.get('setup_s_avg')}±{res.get('setup_s_stdev')} s"
                f"  {'' if res['passed'] else res['reason']}")
            return res

        climb_steps(steps, step, halfway_back(not args.no_refine))
        summarize(result)
        if not args.no_peer:
            n = result["max_calls"] or steps[0]
            commands["uas (relay peer)"] = pinned_command(SIPP_CPU, uas_echo_argv())
            commands["uac (relay peer)"] = commands["uac"].replace(f"-s {SERVICE}", "-s 9N")
            try:
                peer = run_relay_peer(procs, work, config, n, args, fresh_switch)
            except Exception as exc:  # noqa: BLE001 - the peer must not sink the run's own figures
                peer = {"calls": n, "error": f"{type(exc).__name__}: {exc}"}
            result["peer"].append(peer)
            say(f"  relay peer {n} calls: {peer.get('switch_core_pct')} % core  {peer.get('cpu_ms_per_call_s')}"
                f" ms/call-s  loss {peer.get('loss_pct')} %  {peer.get('reason') or peer.get('error')}")
    count, first = 0, []
    for path in logs:
        c, lines = log_problems(path)
        count += c
        first += lines
    result["switch_log_problem_lines"], result["switch_log_problems_first"] = count, first[:10]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_step_options(p, "100,200,300,400,500,600,800", 20.0)
    p.add_argument("--sipp-nice", type=int, default=0, help="run SIPp under `nice -n N` (needs root for < 0)")
    p.add_argument("--echo-rcvbuf", type=int, default=4 * 1024 * 1024,
                   help="relay peer only: receive buffer forced on SIPp uas's echo socket, as relay_calls.py (4 MiB)")
    p.add_argument("--no-refine", action="store_true", help="no extra step between the last pass and the first fail")
    p.add_argument("--no-peer", action="store_true", help="skip the relay-path peer step")
    p.add_argument("--quick", action="store_true", help="smoke test: steps 20,50, 5 s window")
    p.add_argument("--switch-log-level", default="INFO",
                   help="the switch's [log] level; INFO or DEBUG (the SIGUSR1 stats line is logged at INFO)")
    add_output_options(p)
    args = p.parse_args(argv)
    if args.render:
        return render(args.render, args)
    if args.quick:
        args.steps, args.window, args.settle = "20,50", 5.0, 1.0
    check_stats_log_level(p, args)
    steps = parse_steps(p, args, "steps must be 1..2499 calls (RTP range 40000-49998, 4 ports per relayed call)")
    keep_off_switch_core()

    prefer_checkout()
    work = make_workdir(args, "media_calls")
    seconds = write_pcap_audio(PCAP, work / "g711a.raw")  # the same caller audio as relay_calls.py
    write_prompt(work / "g711a.raw", work / "moh.wav")
    result: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine_info(), "steps": [], "peer": [],
                    "workdir": str(work), "audio_seconds": round(seconds, 2), "codec_cost": codec_cost()}
    return run_and_report("media_calls", args, steps, work, result, measure, summarize, output, report)


if __name__ == "__main__":
    sys.exit(main())

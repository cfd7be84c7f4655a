#!/usr/bin/env python3
"""Concurrent bridged, RECORDED calls on ONE core: CPU per recorded call, gap-free files, disk bytes per minute.

  SIPp uac (bench/scenarios/uac_rtp.xml: PCMA, 20 ms packets, looped g711a audio for the whole call)
    -> softswitch, route `rec` (prefix 8, stripped; `record = "answer"`) -> trunk loopback   pinned: taskset -c 0
    -> SIPp uas (bench/scenarios/uas.xml, -rtp_echo: every packet goes back)
  The same set-up as bench/relay_calls.py (4 RTP streams per call through the relay), plus the recorder: the
  relay appends each packet of the caller's side (both directions) to the recorder's intake as it forwards it;
  every 250 ms the recorder's worker thread places all of them on one timeline (softswitch/recorder/timeline.py:
  by RTP timestamp, anchored to arrival), writes every recorded call's stereo 16-bit 8 kHz WAV (left = what the
  caller says, right = what it hears: SIPp's echo) and runs the talk statistics on it (webrtcvad per channel:
  "VAD on"); `[recording] format = "pcm16"`, `fsync = "interval"`, `fsync_interval_s = 5`.

For each step of concurrent calls N (--steps), a freshly started switch gets N calls opened at --setup-cps,
held up for --window seconds of measurement, then hung up. Measured per step:
  - the switch's CPU over the window (utime+stime, /proc/<pid>/stat), as % of core 0 and as ms of CPU per
    call-second, split into the event loop's thread and the other threads (the recorder's workers, mostly);
  - late media frames: the media clock's counters from the switch's SIGUSR1 `stats:` line (sent when the window
    opens and closes): (late + skipped) / (frames + skipped) (bridged calls, recorded or not, have no clock
    members: expected 0); the recorder's counters from the same line: worker steps, steps skipped because the
    worker was still busy, its longest step, packets too late for their stretch;
  - relay loss as bench/relay_calls.py counts it (kernel drops on the switch's RTP sockets + dropped_* counters);
  - after the step, EVERY recording: the CDR's `recording` (no `error`, `gap_frames == 0`), NAME.json next to it
    (`recording.gap_frames == 0`), NAME.wav a valid WAV (RIFF sizes = file size, 2 channels, 16 bit, 8 kHz) whose
    length is within 0.2 s of the CDR's billsec and of the recording's own duration_s, and continuous audio in
    both channels (see ZERO RUNS below); disk bytes per minute = file size / duration.
A step passes when every call completes (SIPp and an ANSWERED CDR each), every file passes, late frames
<= 0.5 %, relay loss <= 0.5 % and >= 95 % of the N calls were up on average in the window. Steps go up until one fails, then one
step halfway back, then one "overload probe" at 1.5 x the first failing N (what an overloaded switch does to the
files: the media clock skips ticks there). The peer, in the same run at the best N: the same calls through route
`outbound` (prefix 9: no recording, the plain relay), for the CPU ratio recorded / plain. Last, unless
--no-profile, one more recorded step at the first failing N with py-spy sampling the switch (from core 1).

ZERO RUNS: the caller plays the A-law audio of SIPp's g711a.pcap; G.711 A-law has no code for 0 (the smallest
magnitude decodes to +-8; 20 % of the pcap's samples are +-8: its pauses are not digital silence), so decoded
received audio never holds an exact-zero sample. Exact zeros in a recording are inserted: silence where no packet
landed (a lost packet, one too late for its stretch, a timing correction) or a pause. Between a channel's first
and last non-zero sample no zero run may last longer than --max-zero-ms (10 ms: half a frame, so one missing
20 ms packet is caught). Leading zeros (the answer comes before the caller's first packet;
the echo channel one round trip later) and trailing ones (SIPp stops its stream just before the BYE) are
allowed up to --max-edge-ms (1000 ms) each and reported.

Prints one JSON object and rewrites the ``record_calls`` section of docs/benchmarks.md (``--doc`` for another
file). Run: ``python bench/record_calls.py`` (about 6-8 minutes), ``--quick`` for a smoke test (< 1 min),
``--no-write`` to leave the docs alone.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
import wave
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (CALL_PORTS as PORT, CALL_RTP_RANGE as RTP_RANGE, G711A_PCAP as PCAP,  # noqa: E402
                     SIPP_CPU, DropTracker, Proc, Processes, add_output_options, add_step_options, calls_in_window,
                     check_stats_log_level, climb_steps, commands_block, first_lines, force_rcvbuf, halfway_back, hold_window,
                     keep_off_switch_core, log_problems, machine_info, make_workdir, md_table, parse_steps,
                     pinned_command, prefer_checkout, render_saved, run_and_report, run_paragraph, run_fields, say,
                     setup_cell, softnet_dropped, start_switch, status_cell, step_switch, step_timing,
                     summarize_steps, switch_config, uac_figures, uac_rtp_argv, uac_rtp_command, uas_echo_argv,
                     wait_cdrs, write_pcap_audio)
from media_calls import switch_stats, window_figures  # noqa: E402 - SIGUSR1 -> `stats:` line + /proc figures

GOAL = 500
MAX_LATE = 0.005
MIN_HELD = 0.95
PPS = 50
RATE = 8000
DUR_TOL_S = 0.2
REC_PREFIX, PLAIN_PREFIX = "8", "9"
FSYNC_INTERVAL_S = 5.0


# ---------------------------------------------------------------------------------------------- set-up
def record_config(log_level: str, fmt: str) -> str:
    """harness.switch_config (route `outbound`: prefix 9 -> trunk loopback, not recorded: the peer) plus the
    recorded route `rec` (prefix 8 -> the same trunk, record = "answer") and the [recording] table."""
    text = switch_config(PORT["switch"], PORT["uas"], RTP_RANGE, db="data/record_calls.db", log_level=log_level)
    return text + f"""
[[routes]]
name = "rec"
prefix = "{REC_PREFIX}"
strip = 1
source = "any"
to = "trunk:loopback"
record = "answer"

[recording]
dir = "recordings"
name = "{{date}}/{{call_id}}"
format = "{fmt}"
mono_tracks = false
fsync = "interval"
fsync_interval_s = {FSYNC_INTERVAL_S:g}
"""


def thread_cpu(pid: int) -> tuple[float, float]:
    """(CPU s of the main thread = the event loop, CPU s of all other threads) from /proc/<pid>/task/*/stat."""
    from harness import CLK_TCK
    main = other = 0.0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0, 0.0
    for tid in tids:
        try:
            text = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2:].split()
        cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
        if int(tid) == pid:
            main += cpu
        else:
            other += cpu
    return main, other


# ---------------------------------------------------------------------------------------------- verification
def zero_runs(ch: np.ndarray) -> tuple[int, int, int, int]:
    """(leading zeros, trailing zeros, longest zero run between the first and last non-zero sample, and the
    number of such inner runs longer than 0 samples) of one channel, in samples."""
    nz = np.flatnonzero(ch)
    if len(nz) == 0:
        return len(ch), len(ch), 0, 0
    gaps = np.diff(nz) - 1
    inner = gaps[gaps > 0]
    return int(nz[0]), int(len(ch) - 1 - nz[-1]), int(inner.max()) if len(inner) else 0, len(inner)


def check_recording(cdr: dict, args: argparse.Namespace) -> dict:
    """Everything verified about one recorded call; ``problems`` lists what failed (empty: the file is good)."""
    out: dict = {"call_id": cdr.get("call_id"), "problems": []}
    p = out["problems"]
    rec = cdr.get("recording")
    if not rec:
        p.append("no recording in the CDR")
        return out
    out["path"] = rec.get("path")
    if rec.get("error"):
        p.append(f"CDR recording error: {rec['error']}")
    if rec.get("gap_frames"):
        p.append(f"CDR gap_frames={rec['gap_frames']}")
    out["gap_frames"] = rec.get("gap_frames")
    billsec = cdr.get("billsec") or 0.0
    out["billsec"] = billsec
    out["duration_s"] = rec.get("duration_s")
    stats_path = Path(rec.get("stats_path") or "")
    try:
        meta = json.loads(stats_path.read_text())
        js = meta.get("recording") or {}
        out["json_bytes"] = stats_path.stat().st_size
        if js.get("gap_frames"):
            p.append(f"{stats_path.name}: gap_frames={js['gap_frames']}")
        if js.get("error"):
            p.append(f"{stats_path.name}: error {js['error']}")
        if not isinstance(js.get("stats"), dict):
            p.append(f"{stats_path.name}: no talk statistics")
    except (OSError, ValueError) as exc:
        p.append(f"stats json {stats_path}: {exc}")
    path = Path(rec.get("path") or "")
    try:
        size = path.stat().st_size
        with wave.open(str(path), "rb") as w:
            ch, width, rate, nframes = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            raw = w.readframes(nframes)
        raw_head = path.open("rb").read(12)
    except (OSError, wave.Error, EOFError) as exc:
        p.append(f"WAV {path}: {type(exc).__name__}: {exc}")
        return out
    out["bytes"] = size
    if (ch, width, rate) != (2, 2, RATE) and args.format == "pcm16":
        p.append(f"WAV format {ch} ch {8 * width} bit {rate} Hz")
    riff = int.from_bytes(raw_head[4:8], "little")
    if riff != size - 8 or len(raw) != nframes * ch * width:
        p.append(f"WAV sizes: RIFF {riff} vs file {size - 8}, data {len(raw)} vs {nframes * ch * width}")
    seconds = nframes / rate
    out["wav_s"] = round(seconds, 3)
    if abs(seconds - billsec) > DUR_TOL_S:
        p.append(f"WAV {seconds:.3f} s vs billsec {billsec:.3f} s")
    if rec.get("duration_s") is not None and abs(seconds - rec["duration_s"]) > 0.021:
        p.append(f"WAV {seconds:.3f} s vs duration_s {rec['duration_s']}")
    if width == 2 and ch == 2:
        pcm = np.frombuffer(raw, "<i2").reshape(-1, 2)
        ms = lambda samples: round(1000 * samples / rate, 1)  # noqa: E731
        for i, name in enumerate(("caller", "echo")):
            lead, tail, inner, runs = zero_runs(pcm[:, i])
            out[f"{name}_lead_ms"], out[f"{name}_tail_ms"] = ms(lead), ms(tail)
            out[f"{name}_zero_run_ms"], out[f"{name}_zero_runs"] = ms(inner), runs
            if lead >= len(pcm):
                p.append(f"{name} channel all zeros")
                continue
            if ms(inner) > args.max_zero_ms:
                where = np.flatnonzero(np.diff(np.flatnonzero(pcm[:, i])) - 1 == inner)
                at = (np.flatnonzero(pcm[:, i])[where[0]] + 1) / rate if len(where) else None
                p.append(f"{name} channel: {ms(inner)} ms of zeros at {at:.2f} s" if at is not None
                         else f"{name} channel: {ms(inner)} ms of zeros")
            if ms(lead) > args.max_edge_ms:
                p.append(f"{name} channel: {ms(lead)} ms of leading zeros")
            if ms(tail) > args.max_edge_ms:
                p.append(f"{name} channel: {ms(tail)} ms of trailing zeros")
    return out


def verify_recordings(cdrs: list[dict], args: argparse.Namespace) -> dict:
    """Every answered call's recording checked; totals, maxima and the first problems."""
    answered = [c for c in cdrs if c.get("disposition") == "ANSWERED"]
    checks = [check_recording(c, args) for c in answered]
    good = [c for c in checks if not c["problems"]]
    sized = [c for c in checks if c.get("bytes") and c.get("wav_s")]
    total_bytes = sum(c["bytes"] for c in sized)
    total_s = sum(c["wav_s"] for c in sized)
    mx = lambda key: max((c.get(key) or 0 for c in checks), default=None)  # noqa: E731
    kinds = Counter(re.sub(r"[\d.]+", "#", prob.split(": ", 1)[-1] if prob.startswith("WAV /") else prob)
                    for c in checks for prob in c["problems"])
    first = [f"{Path(c.get('path') or '?').name}: {'; '.join(c['problems'])}" for c in checks if c["problems"]][:6]
    return {
        "recordings": len(checks), "recordings_ok": len(good), "recordings_bad": len(checks) - len(good),
        "gap_frames_total": sum(c.get("gap_frames") or 0 for c in checks),
        "recorded_s": round(total_s, 1), "recorded_bytes": total_bytes,
        "json_bytes_avg": round(sum(c.get("json_bytes") or 0 for c in checks) / max(1, len(checks))),
        "bytes_per_min": round(60 * total_bytes / total_s) if total_s else None,
        "max_abs_wav_vs_billsec_s": round(max((abs(c["wav_s"] - c["billsec"]) for c in sized), default=0), 3),
        "wav_minus_billsec_s_median": round(float(np.median([c["wav_s"] - c["billsec"] for c in sized])), 3)
        if sized else None,
        "max_zero_run_ms": {"caller": mx("caller_zero_run_ms"), "echo": mx("echo_zero_run_ms")},
        "files_with_inner_zeros": sum(1 for c in checks if (c.get("caller_zero_runs") or c.get("echo_zero_runs"))),
        "max_lead_ms": {"caller": mx("caller_lead_ms"), "echo": mx("echo_lead_ms")},
        "max_tail_ms": {"caller": mx("caller_tail_ms"), "echo": mx("echo_tail_ms")},
        "problem_kinds": dict(kinds.most_common(8)), "problems_first": first,
    }


# ---------------------------------------------------------------------------------------------- one step
def run_step(procs: Processes, work: Path, switch: Proc, config: Path, n: int, args: argparse.Namespace,
             recorded: bool) -> dict:
    tag = "rec" if recorded else "plain"
    base = work / f"{tag}-{n}"
    ramp, hold_ms = step_timing(n, args)
    uas = procs.start("uas", uas_echo_argv() + ["-trace_err", "-error_file", f"{base}-uas-err.log",
                      "-max_log_size", "1000000"], work, Path(f"{base}-uas.out"), cpu=SIPP_CPU)
    time.sleep(0.5)
    echo_buffer = force_rcvbuf(uas, PORT["uas_media"], args.echo_rcvbuf) if args.echo_rcvbuf else 0
    service = f"{REC_PREFIX if recorded else PLAIN_PREFIX}{n}"
    softnet0 = softnet_dropped()
    uac = procs.start("uac", uac_rtp_argv(service, PORT["switch"], n, args.setup_cps, hold_ms, Path(f"{base}-uac.csv"),
                      Path(f"{base}-uac-err.log")), work, Path(f"{base}-uac.out"), cpu=SIPP_CPU)
    tracker = DropTracker({"switch": (switch, RTP_RANGE), "uas": (uas, (PORT["uas_media"], PORT["uas_media"]))})
    snaps: dict[str, dict | None] = {}
    extra: dict[str, tuple] = {}
    profile: dict = {}

    def snapshot(key: str) -> Callable[[float], None]:
        def take(now: float) -> None:
            snaps[key] = switch_stats(switch)
            extra[key] = (thread_cpu(switch.pid), uac.cpu_seconds() + uas.cpu_seconds())
            if key == "s0" and args.profile_this_step:
                profile["proc"] = start_profile(procs, work, switch, base, args)
        return take
    try:
        hold_window(uac, tracker, ramp, hold_ms, args, snapshot("s0"), snapshot("s1"))
    finally:
        procs.stop(uac)
        procs.stop(uas)
    st, res = uac_figures(Path(f"{base}-uac.csv"), n, hold_ms)
    res["recorded"] = recorded
    ok = res["successful"]
    res.update({"sipp_failures": st.failures if st else {}, "softnet_backlog_drops": softnet_dropped() - softnet0,
                "uas_socket_drops": tracker.drops("uas"), "uas_echo_rcvbuf": echo_buffer, "alive": switch.alive()})
    s0, s1 = snaps.get("s0"), snaps.get("s1")
    if s0 and s1:
        res.update(window_figures(s0, s1))
        span = s1["t"] - s0["t"]
        (m0, o0), sipp0 = extra["s0"]
        (m1, o1), sipp1 = extra["s1"]
        d = lambda key: (s1.get(key) or 0) - (s0.get(key) or 0)  # noqa: E731
        res.update(recorder_steps=d("recorder_steps"), recorder_skipped_steps=d("recorder_skipped"),
                   recorder_late_packets=d("recorder_late"), recorder_step_ms_max=s1.get("recorder_step_ms_max"),
                   recorder_intake_at_end=s1.get("recorder_intake"))
        res["loop_thread_core_pct"] = round(100 * (m1 - m0) / span, 1)
        res["other_threads_core_pct"] = round(100 * (o1 - o0) / span, 1)
        res["sipp_core_pct"] = round(100 * (sipp1 - sipp0) / span, 1)
    else:
        res["window_s"] = 0.0
        res["stats_missing"] = [k for k in ("s0", "s1") if not snaps.get(k)]
    if profile.get("proc"):
        res["profile"] = finish_profile(procs, profile["proc"], base, int(args.window))
    cdrs = wait_cdrs(config, work, f"-{uac.pid}@", ok, timeout=60.0) if res["alive"] else []
    answered = [c for c in cdrs if c.get("disposition") == "ANSWERED"]
    legs = [leg.get("rtp") or {} for c in answered for leg in c.get("legs", []) if leg.get("rtp")]
    total = lambda key: sum(rtp.get(key, 0) for rtp in legs)  # noqa: E731
    refused = total("dropped_source") + total("dropped_malformed")
    lost = tracker.drops("switch") + refused + total("dropped_unroutable")
    relay_in = total("packets_in")
    billsec = sum(c.get("billsec") or 0 for c in answered)
    res.update(cdrs=len(cdrs), answered_cdrs=len(answered), switch_socket_drops=tracker.drops("switch"),
               relay_loss_pct=round(100 * lost / max(1, relay_in + refused + tracker.drops("switch")), 3),
               offered_vs_nominal=round(relay_in / (billsec * 2 * PPS), 3) if billsec else None)
    if s0 and s1:
        res.update(calls_in_window(answered, s0["wall"], s1["wall"]))
    calls_up = res.get("calls_avg_in_window")
    if res.get("switch_cpu_s") is not None and calls_up:
        res["cpu_ms_per_call_s"] = round(1000 * res["switch_cpu_s"] / (calls_up * res["window_s"]), 3)
        res["calls_per_core_linear"] = (int(100 / (res["switch_core_pct"] / calls_up))
                                        if res["switch_core_pct"] else None)
    if recorded:
        res.update(verify_recordings(cdrs, args))
        if not args.keep_recordings:
            for c in answered:
                for key in ("path", "stats_path"):
                    if (c.get("recording") or {}).get(key):
                        Path(c["recording"][key]).unlink(missing_ok=True)
    problems, first = log_problems(switch.log_path, 6)
    res["log_problem_lines"], res["log_problems_first"] = problems, first
    reasons = []
    if not res["alive"]:
        reasons.append("switch died")
    if res["failed"] > 0 or len(answered) < n:
        reasons.append(f"{res['failed']} calls failed, {len(answered)}/{n} answered CDRs")
    if res["window_s"] == 0.0:
        reasons.append("no measurement window (stats line missing or calls ended early)")
    elif recorded and res["late_pct"] > 100 * MAX_LATE:
        reasons.append(f"late frames {res['late_pct']} % > {100 * MAX_LATE:g} %")
    if recorded and res["relay_loss_pct"] > 100 * MAX_LATE:
        reasons.append(f"relay loss {res['relay_loss_pct']} % > {100 * MAX_LATE:g} %")
    if res["window_s"] and (calls_up or 0) < MIN_HELD * n:
        reasons.append(f"only {calls_up} of {n} calls up on average in the window")
    if recorded and res.get("recordings_bad"):
        reasons.append(f"{res['recordings_bad']} of {res['recordings']} recordings failed verification "
                       f"({', '.join(f'{k} ×{v}' for k, v in list(res['problem_kinds'].items())[:3])})")
    if recorded and res.get("recordings", 0) < n:
        reasons.append(f"{res.get('recordings', 0)} recordings for {n} calls")
    res["passed"] = not reasons
    res["reason"] = "; ".join(reasons) or "ok"
    if reasons:
        res["errors"] = first_lines(Path(f"{base}-uac-err.log"), 4) + first_lines(Path(f"{base}-uas-err.log"), 2)
    return res


# ---------------------------------------------------------------------------------------------- profile
def start_profile(procs: Processes, work: Path, switch: Proc, base: Path, args: argparse.Namespace) -> Proc | None:
    """py-spy (if installed) sampling the switch for the window, from core 1, without stopping it (--nonblocking)."""
    spy = shutil.which("py-spy")
    if not spy:
        return None
    argv = [spy, "record", "--pid", str(switch.pid), "--duration", str(int(args.window)), "--rate", "100",
            "--nonblocking", "--threads", "--format", "raw", "--output", f"{base}-pyspy.txt"]
    return procs.start("py-spy", argv, work, Path(f"{base}-pyspy.log"), cpu=SIPP_CPU)


CATEGORIES = (  # the innermost frame of a sample matching one of these names where its time went
    ("recorder: talk statistics (webrtcvad)", ("talkstats.py", "media/vad.py", "webrtcvad")),
    ("recorder: WAV writes + fsync", ("recorder/wav.py",)),
    ("recorder: timeline (parse, decode, place)", ("recorder/timeline.py", "media/g711.py")),
    ("recorder: worker step (take, pauses, energies)", ("recorder/live.py",)),
    ("media clock, sessions, taps", ("media/clock.py", "media/tap.py", "media/jitter.py", "media/stream.py")),
    ("relay: packet receive + forward (Python)", ("media/relay.py", "media/rtp.py", "media/rtcp.py")),
    ("SIP, calls, CDR store", ("softswitch/sip", "softswitch/calls", "softswitch/cdr.py", "softswitch/store",
                               "softswitch/app.py")),
    ("asyncio / executor plumbing", ("asyncio/", "concurrent/futures")),
)
IDLE_LEAVES = ("_worker (concurrent/futures/thread.py:81)",)   # a recorder worker waiting for work


def finish_profile(procs: Processes, spy: Proc, base: Path, seconds: float, rate: int = 100) -> dict:
    """Where the switch's time went, as % of the non-idle samples (py-spy skips idle threads; a sample is one thread
    caught running; its idle detection is approximate, so shares, not % of a core). Main thread = the event loop;
    recorder_* = the recorder's workers."""
    try:
        spy.wait(seconds + 30)
    except subprocess.TimeoutExpired:
        pass
    procs.stop(spy)
    path = Path(f"{base}-pyspy.txt")
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {"error": f"no py-spy output: {spy.log_tail(3)}"}
    by_cat: Counter = Counter()
    by_leaf: Counter = Counter()
    by_thread: Counter = Counter()
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        thread = re.sub(r"^thread \(\d+\): ", "", frames[0])
        thread = re.sub(r"_\d+$", "_*", thread)
        if frames[-1] in IDLE_LEAVES:
            continue
        by_thread[thread] += n
        by_leaf[frames[-1]] += n
        name = "uvloop native (socket I/O, epoll, callbacks)" if thread == "MainThread" else f"{thread}: other"
        inner = frames[1:]
        loop_at = next((i for i, f in enumerate(inner) if f.startswith("Runner.run (")), None)
        if loop_at is not None:   # the event loop's own frames are not where its time went
            inner = inner[loop_at + 1:]
        for frame in reversed(inner):
            hit = next((cat for cat, keys in CATEGORIES if any(k in frame for k in keys)), None)
            if hit and not (hit == "asyncio / executor plumbing" and frame.startswith("Runner.run")):
                name = hit
                break
        by_cat[name] += n
    total = max(1, sum(by_thread.values()))
    pct = lambda c, k=12: {key: round(100 * v / total, 1) for key, v in c.most_common(k)}  # noqa: E731
    return {"samples": total, "seconds": seconds, "rate_hz": rate, "file": str(path),
            "share_by_category": pct(by_cat), "share_by_thread": pct(by_thread),
            "top_functions_share": pct(by_leaf, 8)}


# ---------------------------------------------------------------------------------------------- report
def rec_cells(s: dict) -> tuple:
    if s.get("recordings") is None:
        return ("-",) * 6
    zr = s.get("max_zero_run_ms") or {}
    lead = s.get("max_lead_ms") or {}
    steps = (f"{s.get('recorder_steps')} ({s.get('recorder_skipped_steps')}) / {s.get('recorder_step_ms_max')}"
             if s.get("recorder_steps") is not None else "-")
    return (f"{s['recordings_ok']}/{s['recordings']}", s.get("gap_frames_total"), steps,
            f"{zr.get('caller')} / {zr.get('echo')}", f"{lead.get('caller')} / {lead.get('echo')}",
            f"{s['bytes_per_min'] / 1e6:.3f} MB" if s.get("bytes_per_min") else "-")


def report(result: dict, args: argparse.Namespace, commands: dict[str, str]) -> str:
    rows = []
    for s in sorted(result["steps"], key=lambda s: s["calls"]):
        late = f"{s['late_pct']} % ({s['late_frames']:,}+{s['skipped_frames']:,} of {s['frames']:,})" \
            if s.get("frames") is not None else "-"
        rows.append((f"{s['calls']}{' (overload probe)' if s.get('probe') else ''}",
                     f"{s.get('calls_up_in_window', '-')} / {s.get('calls_avg_in_window', '-')}",
                     f"{s['successful']}/{s['calls']}", setup_cell(s), late,
                     f"{s.get('switch_core_pct', '-')} ({s.get('loop_thread_core_pct', '-')} + "
                     f"{s.get('other_threads_core_pct', '-')})", s.get("runqueue_wait_pct", "-"),
                     s.get("cpu_ms_per_call_s", "-"),
                     f"{s.get('relay_loss_pct', '-')} %", *rec_cells(s), s.get("sipp_core_pct", "-"), status_cell(s)))
    peer_rows = []
    for p in result.get("peer", []):
        peer_rows.append((p["calls"], f"{p.get('successful')}/{p['calls']}", p.get("calls_avg_in_window", "-"),
                          f"{p.get('relay_loss_pct', '-')} %", p.get("switch_core_pct", "-"),
                          p.get("cpu_ms_per_call_s", "-"), p.get("recorded_ms", "-"), p.get("recorded_vs_plain", "-")))
    best = result.get("max_calls") or 0
    verdict = result.get("verdict", "")
    return f"""## Recorded calls: concurrent bridged calls per core, recorded with VAD (`bench/record_calls.py`)

{run_paragraph(result, args)}

Each call: SIPp uac (`uac_rtp.xml`) dials `8N`, route `rec` (prefix 8 stripped, trunk `loopback`,
`record = "answer"`), bridged to SIPp uas `-rtp_echo` exactly as in `bench/relay_calls.py` (4 RTP streams per
call through the relay; SIPp's `g711a.pcap` A-law audio, looped, 20 ms packets). From the answer on, the relay
appends every packet of the caller's side (both directions) to the recorder's intake as it forwards it, untouched;
every 250 ms the recorder's one worker thread places all of them on one timeline (by RTP timestamp, anchored to
arrival: `softswitch/recorder/timeline.py`), writes each call's stereo 16-bit 8 kHz WAV 250 ms behind real time
(left: the caller, right: what it hears, SIPp's echo) and runs the talk statistics on it (webrtcvad on each
channel: "VAD on"; frames under the -45 dBFS level floor are not shown to it).
Config added to the one above: `[recording] dir = "recordings"`, `name = "{{date}}/{{call_id}}"`,
`format = "{args.format}"`, `mono_tracks = false`, `fsync = "interval"`, `fsync_interval_s = {FSYNC_INTERVAL_S:g}`,
the route `rec`, and `[log] level = "INFO"` (for the SIGUSR1 `stats:` line). Switch pinned to core 0, both SIPp
to core 1, a fresh switch per step.

Method: CPU = the switch's utime+stime over the window (`/proc`), split into the event loop's thread + the other
threads (the recorder's worker, the CDR store), in ms per call-second (divided by the average number of
answered calls in the window). Late frames = the media clock's (late + skipped) / (frames + skipped) between
SIGUSR1 `stats:` lines at both ends of the window (a frame is late > 10 ms after its tick was due; bridged calls
have no clock members, so this stays 0 unless something else ticks). Relay loss as `relay_calls.py` counts it.
After each step every recording is checked: CDR `recording` without `error` and with `gap_frames == 0` (packets
that came after their stretch had been written), NAME.json likewise, NAME.wav a valid WAV (RIFF sizes match the file, 2 × 16 bit,
8 kHz), its length within {DUR_TOL_S} s of the CDR's billsec and of `duration_s`, and **timeline continuity**:
G.711 A-law cannot encode 0 (the smallest magnitude decodes to ±8; the pcap's pauses are ±8, not digital
silence), so any exact-zero sample in a recording was inserted (no packet landed there: lost, too late, a timing
correction; or a pause); between a channel's first and last non-zero sample no zero run may exceed
{args.max_zero_ms:g} ms (one missing 20 ms packet is caught), and
leading/trailing zeros (answer before the first packet, echo one round trip later; SIPp stops its stream just
before the BYE) must stay ≤ {args.max_edge_ms:g} ms. Disk = file size / duration. A step passes when every
call completes, every file passes, late frames and relay loss ≤ {100 * MAX_LATE:g} % each and ≥ 95 % of the calls
were up on average in the window. Steps go up until one fails, then one step halfway back, then one "overload
probe" at 1.5 × the first failing N, to see what an overloaded switch does to the files.

**Max concurrent recorded calls on one core with every file gap-free and ≤ 0.5 % relay loss: {best:,}**
(goal: ≥ {GOAL}). {verdict}

{md_table(("calls", "up all window / avg", "answered", "setup s (avg ± sd)", "late frames", "switch % of core 0 "
           "(loop + other threads)", "loop waiting for core 0 %", "ms CPU per call-s", "relay loss", "files ok",
           "gap_frames", "recorder steps (skipped) / longest ms",
           "longest inner zero run ms (caller / echo)", "max leading zeros ms (caller / echo)", "disk per minute",
           "SIPp % of core 1", "pass"), rows)}

Peer in the same run: the same calls through route `outbound` (prefix 9, not recorded: the plain relay), same N,
timing and SIPp set-up:

{md_table(("calls", "answered", "avg up", "relay loss", "switch % of core 0", "ms CPU per call-s (plain)",
           "ms CPU per call-s (recorded)", "recorded / plain"), peer_rows) if peer_rows else '(not run)'}

{result.get('analysis', '')}

Commands (WORK = the work directory: `softswitch.toml` and `g711a.raw` are written there, SIPp runs there;
N = calls of the step, HOLD = (N / setup CPS + settle + window + 1) s in ms; switch and uas started afresh for every
step, the uas's echo socket's receive buffer raised as in `relay_calls.py`):
{commands_block(commands, result["workdir"])}
"""


def analyse(result: dict) -> str:
    steps = result["steps"]
    if not steps:
        return ""
    lines = []
    fails = sorted((s for s in steps if not s.get("passed")), key=lambda s: s["calls"])
    if fails:
        f = fails[0]
        lines.append(f"First failing step, {f['calls']} calls: {f['reason']}; the switch used "
                     f"{f.get('switch_core_pct')} % of core 0 (event loop thread {f.get('loop_thread_core_pct')} %, "
                     f"other threads {f.get('other_threads_core_pct')} %); SIPp {f.get('sipp_core_pct')} % of core 1.")
        if f.get("problems_first"):
            lines.append("Its first failed files: " + "; ".join(f"`{x}`" for x in f["problems_first"][:3]) + ".")
    for s in sorted(steps, key=lambda s: s["calls"]):
        if s.get("recorder_skipped_steps"):
            lines.append(f"At {s['calls']} calls the recorder's worker was still busy at {s['recorder_skipped_steps']} "
                         f"of its 250 ms wake-ups (longest step {s.get('recorder_step_ms_max')} ms; it then takes a "
                         f"bigger batch), {s.get('recorder_late_packets')} packets came too late for their stretch.")
        if s.get("late_pct", 0) > 100 * MAX_LATE and (s.get("switch_core_pct") or 100) < 85:
            lines.append(f"At {s['calls']} calls frames ran late ({s['late_pct']} %, up to "
                         f"{s.get('max_late_ms_run')} ms) with core 0 only {s.get('switch_core_pct')} % busy: the "
                         f"event loop's thread was runnable but waiting for the core {s.get('runqueue_wait_pct')} % "
                         f"of the window (other processes on core 0: "
                         f"{s.get('core0_others_pct')} %, steal {s.get('core0_steal_pct')} %), i.e. queued behind the "
                         f"switch's own threads ({s.get('other_threads_core_pct')} % of the core: the recorder's "
                         f"workers, "
                         f"pinned with it) and contending with it for the GIL.")
    saturated = [s for s in steps if not s.get("window_s") and s.get("recordings")]
    if saturated:
        s = min(saturated, key=lambda s: s["calls"])
        lines.append(f"At {s['calls']} calls the switch's core was saturated (its SIGUSR1 `stats:` line did not come "
                     f"within 5 s): the event loop read its sockets more than a second late, the recorder took those "
                     f"packets for timestamp jumps (re-anchoring them one by one, in Python) and fell further "
                     f"behind, and the files lost seconds of audio (`gap_frames`, long zero runs; the calls "
                     f"themselves went on). Known issue: overload shedding (`calls.overload_lateness`, 503) watches "
                     f"the media clock, which bridged calls do not use, so nothing refuses new calls there.")
    passing = [s for s in steps if s.get("passed") and s.get("cpu_ms_per_call_s")]
    if passing:
        s = max(passing, key=lambda s: s["calls"])
        lines.append(f"At {s['calls']} calls a recorded call costs {s['cpu_ms_per_call_s']} ms of CPU per call-second "
                     f"({s.get('loop_thread_core_pct')} % of core 0 on the event loop's thread, "
                     f"{s.get('other_threads_core_pct')} % on the other threads, the recorder's worker; its longest "
                     f"step {s.get('recorder_step_ms_max')} ms): linearly {s.get('calls_per_core_linear'):,} calls "
                     f"per core. "
                     f"Disk: {s.get('bytes_per_min'):,} bytes per minute of recording "
                     f"(pcm16 stereo 8 kHz is 1,920,000 + the 44-byte header; NAME.json ≈ "
                     f"{s.get('json_bytes_avg')} bytes).")
    for p in result.get("peer", []):
        if p.get("recorded_vs_plain"):
            lines.append(f"At {p['calls']} calls a recorded call costs {p['recorded_vs_plain']}× a plain relayed one "
                         f"({p['recorded_ms']} vs {p['cpu_ms_per_call_s']} ms per call-second).")
    prof = result.get("profile")
    if prof and prof.get("share_by_category"):
        cats = ", ".join(f"{k} {v}" for k, v in prof["share_by_category"].items())
        threads = ", ".join(f"{k} {v}" for k, v in prof["share_by_thread"].items())
        leaves = ", ".join(f"`{k}` {v}" for k, v in list(prof["top_functions_share"].items())[:6])
        lines.append(f"Profile (py-spy {prof['rate_hz']} Hz, `--nonblocking --threads`, from core 1) of an extra "
                     f"recorded step at {prof['calls']} calls (switch {prof.get('step_switch_core_pct')} % of core 0), "
                     f"{prof['seconds']:g} s, {prof['samples']:,} samples, in % of them: by thread {threads}; by "
                     f"where the innermost switch frame is: {cats}. Hottest lines (self): {leaves} (`Runner.run` = "
                     f"time in uvloop's C code: socket reads and sends, epoll, callbacks).")
        share = prof["share_by_category"]
        rec = sum(v for k, v in share.items() if k.startswith("recorder"))
        lines.append(f"Where a recorded call's core goes: recording-specific work (the worker's timeline, writes, "
                     f"VAD and statistics) is {rec:.0f} % of the samples, the VAD alone "
                     f"{share.get('recorder: talk statistics (webrtcvad)', 0)} %; the rest is the relay itself "
                     f"(Python per packet, plus uvloop's socket calls and epoll).")
    problems = result.get("switch_log_problem_lines")
    if problems:
        kinds = sorted({re.sub(r"^\S+ \S+ (\S+) \S+ (call=\S+ )?", r"\1 ", x)[:100]
                        for x in result.get("switch_log_problems_first", [])})
        lines.append(f"The switch logged {problems} WARNING/ERROR lines, e.g. "
                     + "; ".join(f"`{k}`" for k in kinds[:4]) + ".")
    return "\n".join(f"- {line}" for line in lines)


def make_verdict(result: dict) -> str:
    best = result.get("max_calls") or 0
    ratio = next((p.get("recorded_vs_plain") for p in result.get("peer", []) if p.get("recorded_vs_plain")), None)
    first_fail = min((s for s in result["steps"] if not s.get("passed")), key=lambda s: s["calls"], default=None)
    if best >= GOAL:
        return f"**Goal met** ({best:,} ≥ {GOAL})."
    why = " Every step passed: the limit is higher than the last step." if result.get("limit_not_reached") else ""
    if first_fail:
        sat = (first_fail.get("switch_core_pct") or 0) >= 85
        why = (f" Above it ({first_fail['calls']} calls) {first_fail['reason']}"
               + ("; the switch's core was saturated" if sat else "") + ".")
    return (f"**Goal missed**: {best:,} of {GOAL}.{why}"
            + (f" A recorded call costs {ratio}× a plain relayed one" if ratio else "")
            + ("; the profile line below shows where the switch's one core goes." if (result.get("profile") or {}).get(
                "share_by_category") else "." if ratio else ""))


def summarize(result: dict) -> None:
    summarize_steps(result)
    for p in result.get("peer", []):
        mine = next((s for s in result["steps"] if s["calls"] == p.get("calls")), None)
        if mine and mine.get("cpu_ms_per_call_s") and p.get("cpu_ms_per_call_s"):
            p["recorded_ms"] = mine["cpu_ms_per_call_s"]
            p["recorded_vs_plain"] = round(mine["cpu_ms_per_call_s"] / p["cpu_ms_per_call_s"], 2)
    result["verdict"] = make_verdict(result)
    result["analysis"] = analyse(result)


def output(result: dict, args: argparse.Namespace, commands: dict[str, str]) -> dict:
    best = next((s for s in result["steps"] if s["calls"] == result.get("max_calls")), {})
    return {"max_recorded_calls_no_gaps": result.get("max_calls"), "goal": GOAL, "verdict": result.get("verdict"),
            "limit_not_reached": result.get("limit_not_reached"), "switch_saturated": result.get("switch_saturated"),
            "cpu_ms_per_call_s_at_max": best.get("cpu_ms_per_call_s"),
            "bytes_per_min_at_max": best.get("bytes_per_min"),
            "recorded_vs_plain": next((p.get("recorded_vs_plain") for p in result.get("peer", [])), None),
            "steps": result["steps"], "peer": result.get("peer", []), "profile": result.get("profile"),
            "format": args.format, "max_zero_ms": args.max_zero_ms, "max_edge_ms": args.max_edge_ms,
            **run_fields(result, args, commands)}


# ---------------------------------------------------------------------------------------------- the run
def measure(args: argparse.Namespace, steps: list[int], work: Path, result: dict, commands: dict[str, str]) -> None:
    config = work / "softswitch.toml"
    config.write_text(record_config(args.switch_log_level, args.format))
    logs: list[Path] = []
    args.profile_this_step = False
    with Processes() as procs:
        commands["uas"] = pinned_command(SIPP_CPU, uas_echo_argv())
        commands["uac (recorded)"] = uac_rtp_command(f"{REC_PREFIX}N", PORT["switch"], args.setup_cps)
        commands["uac (plain peer)"] = uac_rtp_command(f"{PLAIN_PREFIX}N", PORT["switch"], args.setup_cps)
        commands["stats"] = "kill -USR1 <softswitch pid>   # at both ends of the window; read `stats:` in its log"

        def one(n: int, recorded: bool) -> dict:
            log_path = work / f"softswitch-{'rec' if recorded else 'plain'}-{n}.log"
            logs.append(log_path)
            with step_switch(procs, start_switch(procs, config, work, log_path)) as switch:
                commands["softswitch"] = switch.command
                return run_step(procs, work, switch, config, n, args, recorded)

        def step(n: int) -> dict:
            res = one(n, True)
            result["steps"].append(res)
            zr = res.get("max_zero_run_ms") or {}
            say(f"  {n:5d} recorded: {'PASS' if res['passed'] else 'fail'}  late {res.get('late_pct')} %"
                f"  switch {res.get('switch_core_pct')} % core (loop {res.get('loop_thread_core_pct')} + other "
                f"{res.get('other_threads_core_pct')})  {res.get('cpu_ms_per_call_s')} ms/call-s"
                f"  files ok {res.get('recordings_ok')}/{res.get('recordings')}  gaps {res.get('gap_frames_total')}"
                f"  zero run {zr.get('caller')}/{zr.get('echo')} ms  lead {res.get('max_lead_ms')}"
                f"  {res.get('bytes_per_min')} B/min  loss {res.get('relay_loss_pct')} %"
                f"  up {res.get('calls_avg_in_window')}  SIPp {res.get('sipp_core_pct')} %"
                f"  {'' if res['passed'] else res['reason']}")
            return res

        climb_steps(steps, step, halfway_back(not args.no_refine, 10))
        summarize_steps(result)
        fails = [s["calls"] for s in result["steps"] if not s.get("passed")]
        if fails and args.probe:
            # one step well past the limit: what an overloaded switch does to the files (skipped clock ticks)
            n = int(round(1.5 * min(fails), -1))
            if n not in [s["calls"] for s in result["steps"]]:
                res = step(n)
                res["probe"] = True
        summarize_steps(result)
        if not args.no_peer:
            peer_ns = [result["max_calls"] or steps[0]]
            for n in peer_ns:
                try:
                    res = one(n, False)
                except Exception as exc:  # noqa: BLE001 - the peer must not sink the run's own figures
                    res = {"calls": n, "error": f"{type(exc).__name__}: {exc}"}
                result["peer"].append(res)
                say(f"  {n:5d} plain peer: {res.get('switch_core_pct')} % core  {res.get('cpu_ms_per_call_s')} ms/call-s"
                    f"  loss {res.get('relay_loss_pct')} %  {res.get('reason') or res.get('error')}")
        if args.profile:
            fails = [s["calls"] for s in result["steps"] if not s.get("passed")]
            n = min(fails) if fails else (result["max_calls"] or steps[0])
            args.profile_this_step = True
            try:
                res = one(n, True)
                prof = res.get("profile") or {"error": "no profile"}
                prof["calls"] = n
                prof["step_switch_core_pct"] = res.get("switch_core_pct")
                result["profile"] = prof
                say(f"  profile at {n}: {prof.get('share_by_thread')} {prof.get('share_by_category')}")
            except Exception as exc:  # noqa: BLE001
                result["profile"] = {"calls": n, "error": f"{type(exc).__name__}: {exc}"}
            args.profile_this_step = False
    count, first = 0, []
    for path in logs:
        c, lines = log_problems(path)
        count += c
        first += lines
    result["switch_log_problem_lines"], result["switch_log_problems_first"] = count, first[:10]


def render(path: Path, args: argparse.Namespace) -> int:
    saved = json.loads(path.read_text())
    for key in ("format", "max_zero_ms", "max_edge_ms"):
        if key in saved:
            setattr(args, key, saved[key])
    return render_saved("record_calls", path, args,
                        lambda s: {"peer": s.get("peer", []), "profile": s.get("profile")}, summarize, report)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_step_options(p, "100,200,300,400,500,600,700,800", 20.0)
    p.add_argument("--format", choices=("pcm16", "ulaw"), default="pcm16", help="[recording] format (pcm16)")
    p.add_argument("--max-zero-ms", type=float, default=10.0,
                   help="longest run of exact-zero samples allowed inside a channel's audio (10 ms)")
    p.add_argument("--max-edge-ms", type=float, default=1000.0,
                   help="leading / trailing zeros allowed in a channel (1000 ms)")
    p.add_argument("--echo-rcvbuf", type=int, default=4 * 1024 * 1024,
                   help="receive buffer forced on SIPp uas's echo socket, as relay_calls.py (4 MiB; 0 = leave it)")
    p.add_argument("--no-refine", action="store_true", help="no extra step between the last pass and the first fail")
    p.add_argument("--no-peer", action="store_true", help="skip the plain (unrecorded) relay peer")
    p.add_argument("--no-profile", dest="profile", action="store_false",
                   help="skip the extra recorded step profiled with py-spy")
    p.add_argument("--no-probe", dest="probe", action="store_false",
                   help="skip the overload probe (one recorded step at 1.5x the first failing N)")
    p.add_argument("--keep-recordings", action="store_true", help="keep the WAV/JSON files (default: deleted once checked)")
    p.add_argument("--quick", action="store_true", help="smoke test: steps 20,50, 5 s window (< 1 min)")
    p.add_argument("--switch-log-level", default="INFO",
                   help="the switch's [log] level; INFO or DEBUG (the SIGUSR1 stats line is logged at INFO)")
    add_output_options(p)
    args = p.parse_args(argv)
    if args.render:
        return render(args.render, args)
    if args.quick:
        args.steps, args.window, args.settle, args.profile, args.probe = "20,50", 5.0, 1.0, False, False
    check_stats_log_level(p, args)
    steps = parse_steps(p, args, "steps must be 1..2499 calls (4 RTP ports per relayed call in 40000-49998)")
    keep_off_switch_core()
    prefer_checkout()
    work = make_workdir(args, "record_calls")
    seconds = write_pcap_audio(PCAP, work / "g711a.raw")
    result: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine_info(), "steps": [], "peer": [],
                    "workdir": str(work), "audio_seconds": round(seconds, 2)}
    return run_and_report("record_calls", args, steps, work, result, measure, summarize, output, report)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Highest sustained call rate (CPS) of zero-length calls, in one run, for three set-ups:

  direct      SIPp uac -> SIPp uas                                   (what the load generator can do)
  softswitch  SIPp uac -> softswitch (prefix 9 -> trunk loopback) -> SIPp uas
  sippy       SIPp uac -> sippy b2bua_simple -> SIPp uas             (the Python peer)

The B2BUA under test runs pinned to core 0 (``taskset -c 0``), both SIPp processes to core 1. For each set-up
the rate is doubled from --start-cps until a step fails, then bisected; every step starts the B2BUA afresh. A step sends rate x --step-seconds calls
with bench/scenarios/uac.xml (SIPp's ``uac``, ``-d 0``); it passes when at most 0.1 % of them did not succeed
(SIPp's ``-trace_stat`` counters, uac and uas), the achieved rate is within 5 % of the target, and the B2BUA is
still alive. A failed step counts at once (--retries to retry it). The two B2BUAs are searched in lockstep, one step each
in turn, so that whatever else loads the shared machine falls on both alike; "direct", the ceiling of the method rather than a result, is
searched first, coarsely (15 %) and without retries.

Prints one JSON object on stdout and rewrites the ``sip_cps`` section of docs/benchmarks.md.
Run: ``python bench/sip_cps.py`` (about 6-9 minutes), ``--quick`` for a smoke test.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Generator
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (DOC, Proc, Processes, first_lines, log_problems, machine_info, md_table, options_probe,  # noqa: E402
                     say, sipp_stats, SCENARIOS, pretty, sipp_uas_argv, switch_argv, switch_config, update_doc_section,
                     SIPP, SIPP_BUFF)

B2BUA_CPU, SIPP_CPU = 0, 1
PORT = {"switch": 15060, "uac": 15061, "sippy": 15062, "uas": 15090, "uac_cp": 15889, "uas_cp": 15888}
RTP_RANGE = (40000, 49998)
TARGETS = ("direct", "softswitch", "sippy")
MAX_FAIL_RATIO = 0.001
MIN_ACHIEVED = 0.95


@dataclass
class Step:
    rate: int
    calls: int
    passed: bool
    achieved_cps: float
    successful: int
    failed: int
    retransmissions: int
    response_ms: float
    b2bua_core_pct: float | None
    reason: str
    errors: list[str]


def b2bua_simple_path() -> str:
    beside = Path(sys.executable).parent / "b2bua_simple"
    found = str(beside) if beside.exists() else shutil.which("b2bua_simple")
    if not found:
        raise SystemExit("b2bua_simple not found: pip install sippy (the bench extra)")
    return found


class Target:
    """One set-up: where the uac sends, what number it dials, and the B2BUA process (None for direct)."""

    def __init__(self, name: str, procs: Processes, work: Path) -> None:
        self.name, self.procs, self.work = name, procs, work
        self.proc: Proc | None = None
        self.crashes: list[str] = []
        self.steps: list[Step] = []
        if name == "direct":
            self.port, self.service = PORT["uas"], "123"
        elif name == "softswitch":
            self.port, self.service = PORT["switch"], "9123"
            self.config = work / "softswitch.toml"
            self.config.write_text(switch_config(PORT["switch"], PORT["uas"], RTP_RANGE, db="data/sip_cps.db"))
        else:
            self.port, self.service = PORT["sippy"], "123"

    def argv(self) -> list[str]:
        if self.name == "softswitch":
            return switch_argv(self.config)
        return [b2bua_simple_path(), "-f", "-l", "127.0.0.1", "-p", str(PORT["sippy"]),
                "-n", f"127.0.0.1:{PORT['uas']}"]

    def env(self) -> dict[str, str]:
        # sippy logs every SIP message at its default level INFO; WARN matches the switch's [log] level.
        return {"PYTHONUNBUFFERED": "1"} if self.name == "softswitch" else {"SIPLOG_LVL": "WARN", "SIPLOG_BEND": "stderr"}

    def command(self) -> str:
        shown = [f"{k}={v}" for k, v in self.env().items() if k != "PYTHONUNBUFFERED"]
        return shlex.join(shown + ["taskset", "-c", str(B2BUA_CPU)] + self.argv())

    def start(self) -> None:
        if self.name == "direct":
            return
        self.proc = self.procs.start(self.name, self.argv(), self.work, self.work / f"{self.name}.log",
                                     cpu=B2BUA_CPU, env=self.env())
        if not options_probe("127.0.0.1", self.port, 20.0):
            tail = self.proc.log_tail()
            self.procs.stop(self.proc)
            raise RuntimeError(f"{self.name} did not answer OPTIONS on :{self.port}\n{tail}")

    def check_alive(self) -> bool:
        """False (and the crash recorded) if the B2BUA died during the step."""
        if self.proc is None or self.proc.alive():
            return True
        self.crashes.append(f"exit status {self.proc.popen.returncode}; log tail:\n{self.proc.log_tail(20)}")
        return False

    def stop(self) -> None:
        if self.proc is not None:
            self.procs.stop(self.proc, timeout=8.0)
            self.proc = None


def uac_argv(target: Target, rate: int, calls: int, stat: Path, err: Path, timeout: int) -> list[str]:
    return [SIPP, "-nostdin", "-sf", str(SCENARIOS / "uac.xml"), "-i", "127.0.0.1", "-p", str(PORT["uac"]), "-cp", str(PORT["uac_cp"]),
            "-s", target.service, "-r", str(rate), "-m", str(calls), "-l", str(max(100, rate)), "-d", "0",
            "-recv_timeout", "5000", "-timeout", f"{timeout}s", *SIPP_BUFF,
            "-trace_stat", "-stf", str(stat), "-fd", "1", "-trace_err", "-error_file", str(err),
            "-max_log_size", "1000000", f"127.0.0.1:{target.port}"]


def run_step(target: Target, rate: int, step_seconds: float, tag: str) -> Step:
    procs, work = target.procs, target.work
    calls = max(1, int(rate * step_seconds))
    base = work / f"{target.name}-{rate}-{tag}"
    uas = procs.start("uas", sipp_uas_argv(PORT["uas"], PORT["uas_cp"], [
        "-trace_err", "-error_file", f"{base}-uas-err.log", "-max_log_size", "1000000",
        "-trace_stat", "-stf", f"{base}-uas.csv", "-fd", "1"]), work, Path(f"{base}-uas.out"), cpu=SIPP_CPU)
    time.sleep(0.3)
    cpu0 = target.proc.cpu_seconds() if target.proc else 0.0
    t0 = time.monotonic()
    timeout = int(step_seconds * 1.5 + 10)  # an overloaded step ends here; its unfinished calls count as failed
    uac = procs.start("uac", uac_argv(target, rate, calls, Path(f"{base}-uac.csv"), Path(f"{base}-uac-err.log"),
                      timeout), work, Path(f"{base}-uac.out"), cpu=SIPP_CPU)
    try:
        uac.wait(timeout + 30)
    finally:
        procs.stop(uac)
        wall = time.monotonic() - t0
        busy = (target.proc.cpu_seconds() - cpu0) if target.proc else None
        procs.stop(uas)
    alive = target.check_alive()
    st = sipp_stats(Path(f"{base}-uac.csv"))
    errors = first_lines(Path(f"{base}-uac-err.log"), 4) + first_lines(Path(f"{base}-uas-err.log"), 2)
    if st is None:
        return Step(rate, calls, False, 0.0, 0, calls, 0, 0.0, None, "no SIPp statistics", errors)
    # Calls are created during (elapsed - one call length): the last one still had to run to its end.
    creating = max(st.elapsed - st.call_length, 1e-3)
    achieved = min(st.created, calls) / creating
    # A call can fail at the called end only (the uas aborts it, then answers the BYE out of call): count it.
    uas_st = sipp_stats(Path(f"{base}-uas.csv"))
    uas_failed = uas_st.failed if uas_st else 0
    # (the uas can count more failures than calls: an aborted call's retransmitted INVITE opens a new one)
    failed = min(calls, max(calls - st.successful, uas_failed))
    core = round(100 * busy / wall, 1) if busy is not None else None
    reasons = []
    if not alive:
        reasons.append(f"{target.name} died")
    if failed > MAX_FAIL_RATIO * calls:
        detail = ", ".join(f"{k} {v}" for k, v in st.failures.items())
        if uas_failed:
            detail += f"{', ' if detail else ''}{uas_failed} calls aborted by the uas"
        reasons.append(f"{failed} failed ({100 * failed / calls:.2f} %{'; ' + detail if detail else ''})")
    if achieved < MIN_ACHIEVED * rate:
        reasons.append(f"achieved {achieved:.0f} cps < 95 % of target")
    return Step(rate, calls, not reasons, round(achieved, 1), st.successful, failed, st.retransmissions,
                round(st.response_time * 1000, 2), core, "; ".join(reasons) or "ok", errors if reasons else [])


def bisection(start: int, max_cps: int, tolerance: float) -> Generator[int, bool, int]:
    """Yields the rates to try and is sent whether each passed: doubles until a failure, then bisects until the
    gap is within ``tolerance``. Returns the highest rate that passed (0 if none)."""
    lo, hi, rate = 0, None, min(start, max_cps)
    while hi is None:
        if (yield rate):
            lo = rate
            if rate >= max_cps:
                break
            rate = min(rate * 2, max_cps)
        else:
            hi = rate
    while hi is not None and hi - lo > max(1, tolerance * max(lo, 1)):
        mid = (lo + hi) // 2
        if mid in (lo, hi):
            break
        if (yield mid):
            lo = mid
        else:
            hi = mid
    return lo


def attempt(target: Target, rate: int, args: argparse.Namespace, retries: int) -> bool:
    """One search step at ``rate`` (retried on failure), on a freshly started B2BUA: an overloaded step leaves
    transactions retransmitting for 32 s, which must not spill into the next step (whichever target it is)."""
    for n in range(1 + retries):
        target.start()
        try:
            step = run_step(target, rate, args.step_seconds, f"try{n}")
        finally:
            target.stop()
        target.steps.append(step)
        say(f"  {target.name:10s} {rate:6d} cps: {'PASS' if step.passed else 'fail'}  achieved {step.achieved_cps}"
            f"  failed {step.failed}/{step.calls}  retrans {step.retransmissions}"
            f"  b2bua {step.b2bua_core_pct}% of a core  {'' if step.passed else step.reason}")
        if step.passed:
            return True
    return False


def search(targets: list[Target], args: argparse.Namespace) -> dict[str, int]:
    """Searches the targets' maximum rates in lockstep, one step each in turn, so that whatever else loads the
    machine meanwhile falls on all of them alike. "direct" (SIPp against itself, only the ceiling of the method)
    is searched coarsely (15 %) without retries."""
    running: dict[str, tuple[Target, Generator[int, bool, int], int]] = {}
    for t in targets:
        gen = bisection(args.start_cps, args.max_cps, max(args.tolerance, 0.15) if t.name == "direct" else args.tolerance)
        running[t.name] = (t, gen, next(gen))
    found: dict[str, int] = {}
    while running:
        for name in list(running):
            t, gen, rate = running[name]
            passed = attempt(t, rate, args, 0 if name == "direct" else args.retries)
            try:
                running[name] = (t, gen, gen.send(passed))
            except StopIteration as done:
                found[name] = done.value
                del running[name]
                say(f"{name}: {done.value} CPS")
    return found


def report(result: dict, args: argparse.Namespace, commands: dict[str, str]) -> str:
    m = result["machine"]
    rows = []
    for name in TARGETS:
        if name not in result["targets"]:
            continue
        t = result["targets"][name]
        passing = [s for s in t["steps"] if s["passed"] and s["rate"] == t["cps"]]
        core = passing[-1]["b2bua_core_pct"] if passing and passing[-1]["b2bua_core_pct"] is not None else "-"
        rows.append((name, f"**{t['cps']:,}**", core, len(t["steps"]), "; ".join(t["crashes"]) or "-",
                     t.get("log_problem_lines", "-")))
    ratio = lambda k: f"{result[k]:.2f}" if result.get(k) is not None else "n/a"  # noqa: E731
    trace = []
    for name, t in result["targets"].items():
        trace.append(f"- {name}: " + ", ".join(f"{s['rate']}{'✓' if s['passed'] else '✗'}" for s in t["steps"]))
    failures = []
    for name, t in result["targets"].items():
        for s in t["steps"]:
            if not s["passed"]:
                failures.append(f"- {name} @ {s['rate']} cps: {s['reason']}")
    return f"""## SIP call rate (`bench/sip_cps.py`)

Run {result['date']} on {m['cpus']} vCPU ({m['cpu']}), Python {m['python']}, uvloop {m['uvloop']}, {m['sipp']},
sippy {m['sippy']}; {'**quick smoke run, not a measurement**; ' if args.quick else ''}steps of {args.step_seconds:g} s,
load average at start {' / '.join(m['loadavg_at_start'])}.

Highest sustained rate of zero-length calls (INVITE / 180 / 200 / ACK / BYE / 200) with ≤ 0.1 % failed calls
and the achieved rate within 5 % of the target. The B2BUA under test is pinned to core 0, SIPp uac and uas
share core 1, so "direct" is what one core of SIPp can generate and absorb, the ceiling of this method.

{md_table(("set-up", "max CPS", "B2BUA % of core 0 at that rate", "steps", "crashes", "log warnings/errors"), rows)}

- softswitch / sippy: **{ratio('ratio_softswitch_sippy')}×** (project goal: ≥ 2×)
- softswitch / direct SIPp: {ratio('ratio_softswitch_direct')}

Not like for like, in sippy's favour: `b2bua_simple` relays signalling only and keeps no records, while the
softswitch anchors the media of every call (two RTP/RTCP socket pairs bound and closed per call, SDP
rewritten both ways) and writes a CDR to SQLite for every call.

Search trace (✓ pass, ✗ fail; the B2BUAs were searched in lockstep{", a failed step retried " + str(args.retries) + " time(s)" if args.retries else ""}; "direct" to
15 %):
{chr(10).join(trace)}

{('Why steps failed:' + chr(10) + chr(10).join(failures)) if failures else ''}

Commands (WORK = the work directory, where the script writes `softswitch.toml`; RATE and CALLS = RATE × step
seconds vary per step; the B2BUA and the uas are started afresh for every step, the uas also with
`-trace_err -trace_stat`):
```
{chr(10).join(f'{k}: {pretty(v, Path(result["workdir"]))}' for k, v in commands.items())}
```
"""


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--step-seconds", type=float, default=10.0, help="calls per step = rate x this (default 10)")
    p.add_argument("--start-cps", type=int, default=200, help="first rate tried (default 200)")
    p.add_argument("--max-cps", type=int, default=30000, help="never try above this rate (default 30000)")
    p.add_argument("--tolerance", type=float, default=0.1, help="stop bisecting at this relative gap (0.1)")
    p.add_argument("--retries", type=int, default=0, help="retries of a failed step before it counts (0)")
    p.add_argument("--targets", default=",".join(TARGETS), help="comma list of direct,softswitch,sippy")
    p.add_argument("--quick", action="store_true", help="smoke test: 1 s steps, coarse search, no retries")
    p.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")
    p.add_argument("--workdir", type=Path, help="keep logs and configs here (default: a temporary directory)")
    args = p.parse_args(argv)
    if args.quick:
        args.step_seconds, args.tolerance, args.retries = min(args.step_seconds, 1.0), 0.25, 0
        args.max_cps = min(args.max_cps, 3000)
    names = [n.strip() for n in args.targets.split(",") if n.strip()]
    unknown = set(names) - set(TARGETS)
    if unknown:
        p.error(f"unknown targets: {', '.join(sorted(unknown))}")

    work = args.workdir or Path(tempfile.mkdtemp(prefix="sip_cps-"))
    work.mkdir(parents=True, exist_ok=True)
    result: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine_info(), "targets": {},
                    "workdir": str(work)}
    commands: dict[str, str] = {}
    say(f"sip_cps: logs in {work}")
    interrupted = False
    with Processes() as procs:
        try:
            targets = [Target(name, procs, work) for name in names]
            for target in targets:
                commands[f"uac ({target.name})"] = shlex.join(["taskset", "-c", str(SIPP_CPU)] + uac_argv(
                    target, 0, 0, Path("uac.csv"), Path("uac-err.log"), 0)).replace(
                    "-r 0 -m 0 -l 100", "-r RATE -m CALLS -l max(100,RATE)").replace("-timeout 0s", "-timeout 1.5xSTEP+10s")
            commands["uas"] = shlex.join(["taskset", "-c", str(SIPP_CPU)] + sipp_uas_argv(PORT["uas"], PORT["uas_cp"]))
            # SIPp alone first; then the B2BUAs, one step each in turn, each step on a fresh B2BUA process.
            groups = [[t for t in targets if t.name == "direct"], [t for t in targets if t.name != "direct"]]
            for group in (g for g in groups if g):
                for target in group:
                    if target.name != "direct":
                        commands[target.name] = target.command()
                found = search(group, args)
                for target in group:
                    entry = {"cps": found.get(target.name, 0), "steps": [asdict(s) for s in target.steps],
                             "crashes": target.crashes}
                    if target.name != "direct":  # WARNING/ERROR lines and tracebacks the B2BUA wrote
                        count, lines = log_problems(work / f"{target.name}.log")
                        entry["log_problem_lines"], entry["log_problems_first"] = count, lines
                    result["targets"][target.name] = entry
        except KeyboardInterrupt:
            interrupted = True
            say("interrupted: stopping everything")
    cps = {n: result["targets"][n]["cps"] for n in result["targets"]}
    out = {n: cps.get(n) for n in TARGETS}
    out["ratio_softswitch_direct"] = (round(cps["softswitch"] / cps["direct"], 4)
                                      if cps.get("direct") and "softswitch" in cps else None)
    out["ratio_softswitch_sippy"] = (round(cps["softswitch"] / cps["sippy"], 3)
                                     if cps.get("sippy") and "softswitch" in cps else None)
    result.update(out)
    out.update(commands=[f"{k}: {v}" for k, v in commands.items()], machine=result["machine"],
               step_seconds=args.step_seconds, quick=args.quick, workdir=str(work),
               steps={n: result["targets"][n]["steps"] for n in result["targets"]},
               crashes={n: result["targets"][n]["crashes"] for n in result["targets"] if result["targets"][n]["crashes"]},
               b2bua_logs={n: {k: result["targets"][n][k] for k in ("log_problem_lines", "log_problems_first")}
                           for n in result["targets"] if n != "direct"})
    print(json.dumps(out, indent=2))
    if interrupted:
        return 130
    if not args.no_doc and all(n in result["targets"] for n in TARGETS):
        update_doc_section("sip_cps", report(result, args, commands))
        say(f"updated {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

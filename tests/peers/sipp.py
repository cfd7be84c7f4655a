"""Run SIPp (Debian package ``sip-tester``) as a test peer and read back what happened.

A :class:`Sipp` is one ``sipp`` process in its own work directory; every log SIPp can
write goes there under a predictable name (we pass ``-error_file``/``-stf``/… instead of
guessing ``<scenario>_<pid>_*.log``). :class:`SippResult` carries the exit code, the
final call counters and a :meth:`SippResult.describe` text with the error-log tail, so a
failing end-to-end test explains itself in pytest output::

    uas = Sipp(tmp_path / "uas", scenario="uas", local_port=p_uas, calls=20).start()
    uac = Sipp(tmp_path / "uac", scenario="uac", remote=f"127.0.0.1:{p_uas}",
               local_port=p_uac, calls=20, rate=50)
    uac.run().assert_success(calls=20)
    uas.wait().assert_success(calls=20)

Exit codes (``sipp -h``, SIPp 3.6.1 ``defines.h``): 0 all calls succeeded, 1 at least
one failed, 97 exit on internal command / global timeout without any successful call,
99 normal exit without calls processed, 255 (-1) fatal error (also: ``-timeout`` hit
with ``-timeout_error``), 254 (-2) could not bind a socket.
Signals: SIGUSR1 = soft exit (no new calls, ongoing calls finish, like pressing 'q');
SIGTERM/SIGINT = exit now, still printing final statistics.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import require_binary, tail_text
from .netutil import LOOPBACK, udp_port_bound

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "scenarios"
PCAP_DIR = Path("/usr/share/sip-tester")
BUILTIN_SCENARIOS = frozenset(
    {"uac", "uas", "regexp", "branchc", "branchs", "uac_pcap", "3pcc-C-A", "3pcc-C-B", "3pcc-A", "3pcc-B"}
)
DEFAULT_BUFF_SIZE = 4 * 1024 * 1024  # measured: without it, losses start above ~2,000 CPS

EXIT_CODES: dict[int, str] = {
    0: "all calls succeeded",
    1: "at least one call failed",
    97: "exit on internal command, or global -timeout reached with no successful call",
    98: "exit with unknown result",
    99: "normal exit without any call processed",
    253: "fatal system error / RTP check failed",
    254: "fatal error binding a socket (port in use?)",
    255: "fatal error (bad option or scenario, or -timeout hit with -timeout_error)",
}


def scenario_path(name: str | os.PathLike[str]) -> Path:
    """Resolve a custom scenario: an existing path, or a file name in tests/scenarios."""
    path = Path(name)
    if path.is_file():
        return path.resolve()
    for candidate in (SCENARIO_DIR / path.name, SCENARIO_DIR / f"{path.name}.xml"):
        if candidate.is_file():
            return candidate
    known = ", ".join(sorted(p.name for p in SCENARIO_DIR.glob("*.xml")))
    raise FileNotFoundError(f"SIPp scenario {name!r} not found (tests/scenarios has: {known})")


def write_inf(path: Path, rows: Iterable[Sequence[str]], order: str = "SEQUENTIAL") -> Path:
    """Write a SIPp ``-inf`` injection CSV: first line the order, then ``;``-joined fields."""
    lines = [order] + [";".join(str(f) for f in row) for row in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def auth_inf_row(username: str, password: str, *extra: str) -> list[str]:
    """One ``-inf`` row for register_auth*.xml: ``user;[authentication username=… password=…]``.

    Why: SIPp 3.6.1 does not expand ``[field1]`` *inside* ``[authentication …]``, but it
    does expand a whole ``[authentication …]`` keyword injected from a field.
    """
    if any(c in username + password for c in " ;]"):
        raise ValueError("SIPp auth fields cannot contain spaces, ';' or ']'")
    return [username, f"[authentication username={username} password={password}]", *extra]


@dataclass
class SippResult:
    """Outcome of one SIPp run: exit code, counters, log paths and a readable summary."""

    name: str
    command: list[str]
    returncode: int
    stdout: str
    stderr: str
    workdir: Path
    elapsed: float
    successful_calls: int | None = None
    failed_calls: int | None = None
    total_calls: int | None = None
    failure_reasons: dict[str, int] = field(default_factory=dict)
    error_log: Path | None = None
    message_log: Path | None = None
    stat_csv: Path | None = None
    actions_log: Path | None = None
    killed: bool = False

    @property
    def exit_meaning(self) -> str:
        """Human meaning of the exit code."""
        if self.returncode < 0:
            return f"killed by signal {-self.returncode}"
        return EXIT_CODES.get(self.returncode, "unknown exit code")

    @property
    def ok(self) -> bool:
        """True when SIPp itself reports success (exit 0) and counted no failed call."""
        return self.returncode == 0 and not self.failed_calls

    def error_log_text(self) -> str:
        """Whole error log ('' if none): unexpected messages, timeouts, <warning> actions."""
        if self.error_log and self.error_log.is_file():
            return self.error_log.read_text(errors="replace")
        return ""

    def actions_log_text(self) -> str:
        """Whole ``<log>`` action output ('' if none)."""
        if self.actions_log and self.actions_log.is_file():
            return self.actions_log.read_text(errors="replace")
        return ""

    def scenario_screen(self) -> str:
        """The last per-message counter table SIPp printed (messages/retrans/unexpected)."""
        text = self.stdout
        start = text.rfind("Scenario Screen")
        if start < 0:
            return ""
        start = text.rfind("\n", 0, start) + 1
        end = text.find("Statistics Screen", start)
        block = text[start:end] if end > 0 else text[start:]
        return block[: block.rfind("\n")] if end > 0 else block

    def describe(self, lines: int = 30) -> str:
        """Multi-line summary for assertion messages: exit, counters, why calls failed."""
        counters = f"{self.successful_calls} successful, {self.failed_calls} failed, {self.total_calls} created"
        parts = [
            f"SIPp '{self.name}' exit {self.returncode} ({self.exit_meaning}): {counters}"
            + (" [killed by harness after timeout]" if self.killed else "")
            + f" in {self.elapsed:.1f}s",
            "command: (cd " + str(self.workdir) + " && " + " ".join(self.command) + ")",
        ]
        if self.failure_reasons:
            parts.append("failure counters: " + ", ".join(f"{k}={v}" for k, v in self.failure_reasons.items()))
        error_text = self.error_log_text().strip()
        if error_text:
            parts += ["--- error log (tail) ---", tail_text(error_text, lines)]
        screen = self.scenario_screen().strip("\n")
        if screen:
            parts += ["--- scenario screen ---", screen]
        if self.stderr.strip():
            parts += ["--- stderr (tail) ---", tail_text(self.stderr, lines)]
        if not screen and self.stdout.strip():
            parts += ["--- stdout (tail) ---", tail_text(self.stdout, lines)]
        if self.message_log and self.message_log.is_file():
            parts.append(f"message trace: {self.message_log}")
        return "\n".join(parts)

    def assert_success(self, calls: int | None = None) -> SippResult:
        """Raise AssertionError(describe()) unless exit 0, no failed call and ``calls`` succeeded."""
        problems = []
        if self.returncode != 0:
            problems.append(f"exit code {self.returncode}")
        if self.failed_calls:
            problems.append(f"{self.failed_calls} failed calls")
        if calls is not None and self.successful_calls != calls:
            problems.append(f"{self.successful_calls} successful calls, expected {calls}")
        if problems:
            raise AssertionError("SIPp run not successful (" + "; ".join(problems) + ")\n" + self.describe())
        return self


class Sipp:
    """One ``sipp`` process: built-in (``-sn``) or custom (``-sf``) scenario, in ``workdir``.

    ``scenario``: a built-in name (uac, uas, uac_pcap, …), a file name in tests/scenarios
    (``"uac_cancel.xml"``) or a path. ``remote`` ("host:port") makes it a client.
    ``timeout`` (seconds) becomes SIPp's global ``-timeout`` (and ``-timeout_error``), so a
    hung scenario ends on its own; :meth:`wait` adds a grace period and kills as a last resort.
    ``keys`` are ``-key`` message keywords, ``variables`` ``-set`` global variables.
    """

    def __init__(
        self,
        workdir: Path,
        scenario: str | os.PathLike[str] = "uac",
        *,
        remote: str | None = None,
        local_port: int | None = None,
        local_ip: str = LOOPBACK,
        transport: str = "u1",
        rate: float | None = None,
        calls: int | None = None,
        limit: int | None = None,
        duration_ms: int | None = None,
        service: str | None = None,
        keys: Mapping[str, object] | None = None,
        variables: Mapping[str, object] | None = None,
        inf: os.PathLike[str] | Sequence[os.PathLike[str]] | None = None,
        auth: tuple[str, str] | None = None,
        trace_msg: bool = False,
        trace_logs: bool = True,
        timeout: float | None = 30.0,
        timeout_error: bool = True,
        recv_timeout_ms: int | None = None,
        rtp_echo: bool = False,
        media_ip: str | None = None,
        media_port: int | None = None,
        buff_size: int | None = DEFAULT_BUFF_SIZE,
        extra_args: Sequence[str] = (),
        name: str | None = None,
    ) -> None:
        self.binary = require_binary("sipp")
        self.workdir = Path(workdir)
        self.scenario = str(scenario)
        self.builtin = self.scenario in BUILTIN_SCENARIOS
        self.scenario_file = None if self.builtin else scenario_path(scenario)
        self.name = name or (self.scenario if self.builtin else self.scenario_file.stem)
        self.remote = remote
        self.local_port = local_port
        self.local_ip = local_ip
        if transport not in {"u1", "un", "ui", "t1", "tn", "l1", "ln"}:
            raise ValueError(f"unsupported SIPp transport {transport!r}")
        self.transport = transport
        self.rate = rate
        self.calls = calls
        self.limit = limit
        self.duration_ms = duration_ms
        self.service = service
        self.keys = dict(keys or {})
        self.variables = dict(variables or {})
        if inf is None:
            self.inf: list[Path] = []
        elif isinstance(inf, (str, os.PathLike)):
            self.inf = [Path(inf)]
        else:
            self.inf = [Path(p) for p in inf]
        self.auth = auth
        self.trace_msg = trace_msg
        self.trace_logs = trace_logs
        self.timeout = timeout
        self.timeout_error = timeout_error
        self.recv_timeout_ms = recv_timeout_ms
        self.rtp_echo = rtp_echo
        self.media_ip = media_ip
        self.media_port = media_port
        self.buff_size = buff_size
        self.extra_args = list(extra_args)

        self.error_log = self.workdir / f"{self.name}_errors.log"
        self.message_log = self.workdir / f"{self.name}_messages.log" if trace_msg else None
        self.stat_csv = self.workdir / f"{self.name}_stat.csv"
        self.actions_log = self.workdir / f"{self.name}_actions.log" if trace_logs else None
        self.stdout_path = self.workdir / f"{self.name}.stdout"
        self.stderr_path = self.workdir / f"{self.name}.stderr"

        self._proc: subprocess.Popen[bytes] | None = None
        self._started_at = 0.0
        self._result: SippResult | None = None
        self._killed = False

    # --- command line ----------------------------------------------------------------

    @property
    def command(self) -> list[str]:
        """The full argv (always ``-nostdin``: there is no tty under pytest)."""
        cmd = [self.binary]
        if self.remote:
            cmd.append(self.remote)
        cmd += ["-sn", self.scenario] if self.builtin else ["-sf", str(self.scenario_file)]
        cmd += ["-nostdin", "-i", self.local_ip, "-t", self.transport]
        if self.local_port is not None:
            cmd += ["-p", str(self.local_port)]
        if self.rate is not None:
            cmd += ["-r", _num(self.rate)]
        if self.calls is not None:
            cmd += ["-m", str(self.calls)]
        if self.limit is not None:
            cmd += ["-l", str(self.limit)]
        if self.duration_ms is not None:
            cmd += ["-d", str(int(self.duration_ms))]
        if self.service is not None:
            cmd += ["-s", self.service]
        for key, value in self.keys.items():
            cmd += ["-key", key, str(value)]
        for var, value in self.variables.items():
            cmd += ["-set", var, str(value)]
        for path in self.inf:
            cmd += ["-inf", str(Path(path).resolve())]
        if self.auth is not None:
            cmd += ["-au", self.auth[0], "-ap", self.auth[1]]
        if self.buff_size:
            cmd += ["-buff_size", str(self.buff_size)]
        if self.timeout is not None:
            # -timeout is whole seconds (a "1500ms" value is truncated to 1 s).
            cmd += ["-timeout", f"{max(1, math.ceil(self.timeout))}s"]
            if self.timeout_error:
                cmd.append("-timeout_error")
        if self.recv_timeout_ms is not None:
            cmd += ["-recv_timeout", f"{int(self.recv_timeout_ms)}ms"]
        if self.rtp_echo:
            cmd.append("-rtp_echo")
        if self.media_ip is not None:
            cmd += ["-mi", self.media_ip]
        if self.media_port is not None:
            cmd += ["-mp", str(self.media_port)]
        cmd += ["-trace_err", "-error_file", str(self.error_log)]
        cmd += ["-trace_stat", "-stf", str(self.stat_csv)]
        if self.message_log is not None:
            cmd += ["-trace_msg", "-message_file", str(self.message_log)]
        if self.actions_log is not None:
            cmd += ["-trace_logs", "-log_file", str(self.actions_log)]
        return cmd + self.extra_args

    # --- lifecycle ---------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """Process id once started."""
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        """True while the sipp process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self, wait_bound: bool = True, bind_timeout: float = 5.0) -> Sipp:
        """Spawn sipp; with a fixed UDP ``local_port``, wait until it is bound (UAS ready)."""
        if self._proc is not None:
            raise RuntimeError(f"SIPp '{self.name}' already started")
        self.workdir.mkdir(parents=True, exist_ok=True)
        pcap_link = self.workdir / "pcap"
        if PCAP_DIR.is_dir() and not pcap_link.exists():
            pcap_link.symlink_to(PCAP_DIR)  # uac_pcap & play_pcap_audio read pcap/… from cwd
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self._proc = subprocess.Popen(
                self.command, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                start_new_session=True,
            )
        self._started_at = time.monotonic()
        if wait_bound and self.local_port is not None and self.transport.startswith("u"):
            self._wait_bound(bind_timeout)
        return self

    def _wait_bound(self, timeout: float) -> None:
        """Wait until *this* sipp bound its UDP port; a server that died or never binds fails with its output."""
        assert self._proc is not None and self.local_port is not None
        deadline = time.monotonic() + timeout
        while not udp_port_bound(self.local_port, self._proc.pid):
            if self._proc.poll() is not None and self.remote:
                return  # a quick client may be done already; wait() reports how it went (254: bind failed)
            if self._proc.poll() is not None or time.monotonic() >= deadline:
                result = self._collect() if self._proc.poll() is not None else self.stop()
                holders = subprocess.run(["ss", "-uanp", f"sport = :{self.local_port}"], capture_output=True,
                                         text=True).stdout.strip()
                raise RuntimeError(
                    f"SIPp '{self.name}' did not bind udp:{self.local_ip}:{self.local_port}\n" + result.describe()
                    + f"\n--- who holds the port ---\n{holders or '(nobody now)'}"
                )
            time.sleep(0.02)

    def wait(self, timeout: float | None = None) -> SippResult:
        """Wait for sipp to exit on its own; kill it after ``timeout`` (default -timeout + 10 s)."""
        if self._proc is None:
            raise RuntimeError(f"SIPp '{self.name}' not started")
        if self._result is not None:
            return self._result
        if timeout is None:
            timeout = (self.timeout or 60.0) + 10.0
        try:
            self._proc.wait(timeout=max(0.0, self._started_at + timeout - time.monotonic()))
        except subprocess.TimeoutExpired:
            self._killed = True
            self._terminate()
        self._result = self._collect()
        return self._result

    def run(self, timeout: float | None = None) -> SippResult:
        """start() then wait()."""
        return self.start().wait(timeout)

    def stop(self, grace: float = 5.0) -> SippResult:
        """Soft exit (SIGUSR1: no new calls, ongoing ones finish), then SIGTERM/SIGKILL."""
        if self._proc is None:
            raise RuntimeError(f"SIPp '{self.name}' not started")
        if self._result is not None:
            return self._result
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGUSR1)
            try:
                self._proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._terminate()
        self._result = self._collect()
        return self._result

    def _terminate(self) -> None:
        """SIGTERM (SIPp still writes its final stats), then SIGKILL."""
        assert self._proc is not None
        for sig, wait_s in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
            if self._proc.poll() is not None:
                return
            self._proc.send_signal(sig)
            try:
                self._proc.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                continue

    def _collect(self) -> SippResult:
        """Build a SippResult from the exit code, stats CSV and stdout screens."""
        assert self._proc is not None
        returncode = self._proc.poll()
        stdout = _read_text(self.stdout_path)
        stderr = _read_text(self.stderr_path)
        counters = _parse_stat_csv(self.stat_csv) or _parse_screen(stdout)
        return SippResult(
            name=self.name,
            command=self.command,
            returncode=returncode if returncode is not None else -999,
            stdout=stdout,
            stderr=stderr,
            workdir=self.workdir,
            elapsed=time.monotonic() - self._started_at,
            successful_calls=counters.get("SuccessfulCall(C)"),
            failed_calls=counters.get("FailedCall(C)"),
            total_calls=counters.get("TotalCallCreated"),
            failure_reasons={
                k.removesuffix("(C)"): v
                for k, v in counters.items()
                if k.startswith("Failed") and k.endswith("(C)") and k != "FailedCall(C)" and v
            },
            error_log=self.error_log if self.error_log.exists() else None,
            message_log=self.message_log if self.message_log and self.message_log.exists() else None,
            stat_csv=self.stat_csv if self.stat_csv.exists() else None,
            actions_log=self.actions_log if self.actions_log and self.actions_log.exists() else None,
            killed=self._killed,
        )

    def __enter__(self) -> Sipp:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.running:
            self.stop(grace=2.0)

    def __repr__(self) -> str:
        return f"Sipp({self.name!r}, pid={self.pid}, port={self.local_port})"


# --- parsing helpers -------------------------------------------------------------------

def _num(value: float) -> str:
    """Render a rate without a useless '.0'."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _read_text(path: Path, max_bytes: int = 512 * 1024) -> str:
    """Read the end of a capture file (SIPp may print many screens)."""
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            if size > max_bytes:
                fh.seek(size - max_bytes)
            return fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def _parse_stat_csv(path: Path) -> dict[str, int]:
    """Integer columns of the last row of a ``-trace_stat`` CSV ({} if unusable)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return {}
    rows = [r for r in csv.reader(io.StringIO(text), delimiter=";") if r]
    if len(rows) < 2:
        return {}
    header, last = rows[0], rows[-1]
    values: dict[str, int] = {}
    for key, raw in zip(header, last):
        if raw.strip().isdigit():
            values[key.strip()] = int(raw)
    return values if "SuccessfulCall(C)" in values else {}


_SCREEN_ROWS = {
    "SuccessfulCall(C)": re.compile(r"^\s*Successful call\s*\|[^|]*\|\s*(\d+)", re.M),
    "FailedCall(C)": re.compile(r"^\s*Failed call\s*\|[^|]*\|\s*(\d+)", re.M),
    "TotalCallCreated": re.compile(r"^\s*Total Calls created\s*\|[^|]*\|\s*(\d+)", re.M),
}


def _parse_screen(stdout: str) -> dict[str, int]:
    """Cumulative counters from the last statistics screen in stdout ({} if none)."""
    values: dict[str, int] = {}
    for key, pattern in _SCREEN_ROWS.items():
        found = pattern.findall(stdout)
        if found:
            values[key] = int(found[-1])
    return values

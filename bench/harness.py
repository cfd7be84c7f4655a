"""Shared plumbing for the benchmark scripts: processes pinned with ``taskset``, the switch's config,
SIPp command lines and statistics, per-process CPU time, per-socket kernel drop counters, and the
``<!-- name:start -->`` sections of docs/benchmarks.md.

Everything a script starts goes through a ``Processes`` object used as a context manager, so every
process is stopped on the way out: normal exit, exception, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import csv
import importlib.metadata
import json
import os
import platform
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "benchmarks.md"
SIPP = "sipp"
SIPP_BUFF = ["-buff_size", "4194304"]
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------- processes
class Proc:
    """One started process: its argv (as a user would type it), its log file and its CPU time."""

    def __init__(self, name: str, argv: list[str], popen: subprocess.Popen, log_path: Path) -> None:
        self.name, self.argv, self.popen, self.log_path = name, argv, popen, log_path

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def command(self) -> str:
        return shlex.join(self.argv)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait(self, timeout: float | None = None) -> int:
        return self.popen.wait(timeout)

    def cpu_times(self) -> tuple[float, float]:
        """(utime, stime) of the whole process (all threads) in seconds, from /proc/<pid>/stat."""
        try:
            text = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return 0.0, 0.0
        fields = text[text.rindex(")") + 2:].split()
        return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK  # fields 14 and 15 of stat(5)

    def cpu_seconds(self) -> float:
        return sum(self.cpu_times())

    def socket_inodes(self) -> set[int]:
        inodes = set()
        try:
            for fd in os.listdir(f"/proc/{self.pid}/fd"):
                try:
                    target = os.readlink(f"/proc/{self.pid}/fd/{fd}")
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(int(target[8:-1]))
        except OSError:
            pass
        return inodes

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(signal.SIGTERM)
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
            except ProcessLookupError:
                pass
        return self.popen.returncode


class Processes:
    """Starts processes (optionally pinned to a CPU) and stops all of them on exit, whatever happens."""

    def __init__(self) -> None:
        self.started: list[Proc] = []
        self._old_term = self._old_int = None

    def __enter__(self) -> "Processes":
        def on_term(signum, frame):  # SIGTERM behaves like Ctrl-C: unwind through the finally blocks
            raise KeyboardInterrupt
        self._old_term = signal.signal(signal.SIGTERM, on_term)
        # Ctrl-C raises KeyboardInterrupt even when a non-interactive shell started us with SIGINT ignored.
        self._old_int = signal.signal(signal.SIGINT, signal.default_int_handler)
        return self

    def __exit__(self, *exc) -> None:
        self.stop_all()
        signal.signal(signal.SIGTERM, self._old_term or signal.SIG_DFL)
        signal.signal(signal.SIGINT, self._old_int or signal.SIG_DFL)

    def start(self, name: str, argv: Sequence[str], cwd: Path, log_path: Path, cpu: int | None = None,
              env: dict[str, str] | None = None, nice: int = 0) -> Proc:
        full = ((["taskset", "-c", str(cpu)] if cpu is not None else []) + (["nice", "-n", str(nice)] if nice else [])
                + list(argv))
        log = open(log_path, "ab")
        try:
            # A new session: Ctrl-C in the terminal reaches only this script, which then stops
            # the processes in order (and can still read their statistics).
            popen = subprocess.Popen(full, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env={**os.environ, **(env or {})}, start_new_session=True)
        finally:
            log.close()
        shown = [f"{k}={v}" for k, v in (env or {}).items() if k != "PYTHONUNBUFFERED"]
        proc = Proc(name, shown + full, popen, log_path)
        self.started.append(proc)
        return proc

    def stop(self, proc: Proc, timeout: float = 15.0) -> int | None:
        rc = proc.stop(timeout)
        if proc in self.started:
            self.started.remove(proc)
        return rc

    def stop_all(self) -> None:
        while self.started:
            proc = self.started.pop()
            try:
                proc.stop(10.0)
            except KeyboardInterrupt:  # a second Ctrl-C while cleaning up: still kill the rest
                proc.popen.kill()


# ---------------------------------------------------------------------------------------------- softswitch
def switch_config(sip_port: int, uas_port: int, rtp: tuple[int, int], db: str = "data/bench.db",
                  log_level: str = "WARNING") -> str:
    """The loopback-trunk example's shape: prefix 9 (stripped) goes out of trunk `loopback` to the uas."""
    return f"""# softswitch benchmark config (written by bench/harness.py)
[sip]
listen = ["udp:127.0.0.1:{sip_port}", "tcp:127.0.0.1:{sip_port}"]
domain = "127.0.0.1"

[media]
ip = "127.0.0.1"
port_min = {rtp[0]}
port_max = {rtp[1]}

[calls]
shutdown_grace_s = 1.0

[store]
path = "{db}"

[log]
level = "{log_level}"

[[trunks]]
name = "loopback"
gateways = [{{host = "127.0.0.1", port = {uas_port}, transport = "udp"}}]
inbound_ips = ["127.0.0.1"]

[[routes]]
name = "outbound"
prefix = "9"
strip = 1
source = "any"
to = "trunk:loopback"
"""


def switch_argv(config: Path) -> list[str]:
    return [sys.executable, "-m", "softswitch", "run", "--config", str(config)]


def options_probe(host: str, port: int, timeout: float = 15.0) -> bool:
    """True once something answers a SIP OPTIONS on host:port/udp (any status will do)."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(0.2)
        lport = s.getsockname()[1]
        while time.monotonic() < deadline:
            branch = "z9hG4bK" + uuid.uuid4().hex
            msg = (f"OPTIONS sip:{host}:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{lport};branch={branch}\r\n"
                   f"Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:{host}>\r\n"
                   f"Call-ID: {branch}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
            s.sendto(msg.encode(), (host, port))
            try:
                data, _ = s.recvfrom(65535)
                if data.startswith(b"SIP/2.0 "):
                    return True
            except OSError:
                time.sleep(0.1)
    return False


def read_cdrs(config: Path, cwd: Path) -> list[dict]:
    out = subprocess.run([sys.executable, "-m", "softswitch", "cdr", "--config", str(config), "--format", "json"],
                         cwd=cwd, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise RuntimeError(f"softswitch cdr failed: {out.stderr.strip()}")
    return json.loads(out.stdout)


def log_problems(path: Path, limit: int = 10) -> tuple[int, list[str]]:
    """Lines of a switch log that say something went wrong (ERROR/CRITICAL/Traceback/WARNING)."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return 0, []
    bad = [line for line in lines if re.search(r"\b(ERROR|CRITICAL|WARNING)\b|Traceback", line)]
    return len(bad), bad[:limit]


# ---------------------------------------------------------------------------------------------- SIPp
SCENARIOS = Path(__file__).resolve().parent / "scenarios"


def sipp_uas_argv(port: int, control_port: int, extra: Sequence[str] = (), codec: tuple[int, str] = (0, "PCMU"),
                  ) -> list[str]:
    """SIPp as the called party: bench/scenarios/uas.xml (the built-in uas, see the file for the changes)."""
    return [SIPP, "-nostdin", "-sf", str(SCENARIOS / "uas.xml"), "-key", "pt", str(codec[0]), "-key", "codec",
            codec[1], "-i", "127.0.0.1", "-p", str(port), "-cp", str(control_port), *SIPP_BUFF, *extra]


def sipp_version() -> str:
    out = subprocess.run([SIPP, "-v"], capture_output=True, text=True)
    m = re.search(r"SIPp v[^\s,]+", out.stdout + out.stderr)
    return m.group(0).rstrip(".") if m else "sipp (unknown version)"


def pretty(command: str, work: Path | None = None) -> str:
    """A command line as a reader would type it: repo-relative paths, `python`, the work dir as `WORK`."""
    command = command.replace(sys.executable, "python").replace(str(REPO) + "/", "")
    command = command.replace(str(Path(sys.executable).parent) + "/", "")
    return command.replace(str(work), "WORK") if work else command


def _epoch(cell: str) -> float:
    return float(cell.split("\t")[-1])


def _duration(cell: str) -> float:
    """SIPp's HH:MM:SS:usec (or HH:MM:SS) as seconds."""
    parts = cell.strip().split(":")
    if len(parts) == 4:
        h, m, s, us = parts
        return int(h) * 3600 + int(m) * 60 + int(s) + int(us) / 1e6
    h, m, s = parts
    return int(h) * 3600 + int(m) * 60 + float(s)


@dataclass
class SippStats:
    elapsed: float = 0.0
    created: int = 0
    successful: int = 0
    failed: int = 0
    retransmissions: int = 0
    call_length: float = 0.0
    response_time: float = 0.0
    response_stdev: float = 0.0
    failures: dict[str, int] = field(default_factory=dict)


def sipp_stats(path: Path) -> SippStats | None:
    """The last line of a ``-trace_stat`` CSV (cumulative counters)."""
    try:
        with open(path, newline="") as f:
            rows = [r for r in csv.reader(f, delimiter=";") if r]
    except OSError:
        return None
    if len(rows) < 2:
        return None
    row = dict(zip(rows[0], rows[-1]))
    st = SippStats(
        elapsed=_epoch(row["CurrentTime"]) - _epoch(row["StartTime"]),
        created=int(row.get("OutgoingCall(C)", 0)) + int(row.get("IncomingCall(C)", 0)),
        successful=int(row.get("SuccessfulCall(C)", 0)),
        failed=int(row.get("FailedCall(C)", 0)),
        retransmissions=int(row.get("Retransmissions(C)", 0)),
        call_length=_duration(row.get("CallLength(C)", "00:00:00:000000")),
        response_time=_duration(row.get("ResponseTime1(C)", "00:00:00:000000")),
        response_stdev=_duration(row.get("ResponseTime1StDev(C)", "00:00:00:000000")),
    )
    st.failures = {k[6:-3]: int(v) for k, v in row.items()
                   if k.startswith("Failed") and k.endswith("(C)") and k != "FailedCall(C)" and v.isdigit() and int(v)}
    return st


def first_lines(path: Path, n: int = 8, width: int = 200) -> list[str]:
    try:
        with open(path, errors="replace") as f:
            out = []
            for line in f:
                line = line.rstrip()
                if line:
                    out.append(line[:width])
                if len(out) >= n:
                    break
            return out
    except OSError:
        return []


# ---------------------------------------------------------------------------------------------- kernel counters
def udp_socket_table() -> dict[int, tuple[int, int]]:
    """inode -> (local port, drops) for every IPv4/IPv6 UDP socket (/proc/net/udp[6], last column = drops)."""
    table: dict[int, tuple[int, int]] = {}
    for name in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    port = int(cols[1].rsplit(":", 1)[1], 16)
                    table[int(cols[9])] = (port, int(cols[12]))
        except (OSError, StopIteration, IndexError, ValueError):
            continue
    return table


class DropTracker:
    """Kernel receive-queue drops on the UDP sockets of some processes whose local port is in a range, kept per
    socket at their highest value (sockets close when calls end: sample often, and only the drops of a socket's
    last interval can be missed)."""

    def __init__(self, procs: dict[str, tuple[Proc, tuple[int, int]]]) -> None:
        self.procs = procs
        self.seen: dict[str, dict[int, int]] = {name: {} for name in procs}
        self.sockets: dict[str, int] = {name: 0 for name in procs}

    def sample(self) -> None:
        table = udp_socket_table()
        for name, (proc, (lo, hi)) in self.procs.items():
            seen = self.seen[name]
            count = 0
            for inode in proc.socket_inodes():
                entry = table.get(inode)
                if entry is None or not lo <= entry[0] <= hi:
                    continue
                count += 1
                if entry[1] >= seen.get(inode, 0):
                    seen[inode] = entry[1]
            self.sockets[name] = count

    def drops(self, name: str) -> int:
        return sum(self.seen[name].values())

    def reset(self) -> None:
        self.seen = {name: {} for name in self.procs}


def force_rcvbuf(proc: Proc, port: int, size: int = 4 * 1024 * 1024) -> int:
    """Enlarge the receive buffer of another process's UDP socket bound to ``port`` (SO_RCVBUFFORCE on a copy
    of its descriptor taken with pidfd_getfd(2); needs root or ptrace rights, Linux >= 5.6). Returns the new
    size as the kernel reports it, 0 if it could not be done.

    Used on SIPp's -rtp_echo socket: SIPp leaves it at net.core.rmem_default (208 KiB, ~270 small packets), so
    its one echo thread, sharing a core with the caller's RTP threads, drops bursts long before the system
    under test does."""
    import ctypes
    inodes = {inode for inode, (p, _) in udp_socket_table().items() if p == port}
    libc = ctypes.CDLL(None, use_errno=True)
    SYS_pidfd_getfd, SO_RCVBUFFORCE = 438, 33
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (OSError, AttributeError):
        return 0
    try:
        for fd in os.listdir(f"/proc/{proc.pid}/fd"):
            try:
                target = os.readlink(f"/proc/{proc.pid}/fd/{fd}")
            except OSError:
                continue
            if not target.startswith("socket:[") or int(target[8:-1]) not in inodes:
                continue
            mine = libc.syscall(SYS_pidfd_getfd, pidfd, int(fd), 0)
            if mine < 0:
                return 0
            sock = socket.socket(fileno=mine)
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
                return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
            except OSError:
                return 0
            finally:
                sock.close()
    finally:
        os.close(pidfd)
    return 0


def softnet_dropped() -> int:
    """Packets the kernel dropped because a CPU's input backlog was full (all CPUs, /proc/net/softnet_stat)."""
    total = 0
    try:
        for line in Path("/proc/net/softnet_stat").read_text().splitlines():
            total += int(line.split()[1], 16)
    except (OSError, IndexError, ValueError):
        pass
    return total


# ---------------------------------------------------------------------------------------------- reporting
def machine_info() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    def version(dist: str) -> str | None:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None
    return {
        "cpu": model, "cpus": os.cpu_count(), "kernel": platform.release(),
        "python": platform.python_version(), "uvloop": version("uvloop"), "sippy": version("sippy"),
        "softswitch": version("softswitch"), "sipp": sipp_version(),
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
    }


def update_doc_section(name: str, body: str, path: Path = DOC) -> None:
    """Replace (or append) the ``<!-- name:start -->`` … ``<!-- name:end -->`` section, leaving the rest alone."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.strip()}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        after = rest.split(end, 1)[1]
        text = before + block + after
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def md_table(header: Sequence[str], rows: Iterator[Sequence] | list[Sequence]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def say(*args) -> None:
    print(*args, file=sys.stderr, flush=True)

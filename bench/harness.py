"""Shared plumbing for the benchmark scripts: processes pinned with ``taskset``, the switch's config,
SIPp command lines and statistics, per-process CPU time, per-socket kernel drop counters, and the
``<!-- name:start -->`` sections of docs/benchmarks.md; plus, at the end, the step search, sampling loop and
report pieces the two concurrent-call benchmarks (relay_calls.py, media_calls.py) have in common.

Everything a script starts goes through a ``Processes`` object used as a context manager, so every
process is stopped on the way out: normal exit, exception, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import csv
import importlib.metadata
import json
import os
import platform
import re
import shlex
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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


# ---------------------------------------------------------------------------------------------- concurrent calls
# relay_calls.py and media_calls.py hold N calls with G.711 RTP up through a switch pinned to one core. They share
# one set-up (media_calls.py's peer step *is* a relay_calls.py step), so the cores, ports and caller live here.
SWITCH_CPU, SIPP_CPU = 0, 1
CALL_PORTS = {"switch": 15060, "uac": 15061, "uas": 15090, "uac_cp": 15889, "uas_cp": 15888,
              "uas_media": 16000, "uac_media": 16010}
CALL_RTP_RANGE = (40000, 49998)       # 2 ports per terminated call (RTP+RTCP), 4 per relayed call: <= 2,499 calls
G711A_PCAP = Path("/usr/share/sip-tester/g711a.pcap")


def write_pcap_audio(pcap: Path, out: Path) -> float:
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


def uac_rtp_argv(service: str, port: int, calls: int, rate: float, hold_ms: int, stat: Path, err: Path) -> list[str]:
    """SIPp as the callers (bench/scenarios/uac_rtp.xml): N calls of looped PCMA, each held HOLD ms."""
    return [SIPP, "-nostdin", "-sf", str(SCENARIOS / "uac_rtp.xml"), "-i", "127.0.0.1", "-p", str(CALL_PORTS["uac"]),
            "-cp", str(CALL_PORTS["uac_cp"]), "-mp", str(CALL_PORTS["uac_media"]), "-s", service, "-r", f"{rate:g}",
            "-m", str(calls), "-l", str(calls), "-d", str(hold_ms), "-recv_timeout", "32000", *SIPP_BUFF,
            "-trace_stat", "-stf", str(stat), "-fd", "5", "-trace_err", "-error_file", str(err),
            "-max_log_size", "1000000", f"127.0.0.1:{port}"]


def uac_rtp_command(service: str, port: int, rate: float) -> str:
    """uac_rtp_argv as the docs show it: N and HOLD stand for what changes from step to step."""
    return pinned_command(SIPP_CPU, uac_rtp_argv(service, port, 0, rate, 0, Path("uac.csv"), Path("uac-err.log"))
                          ).replace("-m 0 -l 0 -d 0", "-m N -l N -d HOLD")


def uas_echo_argv() -> list[str]:
    """SIPp as the callee that sends every RTP packet back (-rtp_echo): the far end of a relayed call."""
    return sipp_uas_argv(CALL_PORTS["uas"], CALL_PORTS["uas_cp"], ["-mp", str(CALL_PORTS["uas_media"]), "-rtp_echo"],
                         codec=(8, "PCMA"))


def pinned_command(cpu: int, argv: Sequence[str]) -> str:
    return shlex.join(["taskset", "-c", str(cpu)] + list(argv))


def start_switch(procs: Processes, config: Path, work: Path, log_path: Path) -> Proc:
    """The switch on its own core, returned only once it answers SIP (a step must not race its start-up)."""
    switch = procs.start("softswitch", switch_argv(config), work, log_path, cpu=SWITCH_CPU,
                         env={"PYTHONUNBUFFERED": "1"})
    if not options_probe("127.0.0.1", CALL_PORTS["switch"], 20.0):
        raise RuntimeError(f"softswitch did not come up:\n{switch.log_tail()}")
    return switch


@contextmanager
def step_switch(procs: Processes, switch: Proc) -> Iterator[Proc]:
    """Stops a step's switch however the step ends (a fresh switch per step: calls a failed step left behind must
    not weigh on the next one), showing its log tail if it died, since that is the only trace of why."""
    try:
        yield switch
    finally:
        if not switch.alive():
            say(switch.log_tail())
        procs.stop(switch)


def halfway_back(refine: bool, min_gap: int = 1) -> Callable[[int, int], int | None]:
    """``climb_steps``'s extra step: halfway between the last pass and the first fail (to N/2 when the first step
    already failed), if ``refine`` and it lands at least ``min_gap`` below the fail."""
    def halfway(last_pass: int, n: int) -> int | None:
        mid = (last_pass + n) // 2
        return mid if refine and last_pass < mid and n - mid >= min_gap else None
    return halfway


def climb_steps(steps: Sequence[int], step: Callable[[int], dict],
                halfway: Callable[[int, int], int | None]) -> None:
    """Steps up until one fails, then one more step ``halfway(last pass, failed N)`` back (None: no extra step),
    so a run stops near the limit without measuring every N above it."""
    last_pass = 0
    for n in steps:
        if not step(n)["passed"]:
            mid = halfway(last_pass, n)
            if mid is not None:
                step(mid)
            break
        last_pass = n


def step_timing(n: int, args: argparse.Namespace) -> tuple[float, int]:
    """(seconds to open N calls, ms each call is held): every call stays up through the whole window."""
    ramp = n / args.setup_cps
    return ramp, int((ramp + args.settle + args.window + 1.0) * 1000)


def hold_window(uac: Proc, tracker: DropTracker, ramp: float, hold_ms: int, args: argparse.Namespace,
                open_window: Callable[[float], None], close_window: Callable[[float], None]) -> None:
    """Samples the drop counters about once a second while the calls are up, and calls open_window/close_window
    (with the monotonic time) as close as it can to the window's edges: every call set up + settle, then +window.
    Gives up on SIPp 60 s after its calls should have ended; stopping it is the caller's job."""
    t0 = time.monotonic()
    w0 = t0 + ramp + args.settle
    w1 = w0 + args.window
    deadline = t0 + hold_ms / 1000 + ramp + 60
    opened = closed = False
    while uac.alive() and time.monotonic() < deadline:
        tracker.sample()
        now = time.monotonic()
        if not opened and now >= w0:
            open_window(now)
            opened = True
        elif opened and not closed and now >= w1:
            close_window(now)
            closed = True
        boundary = w0 if not opened else w1 if not closed else None
        time.sleep(1.0 if boundary is None else min(1.0, max(0.05, boundary - time.monotonic())))
    if uac.alive():
        say(f"  uac still running {deadline - t0:.0f} s after start: stopping it")


def uac_figures(stat: Path, n: int, hold_ms: int) -> tuple[SippStats | None, dict]:
    """SIPp's statistics and the first keys of a step's figures (the JSON keeps this order)."""
    st = sipp_stats(stat)
    ok = st.successful if st else 0
    return st, {"calls": n, "successful": ok, "failed": n - ok, "hold_s": hold_ms / 1000,
                "setup_s_avg": round(st.response_time, 3) if st else None,
                "setup_s_stdev": round(st.response_stdev, 3) if st else None}


def wait_cdrs(config: Path, work: Path, marker: str, expected: int, timeout: float = 30.0) -> list[dict]:
    """This step's CDRs (SIPp's Call-IDs are <n>-<pid>@<ip>); they are written off the event loop."""
    deadline = time.monotonic() + timeout
    while True:
        cdrs = [c for c in read_cdrs(config, work) if marker in c.get("sip_call_id", "")]
        if len(cdrs) >= expected or time.monotonic() > deadline:
            return cdrs
        time.sleep(1.0)


def calls_in_window(answered: list[dict], wall0: float, wall1: float) -> dict:
    """How many answered calls really were up in the window: slow setups shrink it, and CPU per call divides by it."""
    return {
        # answered before the window opened and still up when it closed
        "calls_up_in_window": sum(1 for c in answered if (c.get("answer_ts") or 1e99) <= wall0
                                  and (c.get("end_ts") or 0) >= wall1),
        # average number of answered calls during the window (late answers count for their share)
        "calls_avg_in_window": round(sum(
            max(0.0, min(wall1, c.get("end_ts") or 0) - max(wall0, c.get("answer_ts") or 1e99))
            for c in answered) / (wall1 - wall0), 1),
    }


def summarize_steps(result: dict) -> dict | None:
    """The headline figures both scripts share; returns the first failing step, which tells why the search stopped."""
    steps = result["steps"]
    passing = [s["calls"] for s in steps if s.get("passed")]
    result["max_calls"] = max(passing) if passing else 0
    result["limit_not_reached"] = bool(steps) and all(s.get("passed") for s in steps)
    first_fail = min((s for s in steps if not s.get("passed")), key=lambda s: s["calls"], default=None)
    result["switch_saturated"] = bool(first_fail and (first_fail.get("switch_core_pct") or 0) >= 85)
    return first_fail


def best_step(result: dict, default: dict | None = None) -> dict | None:
    return next((s for s in result["steps"] if s["calls"] == result.get("max_calls")), default)


def run_fields(result: dict, args: argparse.Namespace, commands: dict[str, str]) -> dict:
    """The tail of a run's JSON: enough to re-render its docs section later (--render) and to repeat it."""
    return {"commands": [f"{k}: {v}" for k, v in commands.items()],
            "machine": result["machine"], "workdir": result["workdir"], "date": result["date"], "quick": args.quick,
            "window": args.window, "settle": args.settle, "setup_cps": args.setup_cps,
            "switch_log_problem_lines": result.get("switch_log_problem_lines"),
            "switch_log_problems_first": result.get("switch_log_problems_first")}


# ---------------------------------------------------------------------------------------------- concurrent calls: docs
def run_paragraph(result: dict, args: argparse.Namespace) -> str:
    """Where, when and how a run was made: the figures are this machine's at that moment, not absolutes."""
    m = result["machine"]
    return f"""\
Run {result['date']} on {m['cpus']} vCPU ({m['cpu']}), Python {m['python']}, uvloop {m['uvloop']}, {m['sipp']};
{'**quick smoke run, not a measurement**; ' if args.quick else ''}{args.window:g} s measurement window per step,
calls opened at {args.setup_cps:g} CPS, load average at start {' / '.join(m['loadavg_at_start'])}."""


def headline(result: dict, causes: Sequence[tuple[Sequence[str], str]] = ()) -> str:
    """The best N, then the first cause (all its result flags set) that explains why the next step failed; the
    shared causes come first and last, a script's own ones in between."""
    best = result["max_calls"]
    text = f"{best:,} calls" if best else "none of the steps"
    for flags, why in [(("limit_not_reached",), " (every step passed: the limit is higher)"), *causes,
                       (("switch_saturated",), " (above it the switch's core was saturated)")]:
        if all(result.get(flag) for flag in flags):
            return text + why
    return text


def setup_cell(s: dict) -> str:
    return f"{s['setup_s_avg']} ± {s['setup_s_stdev']}" if s.get("setup_s_avg") is not None else "-"


def core_cell(s: dict) -> object:
    """Switch % of core 0 with its kernel share: a switch that relays mostly waits in the kernel."""
    return f"{s.get('switch_core_pct', '-')} ({int(100 * s['switch_sys_share'])} % kernel)" \
        if s.get("switch_sys_share") is not None else s.get("switch_core_pct", "-")


def status_cell(s: dict) -> str:
    return "✓" if s.get("passed") else "✗ " + s.get("reason", "")


def commands_block(commands: dict[str, str], workdir: str) -> str:
    """The commands of a run as a reader would retype them (see pretty)."""
    return f"""```
{chr(10).join(f'{k}: {pretty(v, Path(workdir))}' for k, v in commands.items())}
```"""


def limit_line(steps: list[dict]) -> tuple[dict | None, str]:
    """(the first failing step or None, the analysis line on where the search stopped and the two cores then)."""
    fails = sorted((s for s in steps if not s.get("passed")), key=lambda s: s["calls"])
    if fails:
        f = fails[0]
        core = f.get("switch_core_pct")
        return f, (f"First failing step, {f['calls']} calls: {f['reason']}; the switch used {core} % of core 0"
                   f"{' (saturated)' if core and core >= 90 else ''}, SIPp {f.get('sipp_core_pct')} % of core 1.")
    last = max(steps, key=lambda s: s["calls"])
    return None, (f"No step failed up to {last['calls']} calls; the switch used {last.get('switch_core_pct')} % "
                  f"of core 0 at that step.")


def log_problems_line(result: dict) -> str | None:
    """The kinds of WARNING/ERROR lines the switch logged (call ids and times stripped), None if it logged none."""
    if not result.get("switch_log_problem_lines"):
        return None
    kinds = sorted({re.sub(r"^\S+ (\S+) \S+ call=\S+ ", r"\1 ", line)[:90]
                    for line in result.get("switch_log_problems_first", [])})
    return (f"The switch logged {result['switch_log_problem_lines']} WARNING/ERROR lines, e.g. "
            + "; ".join(f"`{k}`" for k in kinds) + ".")


# ---------------------------------------------------------------------------------------------- concurrent calls: main
def add_step_options(p: argparse.ArgumentParser, steps: str, window: float) -> None:
    p.add_argument("--steps", default=steps,
                   help="concurrent calls per step, comma separated (max 2499: RTP range)")
    p.add_argument("--window", type=float, default=window, help=f"seconds measured with all calls up ({window:g})")
    p.add_argument("--settle", type=float, default=3.0, help="seconds after the last call is set up (3)")
    p.add_argument("--setup-cps", type=float, default=50.0, help="rate calls are opened at (50)")


def add_output_options(p: argparse.ArgumentParser) -> None:
    """--doc exists so a run or a --render can be checked against a copy while someone edits the real file."""
    p.add_argument("--no-write", "--no-doc", dest="no_write", action="store_true",
                   help="do not update docs/benchmarks.md (or the --doc file)")
    p.add_argument("--doc", type=Path, default=DOC, metavar="PATH",
                   help="write the section into this file instead of docs/benchmarks.md (e.g. a scratch copy)")
    p.add_argument("--render", type=Path, metavar="JSON",
                   help="only rewrite the docs section from the JSON output of an earlier run")
    p.add_argument("--workdir", type=Path, help="keep logs, config and CDR store here (default: a temp dir)")


def parse_steps(p: argparse.ArgumentParser, args: argparse.Namespace, message: str) -> list[int]:
    """The --steps list, refused (with ``message``) when it needs more RTP ports than the switch has."""
    steps = [int(x) for x in args.steps.split(",") if x.strip()]
    if not steps or max(steps) > (CALL_RTP_RANGE[1] - CALL_RTP_RANGE[0] + 1) // 4:
        p.error(message)
    return steps


def keep_off_switch_core() -> None:
    """This script's sampling must not take CPU from the switch it measures."""
    try:
        os.sched_setaffinity(0, {SIPP_CPU})
    except OSError:
        pass


def prefer_checkout() -> None:
    """The switch and `softswitch cdr` run in the work directory: make them import this checkout's package,
    even when the installed (editable) one points elsewhere."""
    rest = [x for x in os.environ.get("PYTHONPATH", "").split(os.pathsep) if x and x != str(REPO)]
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO)] + rest)


def check_stats_log_level(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Scripts that read the switch's SIGUSR1 `stats:` line need it logged (an INFO line)."""
    if args.switch_log_level.upper() not in ("INFO", "DEBUG"):
        p.error("--switch-log-level must be INFO or DEBUG: the stats line the script reads is logged at INFO")


def make_workdir(args: argparse.Namespace, section: str) -> Path:
    work = args.workdir or Path(tempfile.mkdtemp(prefix=f"{section}-"))
    work.mkdir(parents=True, exist_ok=True)
    return work


def run_and_report(section: str, args: argparse.Namespace, steps: list[int], work: Path, result: dict,
                   measure: Callable, summarize: Callable[[dict], None], output: Callable, report: Callable) -> int:
    """Measures, prints the JSON and rewrites the docs section. On Ctrl-C/SIGTERM the JSON of the steps done so far
    is still printed (the processes are already stopped), but the docs are left alone: a cut run is no result."""
    commands: dict[str, str] = {}
    say(f"{section}: logs in {work}")
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
    if not args.no_write and result["steps"]:
        update_doc_section(section, report(result, args, commands), args.doc)
        say(f"updated {args.doc}")
    return 0


def render_saved(section: str, path: Path, args: argparse.Namespace, fields: Callable[[dict], dict],
                 summarize: Callable[[dict], None], report: Callable) -> int:
    """--render: rewrite the docs section from the JSON a previous run printed (no measuring), so the report's
    wording can change without re-running a long benchmark. ``fields``: the script's own result keys."""
    saved = json.loads(path.read_text())
    for key in ("window", "settle", "setup_cps", "quick"):
        if key in saved:
            setattr(args, key, saved[key])
    result = {"steps": saved["steps"], **fields(saved), "machine": saved["machine"], "workdir": saved["workdir"],
              "switch_log_problem_lines": saved.get("switch_log_problem_lines"),
              "switch_log_problems_first": saved.get("switch_log_problems_first"),
              "date": saved.get("date") or time.strftime("%Y-%m-%d %H:%M", time.localtime(path.stat().st_mtime))}
    commands = dict(c.split(": ", 1) for c in saved.get("commands", []))
    summarize(result)
    update_doc_section(section, report(result, args, commands), args.doc)
    say(f"updated {args.doc} from {path}")
    return 0

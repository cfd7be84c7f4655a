"""Command line: ``softswitch run | config check | cdr | ivr | acd simulate | queue | agent``.

One small ``cmd_*`` function per subcommand; ``build_parser`` wires them. Configuration problems print the
``ConfigError`` message (file:line: key: what is wrong) and exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import csv
import json
import sqlite3
import sys
from collections.abc import Sequence
from typing import Any

from softswitch import __version__
from softswitch.cdr import CDR_COLUMNS
from softswitch.config import Config, ConfigError, load_config
from softswitch.store import SqliteStore, StoreError

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


class CliError(Exception):
    """A failure worth one line on stderr (exit 1), not a traceback."""


def cmd_run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    from softswitch.app import run  # lazy: keeps `config check` / `cdr` free of the network stack
    from softswitch.log import setup_logging

    setup_logging(config.log.level, config.log.format)
    return run(config)


def cmd_config_check(args: argparse.Namespace) -> int:
    config = load_config(args.file)
    print(f"{args.file}: OK ({len(config.users)} users, {len(config.trunks)} trunks, "
          f"{len(config.routes)} routes)")
    return EXIT_OK


def cmd_ivr_validate(args: argparse.Namespace) -> int:
    from ivr.validator import main_validate  # lazy: the IVR package is not needed to run a switch

    config = load_config(args.config) if args.config else Config()
    status = EXIT_OK
    for path in args.files:
        status = max(status, main_validate(path, prompts_dirs=(config.prompts_dir(),)))
    return status


def cmd_ivr_simulate(args: argparse.Namespace) -> int:
    from ivr.flow import FlowError
    from ivr.simulator import main_simulate

    from ivr.simulator import main_cases

    try:
        if args.cases:
            if args.answers:
                raise CliError("give either --cases or --say/--dtmf/--wav answers, not both")
            return main_cases(args.flow, args.cases, args.json)
        return main_simulate(args.flow, args.answers or [], args.json)
    except (FlowError, ValueError) as e:
        raise CliError(str(e)) from None


class _Answer(argparse.Action):
    """--say/--dtmf/--wav keep their command-line order: each answers the next gather."""

    def __call__(self, parser: Any, namespace: argparse.Namespace, value: Any, option: Any = None) -> None:
        answers = getattr(namespace, "answers", None) or []
        answers.append((self.dest, value))
        namespace.answers = answers


def cmd_acd_simulate(args: argparse.Namespace) -> int:
    from softswitch.acd.simulate import main_simulate
    return main_simulate(args)


def cmd_cdr(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    rows = _read_cdrs(config, args.last)
    if args.format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(CDR_COLUMNS)
        writer.writerows([_csv_cell(row.get(col)) for col in CDR_COLUMNS] for row in rows)
    else:
        print(json.dumps(rows, indent=2))
    return EXIT_OK


def _read_cdrs(config: Config, last: int | None) -> list[dict[str, Any]]:
    """CDRs of the configured store; a store that does not exist yet is empty (and is not created)."""
    path = config.store_path()
    if not path.exists():
        return []
    try:
        store = SqliteStore(path)
        try:
            return store.list_cdrs(last)
        finally:
            store.close()
    except (StoreError, sqlite3.Error) as e:
        raise CliError(f"{path}: cannot read CDRs: {e}") from None


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    return json.dumps(value) if isinstance(value, (dict, list)) else value


QUEUE_COLUMNS = (("queue", "name"), ("strategy", "strategy"), ("waiting", "waiting"), ("offered", "offered"),
                 ("answered", "answered"), ("abandoned", "abandoned"), ("timed out", "timed_out"),
                 ("overflowed", "overflowed"), ("SL %", "service_level_pct"), ("ASA s", "asa_s"),
                 ("AHT s", "aht_s"), ("longest wait s", "longest_wait_s"), ("staffed", "staffed"),
                 ("available", "available"))
AGENT_COLUMNS = (("agent", "name"), ("state", "state"), ("reason", "pause_reason"), ("queues", "queues"),
                 ("calls", "calls"), ("talk s", "talk_time_s"), ("wrap-up s", "wrap_up_time_s"),
                 ("idle s", "idle_s"), ("no-answers", "no_answers"))


def _control(args: argparse.Namespace, cmd: str, **request_args: Any) -> Any:
    """One request to the running switch whose control socket ``--config`` names."""
    from softswitch.control import ControlError, request

    config = load_config(args.config)
    path = config.control_socket_path()
    if path is None:
        raise CliError(f"{args.config or 'the default configuration'} turns the control socket off "
                       f"(control.socket = \"\")")
    try:
        return request(path, cmd, **request_args)
    except ControlError as e:
        raise CliError(str(e)) from None


def _print_rows(rows: list[dict[str, Any]], columns: Sequence[tuple[str, str]], as_json: bool) -> int:
    if as_json:
        print(json.dumps(rows, indent=2))
    else:
        print(format_table(rows, columns))
    return EXIT_OK


def format_table(rows: list[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """Aligned text table, one ``(header, key)`` per column: numbers right-aligned (floats to 1 decimal),
    lists comma-joined, missing values as "-"."""
    def cell(value: Any) -> str:
        if value is None or value == "":
            return "-"
        if isinstance(value, float):
            return f"{value:.1f}"
        if isinstance(value, (list, tuple)):
            return ",".join(map(str, value)) or "-"
        if isinstance(value, dict):
            return ",".join(f"{k}:{v}" for k, v in value.items()) or "-"
        return str(value)

    table = [[h for h, _ in columns]] + [[cell(row.get(key)) for _, key in columns] for row in rows]
    numeric = [all(isinstance(row.get(key), (int, float)) and not isinstance(row.get(key), bool)
                   for row in rows) and bool(rows) for _, key in columns]
    widths = [max(len(r[i]) for r in table) for i in range(len(columns))]
    return "\n".join("  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(r, widths, numeric)).rstrip()
                     for r in table)


def cmd_queue_status(args: argparse.Namespace) -> int:
    return _print_rows(_control(args, "queue.status", name=args.name), QUEUE_COLUMNS, args.json)


def cmd_queue_set(args: argparse.Namespace) -> int:
    changes: dict[str, Any] = {}
    for item in args.changes:
        key, eq, text = item.partition("=")
        if not eq or not key:
            raise CliError(f"{item!r}: expected KEY=VALUE, e.g. strategy=ring-all or max_wait_s=60")
        try:
            changes[key] = json.loads(text)
        except ValueError:
            changes[key] = text
    _control(args, "queue.set", name=args.name, changes=changes)
    return _print_rows(_control(args, "queue.status", name=args.name), QUEUE_COLUMNS, False)


def cmd_queue_member(args: argparse.Namespace) -> int:
    if args.queue_command == "add-member":
        _control(args, "queue.add_member", name=args.queue, agent=args.agent, level=args.level)
        print(f"queue {args.queue}: agent {args.agent} added at level {args.level}")
    else:
        _control(args, "queue.remove_member", name=args.queue, agent=args.agent)
        print(f"queue {args.queue}: agent {args.agent} removed")
    return EXIT_OK


RECORDING_COLUMNS = (("call", "call_id"), ("recording", "path"), ("paused", "paused"), ("seconds", "duration_s"))


def cmd_recording_list(args: argparse.Namespace) -> int:
    return _print_rows(_control(args, "recording.list"), RECORDING_COLUMNS, args.json)


def cmd_recording_pause(args: argparse.Namespace) -> int:
    result = _control(args, f"recording.{args.recording_command}", call_id=args.call_id)
    print(f"call {args.call_id}: recording {'paused' if result['paused'] else 'resumed'}")
    return EXIT_OK


def cmd_agent_list(args: argparse.Namespace) -> int:
    return _print_rows(_control(args, "agent.list"), AGENT_COLUMNS, args.json)


def cmd_agent_state(args: argparse.Namespace) -> int:
    reason = getattr(args, "reason", None)
    _control(args, f"agent.{args.agent_command}", name=args.name, reason=reason)
    done = {"login": "logged in", "logout": "logged out", "pause": "paused", "unpause": "unpaused"}
    print(f"agent {args.name}: {done[args.agent_command]}" + (f" ({reason})" if reason else ""))
    return EXIT_OK


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


RECORDING_ROWS = (("duration", "duration_s"), ("caller talk", "caller_talk_s"), ("agent talk", "agent_talk_s"),
                  ("agent share of talk", "talk_ratio"), ("silence (both)", "silence_s"),
                  ("overlap (both talk)", "overlap_s"), ("overlaps", "overlaps"),
                  ("interruptions", "interruptions"), ("longest monologue", "longest_monologue_s"),
                  ("longest silence", "longest_silence_s"), ("agent first word", "agent_first_word_s"),
                  ("paused", "paused_s"))


def _paused_interval(text: str) -> list[float]:
    start, dash, end = text.partition("-")
    try:
        interval = [float(start), float(end)]
    except ValueError:
        interval = []
    if not dash or len(interval) != 2 or not 0 <= interval[0] <= interval[1]:
        raise argparse.ArgumentTypeError(f"expected START-END in seconds, e.g. 12.5-20, got {text!r}")
    return interval


def _sidecar_paused(wav: str) -> list[list[float]] | None:
    """Paused intervals the recorder noted in the JSON beside the WAV (``recording.paused``), if any."""
    from pathlib import Path

    try:
        meta = json.loads(Path(wav).with_suffix(".json").read_text())
        paused = meta.get("recording", meta).get("paused")
        return [[float(s), float(e)] for s, e in paused] if paused else None
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def _recording_stats(args: argparse.Namespace) -> dict[str, Any]:
    from softswitch.recorder.talkstats import RecordingFileError, stats_for_wav

    try:
        paused = args.paused if args.paused is not None else _sidecar_paused(args.file)
        return stats_for_wav(args.file, paused=paused)
    except RecordingFileError as e:
        raise CliError(str(e)) from None


def cmd_recording_stats(args: argparse.Namespace) -> int:
    stats = _recording_stats(args)
    if args.json:
        print(json.dumps(stats, indent=2))
        return EXIT_OK

    def show(key: str, value: Any) -> str:
        if value is None:
            return "-"
        if key == "talk_ratio":
            return f"{100 * value:.0f} %"
        if isinstance(value, dict):
            return "  ".join(f"{k} {show(key, v)}" for k, v in value.items())
        return f"{value:.2f} s" if key.endswith("_s") else str(value)

    width = max(len(label) for label, _ in RECORDING_ROWS)
    print(args.file)
    for label, key in RECORDING_ROWS:
        print(f"  {label.ljust(width)}  {show(key, stats[key])}")
    for party in ("caller", "agent"):
        segments = stats["segments"][party]
        print(f"  {(party + ' segments').ljust(width)}  {len(segments)}: "
              + ", ".join(f"{s:.2f}-{e:.2f}" for s, e in segments[:8]) + (" ..." if len(segments) > 8 else ""))
    return EXIT_OK


def cmd_recording_plot(args: argparse.Namespace) -> int:
    from softswitch.recorder.plot import plot_timeline
    from softswitch.recorder.talkstats import RecordingFileError

    try:
        out = plot_timeline(args.file, args.output, stats=_recording_stats(args), width_px=args.width,
                            height_px=args.height)
    except (RecordingFileError, ValueError) as e:
        raise CliError(str(e)) from None
    except OSError as e:
        raise CliError(f"{args.output}: cannot write the picture: {e.strerror or e}") from None
    print(out)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="softswitch", description="SIP softswitch and IVR engine.")
    parser.add_argument("--version", action="version", version=f"softswitch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    config_help = "TOML config file (default: the embedded default, see config/default.toml)"

    p = sub.add_parser("run", help="run the switch until SIGINT/SIGTERM")
    p.add_argument("--config", "-c", metavar="FILE", help=config_help)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("config", help="configuration tools")
    config_sub = p.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    p = config_sub.add_parser("check", help="validate a config file")
    p.add_argument("file", metavar="FILE")
    p.set_defaults(func=cmd_config_check)

    p = sub.add_parser("ivr", help="IVR flow tools")
    ivr_sub = p.add_subparsers(dest="ivr_command", required=True, metavar="ACTION")
    p = ivr_sub.add_parser("validate", help="check flow files (YAML/JSON): errors name file:line and node")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--config", "-c", metavar="FILE", help="config whose media.prompts_dir holds prompts")
    p.set_defaults(func=cmd_ivr_validate)
    p = ivr_sub.add_parser("simulate", help="run a flow without a call, answering its gathers in order")
    p.add_argument("flow", metavar="FLOW")
    p.add_argument("--say", action=_Answer, metavar="TEXT", help="answer the next gather by speaking TEXT")
    p.add_argument("--dtmf", action=_Answer, metavar="DIGITS", help="answer the next gather with keys")
    p.add_argument("--wav", action=_Answer, metavar="FILE", help="answer with audio through the real ASR")
    p.add_argument("--cases", metavar="FILE", help="run every scripted case of FILE (YAML) and report the "
                   "gather branches no case exercised (coverage)")
    p.add_argument("--json", action="store_true", help='print {"path": [...], "hits": [...], "result": ...}')
    p.set_defaults(func=cmd_ivr_simulate, answers=None)

    p = sub.add_parser("acd", help="ACD tools")
    acd_sub = p.add_subparsers(dest="acd_command", required=True, metavar="ACTION")
    p = acd_sub.add_parser("simulate", help="discrete-event simulation of a queue against synthetic traffic "
                           "(same engine and strategies as the live ACD): SL, ASA, abandon rate")
    from softswitch.acd.simulate import add_simulate_arguments
    add_simulate_arguments(p)
    p.set_defaults(func=cmd_acd_simulate)

    control_help = "config of the running switch, for its control socket (default: the embedded default)"
    p = sub.add_parser("queue", help="ACD queues of the running switch: statistics, settings, members")
    queue_sub = p.add_subparsers(dest="queue_command", required=True, metavar="ACTION")
    p = queue_sub.add_parser("status", help="waiting callers, counters, SL/ASA/AHT, staffed agents per queue")
    p.add_argument("name", nargs="?", metavar="NAME", help="only this queue")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.set_defaults(func=cmd_queue_status)
    p = queue_sub.add_parser("set", help="change queue settings (as in [[queues]]) without a restart")
    p.add_argument("name", metavar="NAME")
    p.add_argument("changes", nargs="+", metavar="KEY=VALUE", help="VALUE is JSON if it parses, else a string")
    p.set_defaults(func=cmd_queue_set)
    p = queue_sub.add_parser("add-member", help="make an agent a member of a queue")
    p.add_argument("queue", metavar="QUEUE")
    p.add_argument("agent", metavar="AGENT")
    p.add_argument("--level", type=_non_negative, default=0, metavar="N", help="lower levels are offered first")
    p.set_defaults(func=cmd_queue_member)
    p = queue_sub.add_parser("remove-member", help="take an agent out of a queue")
    p.add_argument("queue", metavar="QUEUE")
    p.add_argument("agent", metavar="AGENT")
    p.set_defaults(func=cmd_queue_member)

    p = sub.add_parser("agent", help="ACD agents of the running switch: list, log in/out, pause")
    agent_sub = p.add_subparsers(dest="agent_command", required=True, metavar="ACTION")
    p = agent_sub.add_parser("list", help="state, pause reason, queues and counters of every agent")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.set_defaults(func=cmd_agent_list)
    for action, text in (("login", "log an agent in to its queues"), ("logout", "log an agent out"),
                         ("pause", "pause an agent (no queue calls)"), ("unpause", "end an agent's pause")):
        p = agent_sub.add_parser(action, help=text)
        p.add_argument("name", metavar="NAME")
        if action == "pause":
            p.add_argument("--reason", default="", metavar="TEXT", help="pause reason (queue_log, agent list)")
        p.set_defaults(func=cmd_agent_state)
    for parser_ in (*queue_sub.choices.values(), *agent_sub.choices.values()):
        parser_.add_argument("--config", "-c", metavar="FILE", help=control_help)

    p = sub.add_parser("recording", help="call recordings: talk-time statistics and a timeline picture")
    rec_sub = p.add_subparsers(dest="recording_command", required=True, metavar="ACTION")
    p = rec_sub.add_parser("stats", help="talk time, silence, overlaps, interruptions, ... of a stereo WAV "
                           "(left = caller, right = agent)")
    p.add_argument("file", metavar="FILE.wav")
    p.add_argument("--json", action="store_true", help="print the statistics as JSON (as saved by the recorder)")
    p.set_defaults(func=cmd_recording_stats)
    p = rec_sub.add_parser("plot", help="PNG of both tracks' waveforms and speech segments on one time axis")
    p.add_argument("file", metavar="FILE.wav")
    p.add_argument("-o", "--output", required=True, metavar="PNG", help="picture to write, e.g. timeline.png")
    p.add_argument("--width", type=int, default=1600, metavar="PX", help="width in pixels (default 1600)")
    p.add_argument("--height", type=int, default=600, metavar="PX", help="height in pixels (default 600)")
    p.set_defaults(func=cmd_recording_plot)
    for parser_ in rec_sub.choices.values():
        parser_.add_argument("--paused", action="append", type=_paused_interval, metavar="START-END",
                             help="a paused interval in seconds (repeatable): neither talk nor silence; by "
                             "default those the recorder noted in FILE.json beside the WAV")
    p = rec_sub.add_parser("list", help="calls being recorded by the running switch")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_recording_list)
    p.add_argument("--config", "-c", metavar="FILE", help=control_help)
    for action, what in (("pause", "pause a call's recording (kept as marked silence)"),
                         ("resume", "resume a paused recording")):
        p = rec_sub.add_parser(action, help=what)
        p.add_argument("call_id", metavar="CALL_ID", help="the call id (`softswitch recording list`)")
        p.add_argument("--config", "-c", metavar="FILE", help=control_help)
        p.set_defaults(func=cmd_recording_pause)

    p = sub.add_parser("cdr", help="print call detail records")
    p.add_argument("--config", "-c", metavar="FILE", help=config_help)
    p.add_argument("--format", choices=("json", "csv"), default="json")
    p.add_argument("--last", type=_non_negative, metavar="N", help="only the N most recent records")
    p.set_defaults(func=cmd_cdr)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return EXIT_USAGE
    except CliError as e:
        print(f"softswitch: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130

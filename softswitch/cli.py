"""Command line: ``softswitch run | config check | cdr | ivr validate``.

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


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


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

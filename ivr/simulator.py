"""Run a flow without a call: scripted caller answers, the same interpreter and matching.

``--say TEXT`` answers the next gather with text (keyword matching on text), ``--dtmf DIGITS`` with
keys, ``--wav FILE`` with audio through the real ASR engine. When the script runs out, the caller
stays silent (no input). Coverage over several scripted cases shows the branches never taken.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .flow import Flow, GatherNode, load_flow
from .interpreter import run_flow
from .matching import Grammar, digits
from .runtime import Input, Run, clock_variables


@dataclass
class SimChannel:
    answers: list[tuple[str, str]]             # ("say" | "dtmf" | "wav", value), in order
    asr: Any = None                            # an AsrEngine for --wav
    transfer_error: str | None = None          # None: transfers succeed (an agent answers); else why not
    log: list[str] = field(default_factory=list)

    async def say(self, text: str, barge_in: bool) -> None:
        self.log.append(f"say: {text}")

    async def play(self, file: str, barge_in: bool) -> None:
        self.log.append(f"play: {file}")

    async def gather(self, node: GatherNode, flow: Flow, prompt: bool) -> Input:
        if prompt:
            if node.prompt.say:
                self.log.append(f"say: {node.prompt.say}")
            elif node.prompt.play:
                self.log.append(f"play: {node.prompt.play}")
        if not self.answers:
            return Input("no_input")
        kind, value = self.answers.pop(0)
        if kind == "dtmf":
            return digits(node, value)
        grammar = Grammar.of(node, flow)
        if kind == "wav":
            return await self._recognise(grammar, Path(value))
        return grammar.speech(value)

    async def _recognise(self, grammar: Grammar, path: Path) -> Input:
        if self.asr is None or grammar.keywords is None:
            raise RuntimeError("--wav needs an ASR engine and a gather that takes speech")
        from softswitch.media.players import load_wav
        pcm = load_wav(path)
        session = self.asr.open(grammar.keywords)
        try:
            for i in range(0, len(pcm) - 159, 160):
                session.feed(pcm[i:i + 160])
            tail = np.zeros(160, np.int16)
            for _ in range(100):  # 2 s of trailing silence ends the utterance
                session.feed(tail)
            while True:
                event = await asyncio.wait_for(session.events.get(), 30)
                if event.kind in ("final", "no_input", "too_long"):
                    break
        finally:
            await session.close()
        if event.kind != "final":
            return Input("no_input")
        return grammar.recognised(event)

    async def transfer(self, target: str, trunk: str | None, *, priority: int = 0,
                       skills: dict[str, int] | None = None, record: bool = False) -> str | None:
        extra = "".join(f" {k}={v}" for k, v in (("priority", priority), ("skills", skills), ("record", record))
                        if v)
        self.log.append(f"transfer: {target}{extra}")
        return self.transfer_error

    async def record_call(self, action: str) -> None:
        self.log.append(f"recording: {action}")

    async def record(self, max_s: int, beep: bool) -> str | None:
        self.log.append(f"record: up to {max_s} s")
        return "simulated.wav"

    async def hangup(self) -> None:
        self.log.append("hangup")


def simulate(flow: Flow, answers: Sequence[tuple[str, str]], asr: Any = None,
             variables: dict[str, Any] | None = None) -> tuple[Run, list[str]]:
    channel = SimChannel(list(answers), asr)
    base = {"caller": "1001", "called": "100", **clock_variables()}
    run = asyncio.run(run_flow(flow, channel, {**base, **(variables or {})}))
    return run, channel.log


def coverage(flow: Flow, runs: Sequence[Run]) -> list[str]:
    """Edges of gathers never taken by any run, as ``node -> target`` (global keywords included)."""
    taken: set[tuple[str, str]] = set()
    for run in runs:
        taken.update(zip(run.path, run.path[1:]))
    missing = []
    for node_id, node in flow.nodes.items():
        if node.type != "gather":
            continue
        for b in node.branches:
            if (node_id, b.goto) not in taken:
                missing.append(f"{node_id} -> {b.goto}")
        if (node_id, node.failure) not in taken:
            missing.append(f"{node_id} -> {node.failure} (failure)")
    return missing


def coverage_total(flow: Flow) -> int:
    """How many gather edges ``coverage`` looks at (branches plus failure edges)."""
    return sum(len(n.branches) + 1 for n in flow.nodes.values() if n.type == "gather")


@dataclass
class Case:
    name: str
    answers: list[tuple[str, str]]
    expect: str | None = None  # a node the path must reach


def load_cases(path: str | Path) -> list[Case]:
    """A YAML/JSON list of ``{name, answers: [{say|dtmf|wav: value}, ...], expect: node}``; wav paths
    are relative to the cases file. Errors name the file and the case."""
    import yaml
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"{path}: cannot read cases: {e}") from None
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of cases")
    cases = []
    for i, item in enumerate(data):
        where = f"{path}: case {i + 1}"
        if not isinstance(item, dict) or not isinstance(item.get("answers", []), list):
            raise ValueError(f"{where}: expected {{name, answers: [...], expect}}")
        answers = []
        for a in item.get("answers", []):
            if not isinstance(a, dict) or len(a) != 1 or next(iter(a)) not in ("say", "dtmf", "wav"):
                raise ValueError(f"{where}: each answer is one of say: TEXT, dtmf: KEYS, wav: FILE (got {a!r})")
            kind, value = next(iter(a.items()))
            value = str(value)
            if kind == "wav" and not Path(value).is_absolute():
                value = str(path.parent / value)
            answers.append((kind, value))
        cases.append(Case(str(item.get("name", f"case {i + 1}")), answers, item.get("expect")))
    return cases


def main_cases(path: str, cases_path: str, as_json: bool = False) -> int:
    """``softswitch ivr simulate FLOW --cases FILE``: every case, whether it reached its ``expect``
    node, and the gather edges no case exercised. 1 if a case missed its node."""
    flow = load_flow(path)
    cases = load_cases(cases_path)
    asr = None
    if any(kind == "wav" for c in cases for kind, _ in c.answers):
        from asr.pocketsphinx_engine import PocketSphinxEngine
        asr = PocketSphinxEngine()
    results, runs = [], []
    for case in cases:
        run, _ = simulate(flow, case.answers, asr)
        runs.append(run)
        ok = case.expect is None or case.expect in run.path
        results.append({"name": case.name, "ok": ok, "expect": case.expect, **run.summary()})
    missing = coverage(flow, runs)
    total = coverage_total(flow)
    failed = [r for r in results if not r["ok"]]
    if as_json:
        print(json.dumps({"cases": results, "coverage": {"edges": total, "exercised": total - len(missing),
                                                          "missing": missing}}, ensure_ascii=False, indent=2))
    else:
        for r in results:
            print(f"{'ok  ' if r['ok'] else 'FAIL'} {r['name']}: {' -> '.join(r['path'])}"
                  + (f" (expected {r['expect']})" if not r["ok"] else ""))
        print(f"coverage: {total - len(missing)} of {total} gather edges exercised")
        for edge in missing:
            print(f"  never taken: {edge}")
    return 1 if failed else 0


def main_simulate(path: str, answers: Sequence[tuple[str, str]], as_json: bool = False) -> int:
    flow = load_flow(path)
    asr = None
    if any(kind == "wav" for kind, _ in answers):
        from asr.pocketsphinx_engine import PocketSphinxEngine
        asr = PocketSphinxEngine()
    run, log = simulate(flow, answers, asr)
    if as_json:
        print(json.dumps(run.summary(), ensure_ascii=False, indent=2))
    else:
        for line in log:
            print(f"  {line}")
        print("path: " + " -> ".join(run.path))
        for hit in run.hits:
            print(f"hit: {hit['node']}: {hit['source']} {hit['text']!r} -> {hit['keyword']} ({hit['score']})")
        print(f"result: {run.result}")
    return 0 if not run.result.startswith("failed") else 1

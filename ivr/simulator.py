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
from .runtime import Input, Run


@dataclass
class SimChannel:
    answers: list[tuple[str, str]]             # ("say" | "dtmf" | "wav", value), in order
    asr: Any = None                            # an AsrEngine for --wav
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
        return grammar.speech(event.text, event.score)

    async def transfer(self, target: str, trunk: str | None) -> str | None:
        self.log.append(f"transfer: {target}")
        if target.startswith("queue:"):
            return "queues are not available yet (ACD)"
        return None

    async def record(self, max_s: int, beep: bool) -> str | None:
        self.log.append(f"record: up to {max_s} s")
        return "simulated.wav"

    async def hangup(self) -> None:
        self.log.append("hangup")


def simulate(flow: Flow, answers: Sequence[tuple[str, str]], asr: Any = None,
             variables: dict[str, Any] | None = None) -> tuple[Run, list[str]]:
    channel = SimChannel(list(answers), asr)
    base = {"caller": "1001", "called": "100"}
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

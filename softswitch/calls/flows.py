"""The IVR flows a switch runs, loaded and validated once at start, and the one ASR engine they share.

A flow with an error never reaches a caller: ``FlowLibrary.load`` fails the start with every
problem named by file, line and node (the same messages as ``softswitch ivr validate``). Static
prompt texts are synthesised in the background after start, so the first caller does not wait for
TTS between recognising a keyword and hearing the answer.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ivr.flow import Flow, FlowError, GatherNode, SayNode, load_flow
from ivr.validator import validate, validate_file

from ..config import Config, ConfigError

if TYPE_CHECKING:
    from ..media.engine import MediaEngine

log = logging.getLogger("softswitch.ivr")


class FlowLibrary:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.flows: dict[str, Flow] = {}
        self._asr: Any = None
        self._executor: ThreadPoolExecutor | None = None

    def load(self) -> None:
        """Load every flow a route or a queue's overflow names; ConfigError lists all problems of all of them."""
        problems: list[str] = []
        names = sorted({r.target[1] for r in self.config.routes if r.target[0] == "flow"}
                       | {q.overflow[5:] for q in self.config.queues if q.overflow.startswith("flow:")})
        for name in names:
            path = self.config.flow_path(name)
            if path is None:
                problems.append(f"flow {name!r}: no {name}.yaml/.yml/.json in {self.config.flows_dir()}")
                continue
            dirs = (self.config.prompts_dir(),)
            try:
                flow = load_flow(path)
            except FlowError:  # validate_file words load errors as problems (file, line, node)
                flow, found = None, validate_file(path, dirs)
            else:
                found = validate(flow, path, dirs)
            errors = [p for p in found if p.severity == "error"]
            for p in found:
                if p.severity != "error":
                    log.warning("%s", p.format())
            if errors or flow is None:
                problems.extend(p.format() for p in errors)
                continue
            self.flows[name] = flow
        if problems:
            raise ConfigError("\n".join(problems), problems)

    def get(self, name: str) -> Flow | None:
        return self.flows.get(name)

    @property
    def needs_asr(self) -> bool:
        return any(isinstance(n, GatherNode) and "speech" in n.input
                   for f in self.flows.values() for n in f.nodes.values())

    def asr(self) -> Any:
        """The recogniser (created on first use: loading a model takes a moment)."""
        if self._asr is None:
            from asr.factory import make_engine
            ivr = self.config.ivr
            # PocketSphinx decodes in asr_workers processes (these threads only wait for them); Vosk in the threads
            self._executor = ThreadPoolExecutor(ivr.asr_workers + 1, thread_name_prefix="asr")
            model = str(self.config.resolve_path(ivr.vosk_model)) if ivr.vosk_model else None
            self._asr = make_engine(ivr.asr_engine, vosk_model=model, executor=self._executor,
                                    processes=ivr.asr_workers)
        return self._asr

    def prompt_dirs(self, flow: Flow) -> list[Path]:
        base = [flow.source_path.parent] if flow.source_path is not None else []
        return [*base, self.config.prompts_dir()]

    async def warm(self, media: MediaEngine) -> None:
        """Synthesise every prompt text without {{variables}} into the TTS cache (best effort)."""
        texts: list[str] = []
        for flow in self.flows.values():
            for node in flow.nodes.values():
                if isinstance(node, SayNode):
                    texts.append(node.text)
                elif isinstance(node, GatherNode):
                    texts += [r.say for r in (node.prompt, node.no_input, node.no_match) if r is not None and r.say]
        for text in dict.fromkeys(t for t in texts if "{{" not in t):
            try:
                await media.say(text)
            except Exception as exc:  # noqa: BLE001 - a cold cache is slower, not broken
                log.warning("could not pre-synthesise %r: %s", text[:40], exc)
                return

    def close(self) -> None:
        if self._asr is not None and hasattr(self._asr, "shutdown"):
            self._asr.shutdown()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def start_asr(self) -> None:
        """Load the recogniser off the event loop so the first gather does not pay for it.
        A recogniser that cannot start (missing model, package) fails the start as a config error."""
        if self.needs_asr:
            try:
                await asyncio.to_thread(self.asr)
            except Exception as exc:  # noqa: BLE001 - whatever the engine raises, say where to look
                self._asr = None
                raise ConfigError(f"ivr.asr_engine = {self.config.ivr.asr_engine!r}: {exc}") from None

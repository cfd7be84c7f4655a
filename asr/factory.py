"""Build the configured ASR engine by name (``make_engine("pocketsphinx")``, ``make_engine("vosk", vosk_model=...)``)."""

from __future__ import annotations

from concurrent.futures import Executor
from typing import Any

__all__ = ["ENGINES", "AsrConfigError", "make_engine"]

ENGINES = ("pocketsphinx", "vosk")


class AsrConfigError(ValueError):
    """The ASR configuration names an unknown engine or lacks what the engine needs."""


def make_engine(name: str, *, vosk_model: str | None = None, executor: Executor | None = None,
                processes: int = 0) -> Any:
    """A ready engine (model loaded). Unknown names and a Vosk engine without a model path raise
    AsrConfigError; a model or package that is missing raises the engine's own error (which names it).
    ``vosk_model`` is ignored by PocketSphinx (it has its bundled model). ``processes``: PocketSphinx
    decodes in that many worker processes (it holds the GIL while decoding); Vosk releases the GIL and
    decodes in the executor's threads."""
    key = (name or "").strip().lower()
    if key == "pocketsphinx":
        from asr.pocketsphinx_engine import PocketSphinxEngine
        return PocketSphinxEngine(executor=executor, processes=processes)
    if key == "vosk":
        if not vosk_model:
            raise AsrConfigError("ASR engine 'vosk' needs a model directory (vosk_model), e.g. "
                                 "/opt/vosk/vosk-model-small-en-us-0.15 from https://alphacephei.com/vosk/models")
        from asr.vosk_engine import VoskEngine
        return VoskEngine(vosk_model, executor=executor)
    raise AsrConfigError(f"unknown ASR engine {name!r}: use one of {', '.join(ENGINES)}")

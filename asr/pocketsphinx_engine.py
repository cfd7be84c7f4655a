"""PocketSphinx keyword recognition for IVR gathers.

Measured facts behind the choices here (DESIGN.md, asr/eval.py):
* the bundled acoustic model is 16 kHz only, so telephone audio is upsampled 8 -> 16 kHz;
* digital silence makes the decoder's feature normalisation misbehave (42/60 vs 60/60), so a noise floor
  is added and the utterance is padded with noise. White noise also fills the empty 4-8 kHz band of
  upsampled telephone audio that the wideband model expects; on the G.711 espeak set -50 dBFS scored 93 %
  of keywords against 68 % at -60 dBFS and 62 % at -70 (``python -m asr.eval --noise=-70,-60,-50``);
* a closed grammar forces any speech onto some keyword. Rejection here is only what comes for free: the
  decoder often ends out-of-grammar speech on a partial path ("credit" for "what time do you open") or
  none at all, and asr.keywords.match refuses partial phrases. A filler-word alternative in the grammar
  was tried and dropped: 13-24 s per utterance (FSG blow-up) and it swallowed real keywords.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Executor, ThreadPoolExecutor
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from asr.engine import FINAL, AsrEvent, EndpointedSession
from asr.keywords import KeywordSet, match
from softswitch.media.resample import resample

__all__ = ["PocketSphinxEngine", "UnknownWordsError", "build_grammar"]

INSTALL_HINT = "PocketSphinx is not installed: pip install pocketsphinx==5.1.1"
PAD_MS = 300

class UnknownWordsError(ValueError):
    """Keyword phrases contain words the pronunciation dictionary lacks (the grammar cannot contain them)."""


def _import_pocketsphinx():  # type: ignore[no-untyped-def]
    try:
        import pocketsphinx
    except ImportError as e:  # pragma: no cover - exercised only without the package
        raise RuntimeError(INSTALL_HINT) from e
    return pocketsphinx


def _jsgf_token(word: str) -> str:
    return word if word.replace("'", "").isalnum() else f'"{word}"'


def build_grammar(keywords: KeywordSet) -> str:
    """JSGF text accepting exactly one keyword phrase."""
    alts = sorted({" ".join(_jsgf_token(t) for t in toks) for _, _, toks in keywords.phrases})
    return "#JSGF V1.0;\ngrammar ivr;\npublic <kw> = " + " | ".join(alts) + ";\n"


def _read_dictionary(path: str) -> frozenset[str]:
    words = set()
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            w = line.split(" ", 1)[0]
            if w:
                words.add(w.split("(", 1)[0])
    return frozenset(words)


@dataclass(eq=False)
class PocketSphinxEngine:
    """One engine per process (model loading is slow); ``open`` a session per gather."""

    executor: Executor | None = None
    noise_dbfs: float = -50.0  # asr/eval.py: -60 gave 68 % keyword accuracy, -50 gave 93 %
    # Extra pocketsphinx Config settings (e.g. {"pip": 0.5}); asr/eval.py compares them.
    decoder_options: Mapping[str, object] = field(default_factory=dict)
    _own_executor: bool = field(default=False, init=False, repr=False)
    _local: threading.local = field(default_factory=threading.local, init=False, repr=False)
    _ps: object = field(init=False, repr=False)
    _dict_words: frozenset[str] = field(init=False, repr=False)
    _dict_path: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._ps = _import_pocketsphinx()
        if self.executor is None:
            self.executor = ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)),
                                               thread_name_prefix="asr")
            self._own_executor = True
        model = self._ps.get_model_path()  # type: ignore[attr-defined]
        self._dict_path = os.path.join(model, "en-us", "cmudict-en-us.dict")
        self._dict_words = _read_dictionary(self._dict_path)
        # Start a worker and load its decoder now, so the first utterance's hand-off and decode are not slow.
        self.executor.submit(self._decoder, None)

    def shutdown(self) -> None:
        if self._own_executor and self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)

    def unknown_words(self, keywords: KeywordSet) -> list[str]:
        return sorted(w for w in keywords.vocabulary() if w not in self._dict_words)

    def grammar_for(self, keywords: KeywordSet) -> str:
        unknown = self.unknown_words(keywords)
        if unknown:
            raise UnknownWordsError(
                f"not in the PocketSphinx en-us dictionary: {', '.join(unknown)} "
                f"(use dictionary words or spell them out; CJK needs a different model)")
        return build_grammar(keywords)

    def open(self, keywords: KeywordSet, *, no_input_ms: int = 5000, end_silence_ms: int = 700,
             max_utterance_ms: int = 10000) -> EndpointedSession:
        grammar = self.grammar_for(keywords)  # raises now, in the caller, not later in a worker thread

        def decode(audio: np.ndarray, start_s: float, end_s: float) -> AsrEvent:
            text, conf = self.recognise(audio, grammar)
            m = match(text, keywords)
            if m is None:
                return AsrEvent(FINAL, text=text, score=conf, start_s=start_s, end_s=end_s)
            return AsrEvent(FINAL, text=text, branch=m.branch, phrase=m.phrase, score=round(conf * m.score, 3),
                            start_s=start_s, end_s=end_s)

        return EndpointedSession(decode, self.executor, no_input_ms=no_input_ms, end_silence_ms=end_silence_ms,
                                 max_utterance_ms=max_utterance_ms)

    # --- worker-thread side -------------------------------------------------------------------------

    def _decoder(self, grammar: str | None):  # type: ignore[no-untyped-def]
        """A decoder per worker thread (they are not thread-safe), with a search per distinct grammar."""
        loc = self._local
        if not hasattr(loc, "decoder"):
            loc.decoder = self._ps.Decoder(samprate=16000, lm=None, loglevel="FATAL",  # type: ignore[attr-defined]
                                          **self.decoder_options)
            loc.searches = {}
        if grammar is None:
            return loc.decoder
        name = loc.searches.get(grammar)
        if name is None:
            name = f"g{len(loc.searches)}"
            loc.decoder.add_jsgf_string(name, grammar)
            loc.searches[grammar] = name
        loc.decoder.activate_search(name)
        return loc.decoder

    def prepare(self, audio8k: np.ndarray) -> np.ndarray:
        """8 kHz int16 -> 16 kHz int16 padded with, and laid over, a faint noise floor."""
        x = resample(np.asarray(audio8k, dtype=np.float64), 8000, 16000)
        pad = np.zeros(16000 * PAD_MS // 1000)
        x = np.concatenate([pad, x, pad])
        rng = np.random.default_rng(len(x))  # deterministic: same audio, same result
        x += rng.standard_normal(len(x)) * 32768.0 * 10 ** (self.noise_dbfs / 20)
        return np.clip(np.round(x), -32768, 32767).astype(np.int16)

    def recognise(self, audio8k: np.ndarray, grammar: str) -> tuple[str, float]:
        """Blocking decode: (hypothesis text, "" if none; decoder posterior 0..1, 1.0 when it gives none)."""
        d = self._decoder(grammar)
        pcm = self.prepare(audio8k)
        d.start_utt()
        d.process_raw(pcm.tobytes(), full_utt=True)
        d.end_utt()
        hyp = d.hyp()
        if hyp is None:
            return "", 0.0
        conf = float(d.get_logmath().exp(hyp.prob)) if hyp.prob else 1.0
        return hyp.hypstr, max(0.0, min(1.0, conf))

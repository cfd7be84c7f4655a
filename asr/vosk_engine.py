"""Vosk (Kaldi) keyword recognition for IVR gathers: an optional backend (``pip install vosk==0.3.45``).

Vosk needs a model directory from the operator (https://alphacephei.com/vosk/models); this module never
calls ``vosk.Model(lang=...)``, which downloads (and ``sys.exit``s on an unknown name). A model with a
runtime graph (``graph/HCLr.fst`` + ``graph/Gr.fst``, the "small" models) decodes against a grammar of
the keyword phrases plus ``"[unk]"``; a model with only a static ``HCLG.fst`` ignores grammars, decodes
free-form and the keywords are matched on its text.

A closed grammar never rejects (vosk-api #1339: out-of-grammar speech comes back as a grammar word with
confidence 1.0), which is what ``[unk]`` is for: a result that is only ``[unk]``, or mostly ``[unk]``
(more than ``max_unk_ratio`` of its words), is a rejection: a FINAL with ``branch=None``.

Endpointing is ``asr.engine.EndpointedSession``'s: at the tentative endpoint the utterance is streamed
into a recogniser and its ``PartialResult`` read; a partial that is exactly one complete keyword phrase
(no ``[unk]``, not the start of a longer phrase of another branch) is certain and ends the gather; the
full endpoint decides on ``FinalResult``.

No Vosk model can be fetched on the build machines, so the tests cover the error paths, grammar
construction and the result-to-decision logic with stand-in recognisers; accuracy is unmeasured.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from asr.engine import EARLY_SILENCE_MS, FINAL, AsrEvent, EndpointedSession
from asr.keywords import _CJK, KeywordSet, match, tokens

__all__ = ["VoskEngine", "VoskEngineError", "UNK", "build_vosk_grammar", "check_model_dir", "decide_final",
           "certain_partial", "phrase_forms", "read_vocabulary"]

log = logging.getLogger("asr")

UNK = "[unk]"
INSTALL_HINT = "pip install vosk==0.3.45 (or the project's 'vosk' extra)"
CHUNK_SAMPLES = 8000 // 10  # 100 ms per AcceptWaveform call


class VoskEngineError(RuntimeError):
    """Vosk is not installed, or the model directory is missing or not a Vosk model."""


def _import_vosk() -> Any:
    try:
        import vosk
    except ImportError as e:
        raise VoskEngineError(f"the Vosk ASR backend needs the vosk package: {INSTALL_HINT}") from e
    return vosk


def check_model_dir(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Validate a Vosk model directory; returns what it has. VoskEngineError names what is missing."""
    p = os.fspath(path)
    if not p:
        raise VoskEngineError("no Vosk model directory configured (set the ASR model path, e.g. "
                              "asr.vosk_model: /opt/vosk/vosk-model-small-en-us-0.15)")
    if not os.path.exists(p):
        raise VoskEngineError(f"Vosk model directory {p!r} does not exist (download a model from "
                              f"https://alphacephei.com/vosk/models and unpack it there)")
    if not os.path.isdir(p):
        raise VoskEngineError(f"Vosk model path {p!r} is a file, not a model directory (unpack the archive)")
    missing = [rel for rel in ("am/final.mdl", "conf/mfcc.conf") if not os.path.isfile(os.path.join(p, rel))]
    graph = os.path.join(p, "graph")
    runtime = all(os.path.isfile(os.path.join(graph, f)) for f in ("HCLr.fst", "Gr.fst"))
    static = os.path.isfile(os.path.join(graph, "HCLG.fst"))
    if not runtime and not static:
        missing.append("graph/HCLG.fst or graph/HCLr.fst + graph/Gr.fst")
    if missing:
        hint = ""
        subdirs = [d for d in os.listdir(p) if os.path.isdir(os.path.join(p, d, "am"))]
        if subdirs:
            hint = f" (did you mean {os.path.join(p, subdirs[0])!r}?)"
        raise VoskEngineError(f"{p!r} is not a Vosk model directory: missing {', '.join(missing)}{hint}")
    words = os.path.join(graph, "words.txt")
    return {"path": p, "runtime_graph": runtime, "words": words if os.path.isfile(words) else None}


def read_vocabulary(words_txt: str) -> frozenset[str]:
    """Kaldi ``words.txt`` ("word id" per line) -> the words, without <eps>/#0-style symbols."""
    out = set()
    with open(words_txt, encoding="utf-8", errors="replace") as f:
        for line in f:
            w = line.split(maxsplit=1)[0] if line.strip() else ""
            if w and not w.startswith(("#", "<")):
                out.add(w)
    return frozenset(out)


def phrase_forms(phrase: str) -> list[str]:
    """Ways to write a keyword phrase as model words: as written (normalised; CJK runs kept together,
    e.g. "客服" as one word) and then token by token ("客 服")."""
    words: list[str] = []
    for chunk in phrase.split():
        run = ""  # consecutive CJK characters of this chunk, written as one word
        for tok in tokens(chunk):
            if _CJK.fullmatch(tok):
                run += tok
                continue
            if run:
                words.append(run)
                run = ""
            words.append(tok)
        if run:
            words.append(run)
    return list(dict.fromkeys(f for f in (" ".join(words), " ".join(tokens(phrase))) if f))


def build_vosk_grammar(keywords: KeywordSet,
                       vocabulary: Iterable[str] | None = None) -> tuple[str, KeywordSet, list[str]]:
    """(grammar JSON, the phrases kept as a KeywordSet, the phrases dropped). A phrase is kept in the first
    form (see ``phrase_forms``) whose words are all in ``vocabulary`` (None: no check, the form as written).
    VoskEngineError if none is left."""
    vocab = None if vocabulary is None else set(vocabulary)
    kept: dict[str, list[str]] = {}
    alts: list[str] = []
    dropped: list[str] = []
    for branch, phrase, _ in keywords.phrases:
        forms = phrase_forms(phrase)
        ok = forms[:1] if vocab is None else [f for f in forms if all(w in vocab for w in f.split())]
        if ok:
            kept.setdefault(branch, []).append(phrase)
            alts.append(ok[0])
        else:
            dropped.append(phrase)
    if not alts:
        raise VoskEngineError(f"no keyword phrase is in the Vosk model's vocabulary: {', '.join(dropped)}")
    grammar = json.dumps(sorted(set(alts)) + [UNK], ensure_ascii=False)
    return grammar, KeywordSet(kept), dropped


def _words(text: str) -> list[str]:
    return text.split()


def decide_final(text: str, keywords: KeywordSet, *, max_unk_ratio: float = 0.5, start_s: float = 0.0,
                 end_s: float = 0.0, conf: float = 1.0) -> AsrEvent:
    """Vosk result text -> FINAL event: the branch, a no-match, or a rejection ([unk]-only/-dominated)."""
    words = _words(text)
    unk = sum(w == UNK for w in words)
    known = " ".join(w for w in words if w != UNK)
    if not words:
        return AsrEvent(FINAL, start_s=start_s, end_s=end_s)
    if not known:
        return AsrEvent(FINAL, hypothesis=text, start_s=start_s, end_s=end_s, rejected="only [unk]")
    m = match(known, keywords)
    if m is None:
        return AsrEvent(FINAL, text=known, hypothesis=text, score=conf, start_s=start_s, end_s=end_s)
    if unk / len(words) > max_unk_ratio:
        return AsrEvent(FINAL, hypothesis=text, score=conf, start_s=start_s, end_s=end_s,
                        rejected=f"{unk} of {len(words)} words are [unk]")
    return AsrEvent(FINAL, text=known, branch=m.branch, phrase=m.phrase, score=round(conf * m.score, 3),
                    start_s=start_s, end_s=end_s, hypothesis=text)


def certain_partial(partial: str, keywords: KeywordSet) -> AsrEvent | None:
    """A partial result that already settles the gather: exactly one whole phrase, no [unk], and no longer
    phrase of another branch starting with it (more speech could still turn "card" into "card services")."""
    words = tuple(tokens(" ".join(w for w in _words(partial) if w != UNK)))
    if not words or UNK in _words(partial):
        return None
    hit = [(b, p) for b, p, toks in keywords.phrases if toks == words]
    if len({b for b, _ in hit}) != 1:
        return None
    branch, phrase = hit[0]
    if any(b != branch and len(toks) > len(words) and toks[:len(words)] == words for b, _, toks in keywords.phrases):
        return None
    return AsrEvent(FINAL, text=partial, branch=branch, phrase=phrase, score=1.0, hypothesis=partial)


def _json_text(result: str, key: str) -> tuple[str, float]:
    """Vosk JSON -> (text, mean word confidence or 1.0 without word details)."""
    try:
        data = json.loads(result)
    except (TypeError, ValueError):
        return "", 0.0
    text = str(data.get(key, "") or "").strip()
    confs = [float(w.get("conf", 1.0)) for w in data.get("result", []) if isinstance(w, Mapping)]
    return text, (sum(confs) / len(confs) if confs else 1.0)


@dataclass(eq=False)
class VoskEngine:
    """One per process (models take seconds and hundreds of MB to load); ``open`` a session per gather."""

    model_path: str
    executor: Executor | None = None
    max_unk_ratio: float = 0.5  # more [unk] words than this share of the result: rejected
    early_silence_ms: int | None = EARLY_SILENCE_MS
    sample_rate: int = 8000  # what we feed; Kaldi resamples to the model's rate
    _vosk: Any = field(init=False, repr=False)
    _model: Any = field(init=False, repr=False)
    _info: dict[str, Any] = field(init=False, repr=False)
    _vocab: frozenset[str] | None = field(init=False, repr=False)
    _own_executor: bool = field(default=False, init=False, repr=False)
    _local: threading.local = field(default_factory=threading.local, init=False, repr=False)
    _warned: set[tuple[tuple[str, str], ...]] = field(default_factory=set, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_unk_ratio <= 1.0:
            raise ValueError(f"max_unk_ratio must be within 0..1, not {self.max_unk_ratio}")
        self._vosk = _import_vosk()
        self._info = check_model_dir(self.model_path)
        self._vocab = read_vocabulary(self._info["words"]) if self._info["words"] else None
        self._vosk.SetLogLevel(-1)
        try:
            self._model = self._vosk.Model(model_path=self._info["path"])  # a path, never lang=: no downloads
        except Exception as e:  # vosk raises a bare Exception("Failed to create a model")
            raise VoskEngineError(f"Vosk could not load the model in {self._info['path']!r}: {e}") from e
        if not self._info["runtime_graph"]:
            log.warning("asr: Vosk model %s has no runtime graph (HCLr.fst/Gr.fst): keyword grammars are "
                        "ignored, it decodes free-form and keywords are matched on its text", self.model_path)
        if self.executor is None:
            self.executor = ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)),
                                               thread_name_prefix="asr")
            self._own_executor = True

    def shutdown(self) -> None:
        if self._own_executor and self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)

    def grammar_for(self, keywords: KeywordSet) -> tuple[str, KeywordSet]:
        """(grammar JSON, the phrases it can recognise); phrases with out-of-vocabulary words are dropped
        with one warning per phrase set."""
        grammar, kept, dropped = build_vosk_grammar(keywords, self._vocab)
        if dropped:
            key = tuple((b, p) for b, p, _ in keywords.phrases)
            with self._lock:
                first = key not in self._warned
                self._warned.add(key)
            if first:
                log.warning("asr: not in the Vosk model's vocabulary, left out of the grammar: %s",
                            ", ".join(repr(p) for p in dropped))
        return grammar, kept

    def open(self, keywords: KeywordSet, *, no_input_ms: int = 5000, end_silence_ms: int = 700,
             max_utterance_ms: int = 10000, early_silence_ms: int | None = None) -> EndpointedSession:
        grammar, keywords = self.grammar_for(keywords)  # raises here, in the caller

        def decode(audio: np.ndarray, start_s: float, end_s: float) -> AsrEvent:
            return self.decide(audio, keywords, grammar, start_s=start_s, end_s=end_s)

        def tentative(audio: np.ndarray, start_s: float, end_s: float) -> AsrEvent:
            return self.decide(audio, keywords, grammar, start_s=start_s, end_s=end_s, partial=True)

        early = self.early_silence_ms if early_silence_ms is None else early_silence_ms
        return EndpointedSession(decode, self.executor, no_input_ms=no_input_ms, end_silence_ms=end_silence_ms,
                                 max_utterance_ms=max_utterance_ms, early_silence_ms=early,
                                 decode_tentative=tentative)

    # --- worker-thread side -------------------------------------------------------------------------

    def _recognizer(self, grammar: str) -> Any:
        """A recogniser per worker thread and grammar (KaldiRecognizer is not thread-safe), reset per use."""
        cache = getattr(self._local, "recognizers", None)
        if cache is None:
            cache = self._local.recognizers = {}
        rec = cache.get(grammar)
        if rec is None:
            if self._info["runtime_graph"]:
                rec = self._vosk.KaldiRecognizer(self._model, float(self.sample_rate), grammar)
            else:
                rec = self._vosk.KaldiRecognizer(self._model, float(self.sample_rate))
            rec.SetWords(True)
            cache[grammar] = rec
        return rec

    def decide(self, audio8k: np.ndarray, keywords: KeywordSet, grammar: str | None = None, *,
               start_s: float = 0.0, end_s: float = 0.0, partial: bool = False) -> AsrEvent:
        """Blocking. ``partial``: decide on PartialResult (certain keyword or a no-match PARTIAL-to-be)."""
        if grammar is None:
            grammar, _ = self.grammar_for(keywords)
        rec = self._recognizer(grammar)
        return recognise(rec, audio8k, keywords, max_unk_ratio=self.max_unk_ratio, start_s=start_s, end_s=end_s,
                         partial=partial)


def recognise(rec: Any, audio8k: np.ndarray, keywords: KeywordSet, *, max_unk_ratio: float = 0.5,
              start_s: float = 0.0, end_s: float = 0.0, partial: bool = False) -> AsrEvent:
    """Stream ``audio8k`` into a (KaldiRecognizer-like) ``rec`` and decide. Results Vosk finalises on its
    own endpointing mid-way (AcceptWaveform -> True) are joined with the final one."""
    pcm = np.asarray(audio8k, dtype=np.int16)
    texts: list[str] = []
    confs: list[float] = []
    try:
        for i in range(0, len(pcm), CHUNK_SAMPLES):
            if rec.AcceptWaveform(pcm[i:i + CHUNK_SAMPLES].astype("<i2").tobytes()):
                t, c = _json_text(rec.Result(), "text")
                if t:
                    texts.append(t)
                    confs.append(c)
        if partial:
            t, _ = _json_text(rec.PartialResult(), "partial")
            heard = " ".join(texts + ([t] if t else []))
            certain = certain_partial(heard, keywords)
            if certain is not None:
                return AsrEvent(FINAL, text=certain.text, branch=certain.branch, phrase=certain.phrase, score=1.0,
                                hypothesis=heard, start_s=start_s, end_s=end_s)
            return AsrEvent(FINAL, hypothesis=heard, start_s=start_s, end_s=end_s)
        t, c = _json_text(rec.FinalResult(), "text")
        if t:
            texts.append(t)
            confs.append(c)
    finally:
        rec.Reset()
    conf = sum(confs) / len(confs) if confs else 1.0
    return decide_final(" ".join(texts), keywords, max_unk_ratio=max_unk_ratio, start_s=start_s, end_s=end_s,
                        conf=round(conf, 3))

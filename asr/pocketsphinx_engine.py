"""PocketSphinx keyword recognition for IVR gathers.

Measured facts behind the choices here (DESIGN.md, asr/eval.py):
* the bundled acoustic model is 16 kHz only, so telephone audio is upsampled 8 -> 16 kHz;
* digital silence makes the decoder's feature normalisation misbehave (42/60 vs 60/60), so a noise floor
  is added and the utterance is padded with noise. White noise also fills the empty 4-8 kHz band of
  upsampled telephone audio that the wideband model expects; on the G.711 espeak set -50 dBFS scored 93 %
  of keywords against 68 % at -60 dBFS and 62 % at -70 (``python -m asr.eval --noise=-70,-60,-50``);
* a closed grammar forces any speech onto some keyword (47 % of out-of-grammar phrases on the tuning set).
  Rejection (``rejection="coverage"``, docs/asr.md has the measured comparison): the decoder explains
  speech the keyword cannot cover with its silence/noise fillers, so an utterance is rejected when more
  than ``max_uncovered`` of its speech frames (by energy, within ``speech_range_db`` of the loudest frame)
  lie outside the keyword's word segments. It costs nothing extra (the segmentation of the one grammar
  pass). Also measured and not adopted (docs/asr.md): a second free-form n-gram pass (23x the cost, and
  it never hears espeak keywords right), a grammar-vs-allphone score ratio (4x, weak separation), a
  phone-loop garbage path in the grammar and a loop of the keyword words (both lose keywords first).
* keyword phrases with words the dictionary lacks (e.g. a CJK synonym) are dropped with a warning; the
  session only fails if no phrase is left.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from asr.engine import EARLY_SILENCE_MS, FINAL, AsrEvent, EndpointedSession
from asr.keywords import KeywordSet, match
from softswitch.media.resample import resample

__all__ = ["PocketSphinxEngine", "REJECTION_METHODS", "UnknownWordsError", "build_grammar", "uncovered_speech"]

log = logging.getLogger("asr")

INSTALL_HINT = "PocketSphinx is not installed: pip install pocketsphinx==5.1.1"
PAD_MS = 300
FRAME_RATE = 100  # decoder frames per second (10 ms hop)
REJECTION_METHODS = ("none", "coverage")

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


def _speech_mask(audio8k: np.ndarray, range_db: float, floor_dbfs: float = -55.0) -> np.ndarray:
    """Per 10 ms frame: loud enough to be speech (within ``range_db`` of the loudest frame, above a floor)."""
    n = len(audio8k) // 80
    if n == 0:
        return np.zeros(0, bool)
    x = np.asarray(audio8k[:n * 80], dtype=np.float64).reshape(n, 80)
    e = 10 * np.log10((x * x).mean(axis=1) / 32768.0 ** 2 + 1e-12)
    return (e > e.max() - range_db) & (e > floor_dbfs)


def _is_filler(word: str) -> bool:
    return word.startswith(("<", "[")) or word == "</s>"


def uncovered_speech(audio8k: np.ndarray, segments: list[tuple[str, int, int]], *, range_db: float = 35.0,
                     offset_frames: int = PAD_MS * FRAME_RATE // 1000, slack_frames: int = 3) -> float:
    """Share of the speech frames of ``audio8k`` outside the span of the non-filler words in ``segments``
    ((word, start_frame, end_frame) in decoder frames, ``offset_frames`` of padding before the audio).
    1.0 when no word was decoded at all."""
    speech = _speech_mask(audio8k, range_db)
    total = int(speech.sum())
    words = [(a, b) for w, a, b in segments if not _is_filler(w)]
    if total == 0:
        return 0.0 if words else 1.0
    if not words:
        return 1.0
    lo = max(0, words[0][0] - offset_frames - slack_frames)
    hi = max(0, words[-1][1] - offset_frames + 1 + slack_frames)
    return round(1.0 - int(speech[lo:hi].sum()) / total, 4)


def _read_dictionary(path: str) -> frozenset[str]:
    words = set()
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            w = line.split(" ", 1)[0]
            if w:
                words.add(w.split("(", 1)[0])
    return frozenset(words)


class _Inline(Executor):
    """Runs work at once, in the caller: the engine inside a decoder process needs no pool of its own."""

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[no-untyped-def, override]
        fut: Future = Future()
        try:
            fut.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 - delivered through the future
            fut.set_exception(exc)
        return fut


_PROCESS_ENGINE: "PocketSphinxEngine | None" = None  # set in decoder processes only, by _process_init


def _die_with_parent() -> None:
    """A decoder process must not outlive the switch (kill -9 included): its task queue's pipe never
    reports EOF to it, so it would wait forever. Linux: PR_SET_PDEATHSIG; elsewhere a watcher thread."""
    parent = os.getppid()
    try:
        import ctypes
        import signal
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, signal.SIGKILL, 0, 0, 0) == 0:  # 1 = PR_SET_PDEATHSIG
            if os.getppid() != parent:  # the parent died before prctl took effect
                os._exit(0)
            return
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        import time
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)
    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _process_init(settings: dict) -> None:
    """A decoder process: a little lower priority than the switch, so its event loop (media every 20 ms)
    gets the core first when they share one; then load the decoder before the first utterance."""
    global _PROCESS_ENGINE
    _die_with_parent()
    try:
        os.nice(5)
    except OSError:
        pass
    _PROCESS_ENGINE = PocketSphinxEngine(executor=_Inline(), **settings)


def _process_decide(audio8k: np.ndarray, keywords: KeywordSet, grammar: str, start_s: float,
                    end_s: float) -> AsrEvent:
    assert _PROCESS_ENGINE is not None, "not a decoder process"
    return _PROCESS_ENGINE.decide(audio8k, keywords, grammar, start_s=start_s, end_s=end_s)


@dataclass(eq=False)
class PocketSphinxEngine:
    """One engine per process (model loading is slow); ``open`` a session per gather."""

    executor: Executor | None = None
    noise_dbfs: float = -50.0  # asr/eval.py: -60 gave 68 % keyword accuracy, -50 gave 93 %
    # Extra pocketsphinx Config settings (e.g. {"pip": 0.5}); asr/eval.py compares them.
    decoder_options: Mapping[str, object] = field(default_factory=dict)
    rejection: str = "coverage"  # "none": trust the closed grammar (47 % out-of-grammar false accepts)
    max_uncovered: float = 0.10  # share of the utterance's speech the keyword may leave unexplained
    speech_range_db: float = 35.0  # frames within this of the loudest frame count as speech
    early_silence_ms: int | None = EARLY_SILENCE_MS  # tentative endpoint (asr.engine.EndpointedSession)
    # Decoder processes (0: decode in the executor's threads). PocketSphinx keeps the GIL for a whole
    # decode (~25 ms per second of speech), which stalls an event loop in the same process: a live switch
    # decodes in processes (bench/ivr_calls.py: 2-70 % late media frames with threads, ~0 with processes).
    processes: int = 0
    _own_executor: bool = field(default=False, init=False, repr=False)
    _local: threading.local = field(default_factory=threading.local, init=False, repr=False)
    _ps: object = field(init=False, repr=False)
    _dict_words: frozenset[str] = field(init=False, repr=False)
    _dict_path: str = field(init=False, repr=False)
    _warned: set[tuple[tuple[str, str], ...]] = field(default_factory=set, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.rejection not in REJECTION_METHODS:
            raise ValueError(f"rejection must be one of {', '.join(REJECTION_METHODS)}, not {self.rejection!r}")
        if not 0.0 <= self.max_uncovered <= 1.0:
            raise ValueError(f"max_uncovered must be within 0..1, not {self.max_uncovered}")
        self._ps = _import_pocketsphinx()
        if self.executor is None:
            self.executor = ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)),
                                               thread_name_prefix="asr")
            self._own_executor = True
        model = self._ps.get_model_path()  # type: ignore[attr-defined]
        self._dict_path = os.path.join(model, "en-us", "cmudict-en-us.dict")
        self._dict_words = _read_dictionary(self._dict_path)
        self._pool: ProcessPoolExecutor | None = None
        if self.processes > 0:
            settings = {"noise_dbfs": self.noise_dbfs, "decoder_options": dict(self.decoder_options),
                        "rejection": self.rejection, "max_uncovered": self.max_uncovered,
                        "speech_range_db": self.speech_range_db}
            self._pool = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_process_init, initargs=(settings,))
            # start every process and load its decoder now, not on the first caller's utterance
            for f in [self._pool.submit(os.getpid) for _ in range(self.processes)]:
                f.result(timeout=120)
            return
        # Start a worker and load its decoder now, so the first utterance's hand-off and decode are not slow.
        self.executor.submit(self._decoder, None)

    def shutdown(self) -> None:
        if self._own_executor and self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
        if self._pool is not None:  # wait: idle decoder processes exit at once, and must not be left behind
            self._pool.shutdown(wait=True, cancel_futures=True)

    def unknown_words(self, keywords: KeywordSet) -> list[str]:
        return sorted(w for w in keywords.vocabulary() if w not in self._dict_words)

    def sayable(self, keywords: KeywordSet) -> KeywordSet:
        """``keywords`` without the phrases that have a word the dictionary lacks (warned about once per
        phrase set); UnknownWordsError if no phrase is left. Branches left without phrases are dropped."""
        kept: dict[str, list[str]] = {}
        dropped: list[tuple[str, str]] = []
        missing: set[str] = set()
        for branch, phrase, toks in keywords.phrases:
            unknown = {t for t in toks if t not in self._dict_words}
            if not unknown:
                kept.setdefault(branch, []).append(phrase)
            else:
                dropped.append((branch, phrase))
                missing |= unknown
        if not kept:
            raise UnknownWordsError(
                f"no keyword phrase can be recognised: not in the PocketSphinx en-us dictionary: "
                f"{', '.join(self.unknown_words(keywords))} (use dictionary words or spell them out; "
                f"CJK needs a different model, e.g. Vosk)")
        if not dropped:
            return keywords
        key = tuple((b, p) for b, p, _ in keywords.phrases)
        with self._lock:
            first = key not in self._warned
            self._warned.add(key)
        if first:
            log.warning("asr: PocketSphinx cannot recognise %s (words not in its en-us dictionary: %s); "
                        "those phrases are left out of the grammar",
                        ", ".join(f"{p!r} ({b})" for b, p in dropped), ", ".join(sorted(missing)))
        return KeywordSet(kept)

    def grammar_for(self, keywords: KeywordSet) -> str:
        """JSGF for the phrases the dictionary can say (see ``sayable``)."""
        return build_grammar(self.sayable(keywords))

    def open(self, keywords: KeywordSet, *, no_input_ms: int = 5000, end_silence_ms: int = 700,
             max_utterance_ms: int = 10000, early_silence_ms: int | None = None) -> EndpointedSession:
        grammar = self.grammar_for(keywords)  # raises now, in the caller, not later in a worker thread

        pool = self._pool

        def decode(audio: np.ndarray, start_s: float, end_s: float) -> AsrEvent:
            if pool is not None:  # this thread only waits (without the GIL) for a decoder process
                return pool.submit(_process_decide, audio, keywords, grammar, start_s, end_s).result()
            return self.decide(audio, keywords, grammar, start_s=start_s, end_s=end_s)

        early = self.early_silence_ms if early_silence_ms is None else early_silence_ms
        return EndpointedSession(decode, self.executor, no_input_ms=no_input_ms, end_silence_ms=end_silence_ms,
                                 max_utterance_ms=max_utterance_ms, early_silence_ms=early)

    # --- worker-thread side -------------------------------------------------------------------------

    def decide(self, audio8k: np.ndarray, keywords: KeywordSet, grammar: str | None = None, *,
               start_s: float = 0.0, end_s: float = 0.0) -> AsrEvent:
        """Blocking: decode one utterance and decide branch / no-match / rejection (a FINAL event)."""
        if grammar is None:
            grammar = self.grammar_for(keywords)
        text, conf, segments = self.recognise_segments(audio8k, grammar)
        m = match(text, keywords)
        if m is None:
            return AsrEvent(FINAL, text=text, hypothesis=text, score=conf, start_s=start_s, end_s=end_s)
        if self.rejection == "coverage":
            uncovered = uncovered_speech(audio8k, segments, range_db=self.speech_range_db)
            if uncovered > self.max_uncovered:
                return AsrEvent(FINAL, hypothesis=text, score=conf, start_s=start_s, end_s=end_s,
                                rejected=f"{uncovered:.0%} of the speech is not {m.phrase!r}")
        return AsrEvent(FINAL, text=text, branch=m.branch, phrase=m.phrase, score=round(conf * m.score, 3),
                        start_s=start_s, end_s=end_s, hypothesis=text)

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
        text, conf, _ = self.recognise_segments(audio8k, grammar)
        return text, conf

    def recognise_segments(self, audio8k: np.ndarray,
                           grammar: str) -> tuple[str, float, list[tuple[str, int, int]]]:
        """``recognise`` plus the word segmentation: (word, start frame, end frame), 10 ms frames counted
        from the start of the padded audio (PAD_MS before ``audio8k``)."""
        d = self._decoder(grammar)
        pcm = self.prepare(audio8k)
        d.start_utt()
        d.process_raw(pcm.tobytes(), full_utt=True)
        d.end_utt()
        hyp = d.hyp()
        if hyp is None:
            return "", 0.0, []
        conf = float(d.get_logmath().exp(hyp.prob)) if hyp.prob else 1.0
        segments = [(seg.word, seg.start_frame, seg.end_frame) for seg in d.seg()]
        return hyp.hypstr, max(0.0, min(1.0, conf)), segments

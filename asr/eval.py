"""Keyword accuracy and out-of-grammar false accepts on synthetic telephone speech (``python -m asr.eval``).

espeak-ng speech is cleaner than callers, so these numbers are an upper bound on accuracy; what they are
good for is comparing settings (noise floor, rejection) on the same set. Two sets: ``tuning`` (the
settings were chosen on it) and ``held_out`` (other voices, other rates, other out-of-grammar sentences,
several sharing words with the keywords), which shows whether a setting generalises. Every clip goes
through the 300-3400 Hz band and a G.711 mu-law round trip.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from asr.keywords import KeywordSet
from softswitch.media.g711 import ulaw_decode, ulaw_encode

KEYWORDS = KeywordSet({
    "credit_card": ["credit card"],
    "bank_account": ["bank account"],
    "customer_service": ["customer service"],
    "agent": ["agent"],
    "operator": ["operator"],
})
OUT_OF_GRAMMAR = ["I want to pay my bill", "what time do you open", "hello", "cancel my subscription",
                  "where is my order", "I need help with my internet", "can I speak to a manager",
                  "yes please", "no thanks", "the weather is nice today"]
VOICES = ["en-us", "en-gb", "en-us+f3", "en-us+m3"]
RATES = [130, 160, 190]
# Held out: never used to choose a setting. Everyday sentences, several sharing a word with a keyword.
HELD_OUT_OUT_OF_GRAMMAR = [
    "my card is fine thanks", "I want to close my account", "can you repeat that", "what is my balance",
    "I lost my wallet yesterday", "is this the right number", "please hold on a moment", "good morning",
    "thank you very much", "I don't know", "maybe later", "call me back tomorrow", "I forgot my password",
    "the service was terrible", "how much do I owe", "stop calling me", "goodbye", "check my statement",
    "I am not sure", "tell me about your loans", "my credit score went down", "the agency sent me a letter",
    "send me a new card", "where is the nearest branch"]
HELD_OUT_VOICES = ["en-us+f2", "en-gb+m2", "en-029", "en-gb-scotland+f4"]
HELD_OUT_RATES = [145, 180]


def synth(text: str, voice: str = "en-us", rate: int = 150, g711: bool = True) -> np.ndarray:
    """espeak-ng -> 300-3400 Hz band, 8 kHz int16 (optionally through a G.711 mu-law round trip)."""
    with tempfile.TemporaryDirectory() as tmp:
        raw, tel = os.path.join(tmp, "a.wav"), os.path.join(tmp, "b.wav")
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate), "-w", raw, text], check=True,
                       capture_output=True)
        subprocess.run(["sox", "-D", raw, "-r", "8000", "-c", "1", "-b", "16", tel, "sinc", "300-3400"], check=True,
                       capture_output=True)
        with wave.open(tel, "rb") as w:
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)
    return ulaw_decode(ulaw_encode(pcm)) if g711 else pcm


@dataclass(frozen=True)
class EvalSet:
    name: str
    keywords: KeywordSet
    out_of_grammar: Sequence[str]
    voices: Sequence[str]
    rates: Sequence[int]

    def clips(self) -> list[tuple[str, int, str, str | None]]:
        """(voice, rate, text, expected branch or None for out-of-grammar)."""
        out: list[tuple[str, int, str, str | None]] = []
        for voice in self.voices:
            for rate in self.rates:
                out += [(voice, rate, phrases[0], branch) for branch, phrases in self.keywords.branches.items()]
                out += [(voice, rate, text, None) for text in self.out_of_grammar]
        return out


TUNING = EvalSet("tuning", KEYWORDS, OUT_OF_GRAMMAR, VOICES, RATES)
HELD_OUT = EvalSet("held_out", KEYWORDS, HELD_OUT_OUT_OF_GRAMMAR, HELD_OUT_VOICES, HELD_OUT_RATES)
SETS = {s.name: s for s in (TUNING, HELD_OUT)}


@dataclass
class Tally:
    n: int = 0
    hits: int = 0

    def rate(self) -> float:
        return round(self.hits / self.n, 3) if self.n else 0.0


class AudioCache:
    """Synthesised clips, made in parallel once and reused under every setting compared."""

    def __init__(self) -> None:
        self.clips: dict[tuple[str, str, int], np.ndarray] = {}

    def fill(self, keys: Sequence[tuple[str, str, int]]) -> None:
        todo = sorted({k for k in keys if k not in self.clips})
        with ThreadPoolExecutor(max_workers=max(1, min(8, (os.cpu_count() or 1) * 2))) as ex:
            for k, pcm in zip(todo, ex.map(lambda k: synth(k[0], k[1], k[2]), todo)):
                self.clips[k] = pcm

    def __call__(self, text: str, voice: str, rate: int) -> np.ndarray:
        if (text, voice, rate) not in self.clips:
            self.fill([(text, voice, rate)])
        return self.clips[(text, voice, rate)]


@dataclass
class SetResult:
    accuracy: Tally = field(default_factory=Tally)
    false_accept: Tally = field(default_factory=Tally)  # out-of-grammar speech that selected a branch
    any_hypothesis: Tally = field(default_factory=Tally)  # ... that the grammar turned into any words
    per_voice: dict[str, list[int]] = field(default_factory=dict)  # voice -> [kw n, kw hits, oog n, oog fa]
    errors: list[str] = field(default_factory=list)
    cpu_s: float = 0.0
    audio_s: float = 0.0

    def summary(self) -> dict[str, object]:
        return {"keyword_accuracy": self.accuracy.rate(), "keywords": self.accuracy.n,
                "false_accept_rate": self.false_accept.rate(), "out_of_grammar": self.false_accept.n,
                "false_accept_any_hypothesis": self.any_hypothesis.rate(),
                "decode_cpu_ms_per_audio_s": round(1000 * self.cpu_s / self.audio_s, 1) if self.audio_s else 0.0,
                "per_voice": {v: {"keyword_accuracy": round(a[1] / a[0], 3) if a[0] else 0.0,
                                  "false_accept_rate": round(a[3] / a[2], 3) if a[2] else 0.0}
                              for v, a in self.per_voice.items()}}


def evaluate(engine: object, eval_set: EvalSet, audio: AudioCache) -> SetResult:
    """Run ``engine.decide`` (blocking, this thread) over the set; CPU time is this thread's."""
    res = SetResult()
    audio.fill([(t, v, r) for v, r, t, _ in eval_set.clips()])
    for voice, rate, text, branch in eval_set.clips():
        pcm = audio(text, voice, rate)
        t0 = time.thread_time()
        ev = engine.decide(pcm, eval_set.keywords)  # type: ignore[attr-defined]
        res.cpu_s += time.thread_time() - t0
        res.audio_s += len(pcm) / 8000
        pv = res.per_voice.setdefault(voice, [0, 0, 0, 0])
        heard = ev.hypothesis or ev.text
        if branch is not None:
            ok = ev.branch == branch
            res.accuracy.n += 1
            res.accuracy.hits += ok
            pv[0] += 1
            pv[1] += ok
            if not ok:
                res.errors.append(f"{voice}/{rate} {text!r} -> {heard!r}" + (f" rejected: {ev.rejected}"
                                                                               if ev.rejected else ""))
        else:
            res.false_accept.n += 1
            res.any_hypothesis.n += 1
            res.any_hypothesis.hits += bool(heard)
            pv[2] += 1
            if ev.branch is not None:
                res.false_accept.hits += 1
                pv[3] += 1
                res.errors.append(f"{voice}/{rate} OOG {text!r} -> {heard!r} ({ev.branch})")
    return res


def session_cost(engine: object, eval_set: EvalSet, audio: AudioCache, tail_s: float = 1.0) -> dict[str, object]:
    """The live path: every clip of the set (plus ``tail_s`` of faint noise) fed frame by frame through
    ``engine.open`` (VAD, tentative and final decodes). Frames go in faster than real time, but a tentative
    decode is waited for before the next frame (as if decoding took under one 20 ms frame), so early
    decisions happen as they would live. Reports process CPU time (all threads) per second of audio fed,
    decodes started per utterance, how often the tentative endpoint decided, the decision delay after the
    last voiced frame (endpoint wait + decode wall time) and the live path's accuracy."""
    import asyncio

    rng = np.random.default_rng(0)
    tail = (rng.standard_normal(int(8000 * tail_s)) * 32768 * 10 ** (-70 / 20)).astype(np.int16)
    clips = eval_set.clips()
    audio.fill([(t, v, r) for v, r, t, _ in clips])

    async def one(pcm: np.ndarray) -> tuple[int, int, AsrEventLike | None]:
        session = engine.open(eval_set.keywords)  # type: ignore[attr-defined]
        x = np.concatenate([pcm, tail])
        x = np.concatenate([x, np.zeros((-len(x)) % 160, np.int16)])
        for i in range(0, len(x), 160):
            session.feed(x[i:i + 160])
            pending = getattr(session, "_tentative", None)
            if pending is not None:
                await asyncio.wait([pending])
            await asyncio.sleep(0)
            if session.done:
                break
        final = None
        while True:
            ev = await asyncio.wait_for(session.events.get(), 30)
            if ev.kind in ("final", "no_input"):
                final = ev if ev.kind == "final" else None
                break
        await session.close()
        return len(x), session.decodes, final

    async def run_all() -> list[tuple[int, int, AsrEventLike | None]]:
        return [await one(audio(t, v, r)) for v, r, t, _ in clips]

    t0 = time.process_time()
    results = asyncio.run(run_all())
    cpu = time.process_time() - t0
    samples = sum(n for n, _, _ in results)
    kw = [(b, f) for (_, _, _, b), (_, _, f) in zip(clips, results) if b is not None]
    oog = [f for (_, _, _, b), (_, _, f) in zip(clips, results) if b is None]
    finals = [f for _, _, f in results if f is not None]
    delays = [1000 * (f.decided_s - f.end_s) + f.decode_ms for f in finals if f.branch is not None]
    return {"sessions": len(results), "audio_s": round(samples / 8000, 1),
            "cpu_ms_per_audio_s": round(1000 * cpu / (samples / 8000), 1),
            "decodes_per_utterance": round(sum(d for _, d, _ in results) / len(results), 2),
            "keyword_accuracy": round(sum(f is not None and f.branch == b for b, f in kw) / len(kw), 3) if kw else 0,
            "false_accept_rate": round(sum(f is not None and f.branch is not None for f in oog) / len(oog), 3)
            if oog else 0,
            "early_finals": sum(f.early for f in finals),
            "accepted_decision_ms_after_last_voiced_frame_p50": round(float(np.median(delays)), 1) if delays else None}


AsrEventLike = object  # asr.engine.AsrEvent (kept import-free for --engine vosk without pocketsphinx)


def make_eval_engine(name: str, setting: dict[str, object], vosk_model: str | None = None) -> object:
    if name == "vosk":
        from asr.vosk_engine import VoskEngine
        return VoskEngine(vosk_model or "", **setting)  # type: ignore[arg-type]
    from asr.pocketsphinx_engine import PocketSphinxEngine
    return PocketSphinxEngine(**setting)  # type: ignore[arg-type]


def run(setting: dict[str, object], sets: Sequence[EvalSet], audio: AudioCache, engine_name: str = "pocketsphinx",
        vosk_model: str | None = None) -> dict[str, object]:
    eng = make_eval_engine(engine_name, setting, vosk_model)
    try:
        out: dict[str, object] = {"engine": engine_name, "setting": setting}
        for s in sets:
            r = evaluate(eng, s, audio)
            out[s.name] = r.summary() | {"errors": r.errors}
        return out
    finally:
        getattr(eng, "shutdown", lambda: None)()


def _table(results: list[dict[str, object]], sets: Sequence[EvalSet]) -> str:
    lines = ["| setting | " + " | ".join(f"{s.name} kw acc | {s.name} OOG FA" for s in sets)
             + " | decode ms CPU / s audio |", "|---" * (2 * len(sets) + 2) + "|"]
    for r in results:
        cells = [json.dumps(r["setting"])]
        cost = []
        for s in sets:
            d = r[s.name]
            cells += [f"{d['keyword_accuracy']:.1%} ({d['keywords']})",  # type: ignore[index]
                      f"{d['false_accept_rate']:.1%} ({d['out_of_grammar']})"]  # type: ignore[index]
            cost.append(d["decode_cpu_ms_per_audio_s"])  # type: ignore[index]
        cells.append(" / ".join(f"{c:.1f}" for c in cost))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--engine", default="pocketsphinx", choices=["pocketsphinx", "vosk"])
    ap.add_argument("--vosk-model", help="Vosk model directory (--engine vosk)")
    ap.add_argument("--settings", default='[{}]',
                    help='JSON list of engine keyword-argument dicts to compare, e.g. '
                         '\'[{"rejection": "none"}, {"rejection": "coverage", "max_uncovered": 0.1}]\'')
    ap.add_argument("--noise", help="comma-separated noise floors (dBFS), crossed with --settings (PocketSphinx)")
    ap.add_argument("--sets", default="tuning,held_out", help="comma-separated: " + ",".join(SETS))
    ap.add_argument("--errors", action="store_true", help="list misrecognitions and false accepts")
    ap.add_argument("--table", action="store_true", help="print a Markdown table instead of JSON")
    ap.add_argument("--session-cost", action="store_true",
                    help="also measure the live path (VAD + tentative + final decodes) on the tuning set")
    args = ap.parse_args(argv)
    settings = json.loads(args.settings)
    settings = settings if isinstance(settings, list) else [settings]
    if args.noise:
        settings = [s | {"noise_dbfs": float(n)} for s in settings for n in args.noise.split(",")]
    sets = [SETS[n] for n in args.sets.split(",")]
    audio = AudioCache()
    audio.fill([(t, v, r) for s in sets for v, r, t, _ in s.clips()])
    results = [run(s, sets, audio, args.engine, args.vosk_model) for s in settings]
    if args.session_cost:
        for s, r in zip(settings, results):
            eng = make_eval_engine(args.engine, s, args.vosk_model)
            try:
                r["session_cost"] = session_cost(eng, TUNING, audio)
            finally:
                getattr(eng, "shutdown", lambda: None)()
    if not args.errors:
        for r in results:
            for s in sets:
                r[s.name].pop("errors")  # type: ignore[attr-defined]
    if args.table:
        print(_table(results, sets))
        for r in results:
            if "session_cost" in r:
                print(f"live path, {json.dumps(r['setting'])}: {json.dumps(r['session_cost'])}")
    else:
        json.dump(results, sys.stdout, indent=2, ensure_ascii=False)
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

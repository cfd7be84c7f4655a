"""Keyword accuracy and out-of-grammar false accepts on synthetic telephone speech (``python -m asr.eval``).

espeak-ng speech is cleaner than callers, so these numbers are an upper bound on accuracy; what they are
good for is comparing settings (noise floor, rejection) on the same set.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import wave
from dataclasses import dataclass

import numpy as np

from asr.keywords import KeywordSet, match
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


def synth(text: str, voice: str = "en-us", rate: int = 150, g711: bool = True) -> np.ndarray:
    """espeak-ng -> 300-3400 Hz band, 8 kHz int16 (optionally through a G.711 mu-law round trip)."""
    with tempfile.TemporaryDirectory() as tmp:
        raw, tel = os.path.join(tmp, "a.wav"), os.path.join(tmp, "b.wav")
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(rate), "-w", raw, text], check=True,
                       capture_output=True)
        subprocess.run(["sox", raw, "-r", "8000", "-c", "1", "-b", "16", tel, "sinc", "300-3400"], check=True,
                       capture_output=True)
        with wave.open(tel, "rb") as w:
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)
    return ulaw_decode(ulaw_encode(pcm)) if g711 else pcm


@dataclass
class Tally:
    n: int = 0
    hits: int = 0

    def rate(self) -> float:
        return round(self.hits / self.n, 3) if self.n else 0.0


def run(noise_dbfs: float, options: dict[str, object],
        cache: dict[tuple[str, str, int], np.ndarray]) -> dict[str, object]:
    """Decode the set; a false accept counts both ways: any grammar output vs. output that match() accepts."""
    from asr.pocketsphinx_engine import PocketSphinxEngine

    eng = PocketSphinxEngine(noise_dbfs=noise_dbfs, decoder_options=options)
    grammar = eng.grammar_for(KEYWORDS)
    acc, fa_raw, fa = Tally(), Tally(), Tally()

    def audio(text: str, voice: str, rate: int) -> np.ndarray:  # the same set is decoded under each setting
        key = (text, voice, rate)
        if key not in cache:
            cache[key] = synth(text, voice, rate)
        return cache[key]

    errors: list[str] = []
    for voice in VOICES:
        for rate in RATES:
            for branch, phrases in KEYWORDS.branches.items():
                text, _ = eng.recognise(audio(phrases[0], voice, rate), grammar)
                m = match(text, KEYWORDS)
                acc.n += 1
                acc.hits += m is not None and m.branch == branch
                if m is None or m.branch != branch:
                    errors.append(f"{voice}/{rate} {phrases[0]!r} -> {text!r}")
            for phrase in OUT_OF_GRAMMAR:
                text, _ = eng.recognise(audio(phrase, voice, rate), grammar)
                fa.n += 1
                fa_raw.n += 1
                fa_raw.hits += bool(text)
                if match(text, KEYWORDS) is not None:
                    fa.hits += 1
                    errors.append(f"{voice}/{rate} OOG {phrase!r} -> {text!r}")
    eng.shutdown()
    return {"noise_dbfs": noise_dbfs, "decoder_options": options, "keyword_accuracy": acc.rate(), "keywords": acc.n,
            "false_accept_any_hypothesis": fa_raw.rate(), "false_accept_after_match": fa.rate(),
            "out_of_grammar": fa.n, "errors": errors}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--noise", default="-60", help="comma-separated noise floors (dBFS) to compare")
    ap.add_argument("--options", default="{}", help='JSON list of decoder option dicts, e.g. [{}, {"pip": 0.5}]')
    ap.add_argument("--errors", action="store_true", help="list misrecognitions and false accepts")
    args = ap.parse_args(argv)
    cache: dict[tuple[str, str, int], np.ndarray] = {}
    opts = json.loads(args.options)
    results = [run(float(n), o, cache) for n in args.noise.split(",")
               for o in (opts if isinstance(opts, list) else [opts])]
    if not args.errors:
        for r in results:
            r.pop("errors")
    json.dump(results, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Vosk backend without a Vosk model (none can be fetched here): error paths, grammar construction and the
result -> decision logic, the latter also end to end through a session with a scripted recogniser."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from asr.engine import FINAL, PARTIAL, AsrEvent
from asr.eval import synth
from asr.factory import AsrConfigError, make_engine
from asr.keywords import KeywordSet
from asr.vosk_engine import (UNK, VoskEngine, VoskEngineError, build_vosk_grammar, certain_partial,
                             check_model_dir, decide_final, phrase_forms, recognise)

KW = KeywordSet({
    "card": ["credit card"],
    "bank": ["bank account"],
    "agent": ["agent", "customer service", "客服"],
})


def _model_dir(root: Path, runtime: bool = True, words: tuple[str, ...] = ("credit", "card", "bank", "account",
                                                                            "agent", "customer", "service")) -> Path:
    d = root / "vosk-model-small-en-us-0.15"
    for rel in ("am/final.mdl", "conf/mfcc.conf", "conf/model.conf"):
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_text("x")
    (d / "graph").mkdir(exist_ok=True)
    for f in (("HCLr.fst", "Gr.fst") if runtime else ("HCLG.fst",)):
        (d / "graph" / f).write_text("x")
    (d / "graph" / "words.txt").write_text("\n".join(f"{w} {i}" for i, w in
                                                     enumerate(("<eps>", "!SIL", *words, "#0"))) + "\n")
    return d


class FakeRecognizer:
    """KaldiRecognizer stand-in: the script says what PartialResult/FinalResult return."""

    def __init__(self, model: Any, rate: float, grammar: str | None = None) -> None:
        self.model, self.rate, self.grammar = model, rate, grammar
        self.fed = 0
        self.resets = 0
        self.words = False

    def SetWords(self, on: bool) -> None:  # noqa: N802 - Vosk's API
        self.words = on

    def AcceptWaveform(self, data: bytes) -> bool:  # noqa: N802
        self.fed += len(data) // 2
        return False

    def Result(self) -> str:  # noqa: N802
        return json.dumps({"text": ""})

    def PartialResult(self) -> str:  # noqa: N802
        return json.dumps({"partial": self.model.script["partial"]})

    def FinalResult(self) -> str:  # noqa: N802
        text = self.model.script["final"]
        return json.dumps({"text": text, "result": [{"word": w, "conf": 0.9} for w in text.split()]})

    def Reset(self) -> None:  # noqa: N802
        self.resets += 1


@pytest.fixture
def fake_vosk(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    mod = types.ModuleType("vosk")
    created: list[dict[str, Any]] = []

    class Model:
        def __init__(self, model_path: str | None = None, model_name: str | None = None,
                     lang: str | None = None) -> None:
            created.append({"model_path": model_path, "model_name": model_name, "lang": lang})
            self.script = {"partial": "", "final": ""}

    mod.Model = Model  # type: ignore[attr-defined]
    mod.KaldiRecognizer = FakeRecognizer  # type: ignore[attr-defined]
    mod.SetLogLevel = lambda level: None  # type: ignore[attr-defined]
    mod.created = created  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vosk", mod)
    return mod


# --- errors ---------------------------------------------------------------------------------------------

def test_vosk_not_installed_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "vosk", None)  # import vosk -> ImportError
    with pytest.raises(VoskEngineError, match="pip install vosk==0.3.45"):
        VoskEngine(str(_model_dir(tmp_path)))


def test_missing_model_directory_names_the_path(fake_vosk: types.ModuleType, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(VoskEngineError, match=f"{missing}.*does not exist"):
        VoskEngine(str(missing))
    with pytest.raises(VoskEngineError, match="no Vosk model directory configured"):
        VoskEngine("")
    assert fake_vosk.created == []  # never got as far as loading (let alone downloading) anything


def test_invalid_model_directory_says_what_is_missing(fake_vosk: types.ModuleType, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(VoskEngineError, match=r"not a Vosk model directory: missing am/final.mdl, "
                                              r"conf/mfcc.conf, graph/HCLG.fst or graph/HCLr.fst"):
        VoskEngine(str(tmp_path / "empty"))
    (tmp_path / "model.zip").write_bytes(b"PK")
    with pytest.raises(VoskEngineError, match="is a file"):
        VoskEngine(str(tmp_path / "model.zip"))
    _model_dir(tmp_path / "unpacked")  # the archive's own top directory one level down
    with pytest.raises(VoskEngineError, match="did you mean .*vosk-model-small-en-us-0.15"):
        VoskEngine(str(tmp_path / "unpacked"))


def test_model_loaded_by_path_never_by_language(fake_vosk: types.ModuleType, tmp_path: Path) -> None:
    d = _model_dir(tmp_path)
    VoskEngine(str(d)).shutdown()
    assert fake_vosk.created == [{"model_path": str(d), "model_name": None, "lang": None}]


def test_model_load_failure_wrapped(fake_vosk: types.ModuleType, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(**kw: Any) -> None:
        raise Exception("Failed to create a model")

    monkeypatch.setattr(fake_vosk, "Model", boom)
    with pytest.raises(VoskEngineError, match="could not load the model .*Failed to create a model"):
        VoskEngine(str(_model_dir(tmp_path)))


def test_check_model_dir_static_graph(tmp_path: Path) -> None:
    info = check_model_dir(_model_dir(tmp_path, runtime=False))
    assert info["runtime_graph"] is False and info["words"].endswith("words.txt")


# --- grammar --------------------------------------------------------------------------------------------

def test_phrase_forms_keep_cjk_words_together() -> None:
    assert phrase_forms("客服") == ["客服", "客 服"]
    assert phrase_forms("Credit-Card!") == ["credit card"]
    assert phrase_forms("option 2") == ["option two"]


def test_grammar_has_phrases_plus_unk_and_drops_unknown_words() -> None:
    grammar, kept, dropped = build_vosk_grammar(KW, {"credit", "card", "agent", "客服"})
    assert json.loads(grammar) == ["agent", "credit card", "客服", UNK]
    assert dropped == ["bank account", "customer service"]
    assert dict(kept.branches) == {"card": ["credit card"], "agent": ["agent", "客服"]}
    # A Chinese model that has the characters but not the word: the split form.
    grammar, _, _ = build_vosk_grammar(KeywordSet({"agent": ["客服"]}), {"客", "服"})
    assert json.loads(grammar) == ["客 服", UNK]
    with pytest.raises(VoskEngineError, match="no keyword phrase is in the Vosk model's vocabulary"):
        build_vosk_grammar(KeywordSet({"agent": ["客服"]}), {"agent"})


def test_engine_grammar_warns_once(fake_vosk: types.ModuleType, tmp_path: Path,
                                   caplog: pytest.LogCaptureFixture) -> None:
    eng = VoskEngine(str(_model_dir(tmp_path)))
    caplog.set_level(logging.WARNING, logger="asr")
    for _ in range(3):
        grammar, kept = eng.grammar_for(KW)
    assert "客服" not in grammar and "customer service" in grammar
    warnings = [r.getMessage() for r in caplog.records if r.name == "asr"]
    assert len(warnings) == 1 and "客服" in warnings[0], warnings
    eng.shutdown()


# --- decisions ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,branch,rejected", [
    ("credit card", "card", False),
    ("客 服", "agent", False),
    ("[unk] agent", "agent", False),  # half unknown: still the keyword
    ("[unk]", None, True),
    ("[unk] [unk] [unk]", None, True),
    ("[unk] [unk] agent", None, True),  # unk-dominated
    ("", None, False),
    ("credit", None, False),  # part of a phrase: no match, nothing to reject
])
def test_decide_final(text: str, branch: str | None, rejected: bool) -> None:
    ev = decide_final(text, KW, max_unk_ratio=0.5)
    assert ev.kind == FINAL and ev.branch == branch and bool(ev.rejected) == rejected, ev
    if rejected:
        assert ev.text == "" and ev.hypothesis == text


def test_certain_partial() -> None:
    kw = KeywordSet({"card": ["card", "credit card"], "svc": ["card services"], "agent": ["agent"]})
    assert certain_partial("agent", kw).branch == "agent"
    assert certain_partial("credit card", kw).branch == "card"
    assert certain_partial("card", kw) is None  # could still become "card services"
    assert certain_partial("agent [unk]", kw) is None
    assert certain_partial("credit", kw) is None
    assert certain_partial("", kw) is None


def test_recognise_streams_chunks_and_resets(fake_vosk: types.ModuleType) -> None:
    model = fake_vosk.Model(model_path="m")
    rec = FakeRecognizer(model, 8000.0, "[]")
    model.script.update(partial="bank account", final="bank account")
    audio = np.zeros(8000, np.int16)
    ev = recognise(rec, audio, KW)
    assert ev.branch == "bank" and ev.score == pytest.approx(0.9) and rec.fed == 8000 and rec.resets == 1
    ev = recognise(rec, audio, KW, partial=True)
    assert ev.branch == "bank" and rec.resets == 2
    model.script.update(partial="bank", final="[unk] [unk] [unk] bank account")
    assert recognise(rec, audio, KW, partial=True).branch is None
    ev = recognise(rec, audio, KW)
    assert ev.branch is None and ev.rejected


# --- through a session ----------------------------------------------------------------------------------

def _noise(seconds: float) -> np.ndarray:
    rng = np.random.default_rng(3)
    return (rng.standard_normal(int(8000 * seconds)) * 32768 * 10 ** (-70 / 20)).astype(np.int16)


async def _gather(eng: VoskEngine, audio: np.ndarray, real_time_tail: bool = False) -> list[AsrEvent]:
    session = eng.open(KW)
    events: list[AsrEvent] = []
    audio = np.concatenate([audio, np.zeros((-len(audio)) % 160, np.int16)])
    for i in range(0, len(audio), 160):
        session.feed(audio[i:i + 160])
        await asyncio.sleep(0.02 if real_time_tail and i > len(audio) - 8000 else 0)
        while not session.events.empty():
            events.append(session.events.get_nowait())
    while not any(e.kind == FINAL for e in events):
        events.append(await asyncio.wait_for(session.events.get(), 10))
    await session.close()
    return events


def test_session_partial_ends_gather_early_and_unk_is_rejected(fake_vosk: types.ModuleType,
                                                              tmp_path: Path) -> None:
    eng = VoskEngine(str(_model_dir(tmp_path)), early_silence_ms=240)
    speech = np.concatenate([_noise(0.3), synth("customer service", "en-us", 160)])
    eng._model.script.update(partial="customer service", final="customer service")
    events = asyncio.run(_gather(eng, np.concatenate([speech, _noise(1.0)]), real_time_tail=True))
    final = events[-1]
    assert [e.kind for e in events] == ["speech_start", PARTIAL, FINAL], events
    assert final.branch == "agent" and final.early
    eng._model.script.update(partial="[unk] [unk]", final="[unk] [unk]")
    events = asyncio.run(_gather(eng, np.concatenate([speech, _noise(1.0)])))
    assert events[-1].kind == FINAL and events[-1].branch is None and events[-1].rejected == "only [unk]"
    eng.shutdown()


# --- factory --------------------------------------------------------------------------------------------

def test_factory_errors(fake_vosk: types.ModuleType, tmp_path: Path) -> None:
    with pytest.raises(AsrConfigError, match="unknown ASR engine 'kaldi': use one of pocketsphinx, vosk"):
        make_engine("kaldi")
    assert issubclass(AsrConfigError, ValueError)
    with pytest.raises(AsrConfigError, match="needs a model directory"):
        make_engine("vosk")
    with pytest.raises(VoskEngineError, match="does not exist"):
        make_engine("vosk", vosk_model=str(tmp_path / "nope"))
    eng = make_engine("Vosk", vosk_model=str(_model_dir(tmp_path)))
    assert isinstance(eng, VoskEngine)
    eng.shutdown()


def test_factory_pocketsphinx() -> None:
    from asr.pocketsphinx_engine import PocketSphinxEngine
    eng = make_engine("pocketsphinx")
    assert isinstance(eng, PocketSphinxEngine)
    eng.shutdown()

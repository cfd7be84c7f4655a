"""What a gather listens for: its branches' keywords and digits plus the flow's global keywords,
in the shape the ASR and the text matcher want."""

from __future__ import annotations

from dataclasses import dataclass

from asr.keywords import KeywordSet, match, normalise

from .flow import Flow, GatherNode
from .runtime import Input


@dataclass(frozen=True)
class Grammar:
    keywords: KeywordSet | None  # None: the gather takes no speech
    targets: dict[str, tuple[int | None, str | None]]  # keyword-set branch name -> (branch index, global goto)

    @classmethod
    def of(cls, node: GatherNode, flow: Flow) -> Grammar:
        branches: dict[str, list[str]] = {}
        targets: dict[str, tuple[int | None, str | None]] = {}
        if "speech" in node.input:
            for i, b in enumerate(node.branches):
                if b.keywords:
                    branches[f"branch{i}"] = list(b.keywords)
                    targets[f"branch{i}"] = (i, None)
            taken = {normalise(p) for phrases in branches.values() for p in phrases}
            for i, g in enumerate(flow.keywords):
                # a global phrase also on a branch leads to the same node (the validator checks it)
                phrases = [p for p in g.phrases if normalise(p) not in taken]
                if phrases:
                    branches[f"global{i}"] = phrases
                    targets[f"global{i}"] = (None, g.goto)
        return cls(KeywordSet(branches) if branches else None, targets)

    def speech(self, text: str, score: float | None = None, decision_ms: float | None = None) -> Input:
        """Text from the caller (recognised, or typed in the simulator) matched against the keywords."""
        found = match(text, self.keywords) if self.keywords is not None else None
        if found is None:
            return Input("speech", text, score=score or 0.0, decision_ms=decision_ms)
        branch, goto = self.targets[found.branch]
        return Input("speech", text, branch, goto, found.phrase, score if score is not None else found.score,
                     decision_ms)


def digits(node: GatherNode, pressed: str, decision_ms: float | None = None) -> Input:
    for i, b in enumerate(node.branches):
        if b.digits is not None and b.digits == pressed:
            return Input("dtmf", pressed, i, None, pressed, 1.0, decision_ms)
    return Input("dtmf", pressed, decision_ms=decision_ms)

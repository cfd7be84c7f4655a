"""What a gather listens for: its branches' keywords and digits plus the flow's global keywords,
in the shape the ASR and the text matcher want."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


    def recognised(self, event: Any, decision_ms: float | None = None) -> Input:
        """A recogniser's final event (``asr.engine.AsrEvent``) as the gather's input: its ``branch`` names
        a keyword set of this grammar; None means no match or rejected (``hypothesis`` says what was heard)."""
        if event.branch is None or event.branch not in self.targets:
            heard = event.text or getattr(event, "hypothesis", "")
            return Input("speech", heard, score=event.score, decision_ms=decision_ms)
        branch, goto = self.targets[event.branch]
        return Input("speech", event.text, branch, goto, event.phrase, event.score, decision_ms)


def digits(node: GatherNode, pressed: str, decision_ms: float | None = None) -> Input:
    for i, b in enumerate(node.branches):
        if b.digits is not None and b.digits == pressed:
            return Input("dtmf", pressed, i, None, pressed, 1.0, decision_ms)
    return Input("dtmf", pressed, decision_ms=decision_ms)


def keys_decided(node: GatherNode, keys: str) -> Input | None:
    """Whether the keys pressed so far decide the gather (None: wait for more, up to the inter-digit timeout).

    Final once they are a branch's digits and no longer branch starts with them, or once no branch
    starts with them (a no-match). '#' ends an entry early unless a branch wants it.
    """
    if not keys:
        return None
    wanted = [b.digits for b in node.branches if b.digits]
    longer = [d for d in wanted if d != keys and d.startswith(keys)]
    if keys in wanted and not longer:
        return digits(node, keys, 0.0)
    if keys.endswith("#") and keys not in wanted and len(keys) > 1:
        return digits(node, keys[:-1], 0.0)
    if not longer and keys not in wanted:
        return digits(node, keys, 0.0)
    return None

"""What an IVR flow runs against: a ``Channel`` (a live call, or the simulator) and the per-call state.

The interpreter and the node modules never touch SIP or RTP; a channel does. So one flow runs the
same on a phone call and in ``softswitch ivr simulate``, and the path and keyword hits it records
are the same in both.
"""

from __future__ import annotations

import re
from datetime import datetime
from dataclasses import dataclass, field
from typing import Any, Protocol

from .flow import Flow, GatherNode


_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][\w.]*)\s*\}\}")


@dataclass(frozen=True)
class Input:
    """What the caller did in answer to a gather."""

    kind: str                    # "speech" | "dtmf" | "no_input"
    text: str = ""               # recognised text, or the digits pressed
    branch: int | None = None    # index into the gather's branches (None: global keyword or no match)
    goto: str | None = None      # where a matched global keyword leads
    phrase: str | None = None    # the keyword phrase that matched
    score: float = 0.0
    decision_ms: float | None = None  # end of speech (or key) -> decision


class Channel(Protocol):
    async def say(self, text: str, barge_in: bool) -> None: ...
    async def play(self, file: str, barge_in: bool) -> None: ...
    async def gather(self, node: GatherNode, flow: Flow, prompt: bool) -> Input: ...
    async def transfer(self, target: str, trunk: str | None, *, priority: int = 0,
                       skills: dict[str, int] | None = None,
                       record: bool = False) -> str | None: ...  # None = done, else why not
    async def record_call(self, action: str) -> None: ...  # start | pause | resume the call recording
    async def record(self, max_s: int, beep: bool) -> str | None: ...
    async def hangup(self) -> None: ...


def clock_variables(now: datetime | None = None) -> dict[str, str]:
    """``date``, ``time`` and ``weekday`` (local time) for prompts and conditions, set when the flow starts."""
    now = now or datetime.now().astimezone()
    return {"date": now.strftime("%Y-%m-%d"), "time": now.strftime("%H:%M"),
            "weekday": ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[now.weekday()]}


@dataclass
class Run:
    """One call's state in a flow: variables, the path taken, keyword hits, the gather stack for ``back``."""

    flow: Flow
    channel: Channel
    variables: dict[str, Any] = field(default_factory=dict)
    path: list[str] = field(default_factory=list)
    hits: list[dict[str, Any]] = field(default_factory=list)
    gathers: list[str] = field(default_factory=list)
    result: str = "running"  # "hangup" | "transferred" | "failed: ..." | "ended"

    def render(self, text: str) -> str:
        """``{{variable}}`` placeholders filled from the call's variables (unknown ones become "")."""
        return _PLACEHOLDER.sub(lambda m: str(self.variables.get(m.group(1), "")), text)

    def record_hit(self, node_id: str, found: Input) -> None:
        self.hits.append({"node": node_id, "source": found.kind, "text": found.text, "keyword": found.phrase,
                          "score": round(found.score, 3), "decision_ms": found.decision_ms})

    def summary(self) -> dict[str, Any]:
        return {"flow": self.flow.name, "path": list(self.path), "hits": list(self.hits), "result": self.result}

"""One module per node type: the directory listing is the node list. Each exposes
``async def run(node_id, node, run) -> next node id | None``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import MappingProxyType
from typing import Any

from . import back, branch, gather, goto, hangup, http, play, record, recording, say, set, transfer

Handler = Callable[[str, Any, Any], Awaitable[str | None]]
HANDLERS: MappingProxyType[str, Handler] = MappingProxyType({
    "say": say.run, "play": play.run, "gather": gather.run, "branch": branch.run, "set": set.run,
    "http": http.run, "transfer": transfer.run, "record": record.run, "recording": recording.run,
    "back": back.run, "goto": goto.run, "hangup": hangup.run,
})

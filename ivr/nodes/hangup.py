"""hangup: end the call."""

from __future__ import annotations


async def run(node_id, node, run) -> str | None:
    await run.channel.hangup()
    run.result = "hangup"
    return None

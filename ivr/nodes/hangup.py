"""hangup: end the call."""

from __future__ import annotations


async def run(node_id, node, run) -> str | None:
    run.result = "hangup"  # first: on a live call the CDR is written while the hangup runs
    await run.channel.hangup()
    return None

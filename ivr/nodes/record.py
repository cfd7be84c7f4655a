"""record: voicemail-style recording; the file name goes into a variable."""

from __future__ import annotations


async def run(node_id, node, run) -> str | None:
    run.variables[node.into] = await run.channel.record(node.max_s, node.beep)
    return node.next

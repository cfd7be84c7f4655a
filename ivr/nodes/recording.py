"""recording: start the call recording here, or pause/resume it (e.g. around a card number)."""

from __future__ import annotations


async def run(node_id, node, run) -> str | None:
    await run.channel.record_call(node.action)
    return node.next

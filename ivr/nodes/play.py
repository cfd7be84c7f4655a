"""play: a WAV prompt."""

from __future__ import annotations


async def run(node_id, node, run) -> str | None:
    await run.channel.play(node.file, barge_in=False)
    return node.next

"""say: speak text (TTS) with {{variables}} filled in."""

from __future__ import annotations


async def run(node_id, node, run) -> str | None:
    await run.channel.say(run.render(node.text), barge_in=False)
    return node.next

"""goto: jump to another node."""

from __future__ import annotations


async def run(node_id, node, run) -> str | None:
    return node.target

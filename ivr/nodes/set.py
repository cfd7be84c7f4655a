"""set: assign variables (string values may use {{variables}})."""

from __future__ import annotations


async def run(node_id, node, run) -> str | None:
    for name, value in node.variables.items():
        run.variables[name] = run.render(value) if isinstance(value, str) else value
    return node.next

"""transfer: hand the call to an extension, a number (through a trunk) or a queue."""

from __future__ import annotations


async def run(node_id, node, run) -> str | None:
    try:
        priority = int(run.render(str(node.priority)) or 0)
    except ValueError:  # a {{variable}} that does not hold a number: normal priority, never a failed call
        priority = 0
    problem = await run.channel.transfer(run.render(node.to), node.trunk, priority=priority, skills=node.skills,
                                         record=node.record)
    if problem is None:
        run.result = f"transferred: {node.to}"
        return None
    run.variables["transfer_error"] = problem
    if node.failure is None:
        run.result = f"failed: transfer to {node.to}: {problem}"
    return node.failure

"""back: return to the gather the caller came from (the one before the current gather)."""

from __future__ import annotations


async def run(node_id, node, run) -> str | None:
    if len(run.gathers) >= 2:
        run.gathers.pop()           # the gather that led here
        return run.gathers.pop()    # re-entered below, which pushes it again
    if run.gathers:
        return run.gathers.pop()
    run.result = "failed: back with no previous gather"
    return None

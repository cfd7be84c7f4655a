"""Runs a flow node by node: each node type is one module in ``ivr/nodes`` whose ``run`` returns the
id of the next node (or None when the call leaves the flow)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .flow import Flow
from .nodes import HANDLERS
from .runtime import Channel, Run

log = logging.getLogger("ivr")

MAX_STEPS = 10_000  # the validator rejects silent loops; this is the last net against a bad flow at run time


async def run_flow(flow: Flow, channel: Channel, variables: dict[str, Any] | None = None,
                   run: Run | None = None) -> Run:
    """Run ``flow`` to its end. Pass your own ``run`` to keep the path and hits of a call that is
    cut short (the caller hangs up: the task is cancelled and the result says "abandoned")."""
    if run is None:
        run = Run(flow, channel, dict(variables or {}))
    node_id: str | None = flow.start
    steps = 0
    try:
        while node_id is not None:
            steps += 1
            if steps > MAX_STEPS:
                run.result = "failed: too many steps without an end"
                break
            node = flow.nodes.get(node_id)
            if node is None:
                run.result = f"failed: no node {node_id!r}"
                break
            run.path.append(node_id)
            node_id = await HANDLERS[node.type](node_id, node, run)
        if run.result == "running":
            run.result = "ended"
    except asyncio.CancelledError:
        if run.result == "running":
            run.result = "abandoned"
        raise
    except Exception as exc:  # a flow problem ends this call's flow, never the switch
        log.exception("flow %s failed at %s", flow.name, run.path[-1] if run.path else "-")
        run.result = f"failed: {exc}"
    return run

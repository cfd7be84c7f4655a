"""http: a webhook / CRM look-up; JSON response fields become variables ``<into>.<field>``.

Runs in a worker thread (urllib) so the event loop and every call's media go on meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request


def _fetch(method: str, url: str, headers: dict, body: str | None, timeout: float) -> object:
    data = body.encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - the flow author's URL
        return json.loads(response.read() or b"null")


async def run(node_id, node, run) -> str | None:
    body = run.render(node.body) if node.body is not None else None
    try:
        result = await asyncio.wait_for(asyncio.to_thread(
            _fetch, node.method, run.render(node.url), dict(node.headers), body, node.timeout_s), node.timeout_s + 1)
    except (OSError, ValueError, asyncio.TimeoutError, urllib.error.URLError) as exc:
        run.variables[f"{node.into}.error"] = str(exc) or type(exc).__name__
        return node.failure
    if isinstance(result, dict):
        for key, value in result.items():
            run.variables[f"{node.into}.{key}"] = value
    else:
        run.variables[node.into] = result
    return node.next

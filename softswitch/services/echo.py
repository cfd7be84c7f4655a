"""echo: plays back what the caller says, through the media engine (jitter buffer, G.711 decode and
encode), so a caller hears its own voice about one jitter-buffer depth later."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..calls.call import Call


async def run(call: Call) -> None:
    assert call.session is not None
    call.session.echo = True
    await asyncio.Event().wait()  # until the caller hangs up (the call cancels this task)

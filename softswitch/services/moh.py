"""moh: music on hold — loops the configured prompt until the caller hangs up (what a queue plays)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..media.players import BufferSource, PromptError

if TYPE_CHECKING:
    from ..calls.call import Call


async def run(call: Call) -> None:
    session = call.session
    assert session is not None
    try:
        pcm = await call.sw.media.prompt(call.sw.config.services.moh_prompt)
    except PromptError as exc:
        call.log.error("moh: %s", exc)
        call.hangup(111, "system")
        return
    await session.play(BufferSource(pcm, loop=True))

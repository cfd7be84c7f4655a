"""playback: plays the configured prompt, then hangs up (a prompt-path test for phones and trunks)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..media.players import BufferSource, PromptError, SilenceSource

if TYPE_CHECKING:
    from ..calls.call import Call

TAIL_MS = 300  # let the last packets reach the phone's jitter buffer before the BYE


async def run(call: Call) -> None:
    session = call.session
    assert session is not None
    name = call.sw.config.services.playback_prompt
    try:
        pcm = await call.sw.media.prompt(name)
    except PromptError as exc:
        call.log.error("playback: %s", exc)
        call.hangup(111, "system")  # Q.850 111: protocol error, unspecified
        return
    await session.play(BufferSource(pcm))
    await session.play(SilenceSource(TAIL_MS))
    call.hangup(16, "callee")

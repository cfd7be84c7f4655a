"""agent: the ACD's feature codes (log in, log out, pause with a reason, unpause) dialled from an agent's
phone; the switch applies the code, says what it did, and hangs up."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..media.players import BufferSource, SilenceSource

if TYPE_CHECKING:
    from ..calls.call import Call

TAIL_MS = 300


async def run(call: Call) -> None:
    session = call.session
    assert session is not None
    try:
        text = call.sw.acd.feature_code(call.source.name, call.decision.number)
    except (KeyError, ValueError) as exc:   # e.g. pausing while logged out: say why
        text = f"That did not work: {exc.args[0]}."
        call.log.warning("feature code %s: %s", call.decision.number, exc)
    call.log.info("feature code %s from %s: %s", call.decision.number, call.source.name, text)
    pcm = await call.sw.media.say(text)
    await session.play(BufferSource(pcm))
    await session.play(SilenceSource(TAIL_MS))
    call.hangup(16, "callee")

"""dtmf: speaks back the digits it heard, by any transport (RFC 4733, in-band tones, SIP INFO).

A beep says it is listening; digits are collected until '#' or ``services.dtmf_timeout_s`` without
a key, then read back with TTS ("you pressed 1 2 3"). A key press cuts the read-back (barge-in).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from ..media.dtmf import DtmfEvent
from ..media.players import BufferSource
from ..media.tts import TtsError

if TYPE_CHECKING:
    from ..calls.call import Call

SPOKEN = {"*": "star", "#": "pound"}


def spoken(digits: str) -> str:
    return "You pressed " + ", ".join(SPOKEN.get(d, d) for d in digits) + "."


async def run(call: Call) -> None:
    session = call.session
    assert session is not None
    timeout = call.sw.config.services.dtmf_timeout_s
    events = session.events()
    try:
        await session.play(call.sw.media.tone("beep"))
        while True:
            digits = ""
            while True:
                try:
                    event = await asyncio.wait_for(events.get(), None if not digits else timeout)
                except asyncio.TimeoutError:
                    break
                if not isinstance(event, DtmfEvent):
                    continue
                if event.digit == "#" and digits:
                    break
                digits += event.digit
            call.log.info("dtmf service heard %s", digits)
            try:
                speech = await call.sw.media.say(spoken(digits))
            except TtsError as exc:
                call.log.error("dtmf: %s", exc)
                continue
            await session.play(BufferSource(speech), barge_in={"dtmf"})
    finally:
        session.unsubscribe(events)

"""An IVR flow's ``Channel`` on a live call: prompts, gathers and transfers on the call's media session.

A gather listens for speech and keys at once. What the caller says reaches the recogniser through a
tap on the session; frames heard while a prompt plays are kept for a moment, so a caller who talks
over the prompt (barge-in) is recognised from the first syllable. Keys pressed during a prompt are
type-ahead for the next gather, as on any IVR.
"""

from __future__ import annotations

import asyncio
import logging
import wave
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from asr.engine import FINAL, NO_INPUT, SPEECH_START_EVENT
from ivr.flow import Flow, GatherNode
from ivr.matching import Grammar, digits as digit_input, keys_decided
from ivr.runtime import Input

from ..media.dtmf import DtmfEvent
from ..media.players import BufferSource, PromptError, Source
from ..media.tap import TapClosed
from ..media.tts import TtsError

if TYPE_CHECKING:
    from .call import Call

log = logging.getLogger("softswitch.ivr")

PRE_ROLL_FRAMES = 30   # 600 ms of what the caller said before the recogniser was listening
SILENCE_END_S = 5.0    # a recording ends after this much silence once the caller has spoken
NO_SPEECH_END_S = 8.0  # ... or after this long if the caller never speaks
LOUD = 300             # mean |sample| of a frame with the caller's voice in it
FRAME_S = 0.02


class CallChannel:
    def __init__(self, call: Call, flow: Flow) -> None:
        self.call = call
        self.flow = flow
        self.session = call.session
        self.media = call.sw.media
        self.config = call.sw.config.ivr
        self.loop = call.sw.loop
        self.events = self.session.events()
        self.tap = self.session.tap(maxsize=500)
        self.ring: deque[np.ndarray] = deque(maxlen=PRE_ROLL_FRAMES)
        self.listener: Any = None               # the ASR session of the gather now listening
        self.recording: list[np.ndarray] | None = None
        self.last_loud = 0                      # frames recorded up to the last loud one (0: none yet)
        self.recordings = 0
        self.reader = asyncio.ensure_future(self._read())

    # ------------------------------------------------------------------ audio in
    async def _read(self) -> None:
        """Caller audio to whoever needs it: the listening recogniser, a recording, the pre-roll ring."""
        try:
            while True:
                frame = await self.tap.get()
                if frame.stream != "rx":
                    continue
                pcm = frame.pcm
                if self.recording is not None:
                    self.recording.append(pcm)
                    if np.abs(pcm.astype(np.int32)).mean() > LOUD:
                        self.last_loud = len(self.recording)
                if self.listener is not None:
                    self.listener.feed(pcm)
                else:
                    self.ring.append(pcm)
        except TapClosed:
            return

    # ------------------------------------------------------------------ Channel
    async def say(self, text: str, barge_in: bool) -> None:
        await self._play(await self._speech(text), barge_in)

    async def play(self, file: str, barge_in: bool) -> None:
        await self._play(await self._file(file), barge_in)

    async def _speech(self, text: str) -> Source | None:
        try:
            return BufferSource(await self.media.say(text))
        except TtsError as exc:
            self.call.log.error("ivr: cannot say %r: %s", text[:40], exc)
            return None

    async def _file(self, name: str) -> Source | None:
        path = Path(name)
        if not path.is_absolute():
            path = next((d / path for d in self.call.sw.flows.prompt_dirs(self.flow) if (d / path).is_file()), path)
        try:
            return BufferSource(await self.media.prompt(path))
        except PromptError as exc:
            self.call.log.error("ivr: %s", exc)
            return None

    async def _play(self, source: Source | None, barge_in: bool) -> str:
        if source is None:
            return "failed"
        self.ring.clear()
        return await self.session.play(source, barge_in={"dtmf", "speech"} if barge_in else ())

    async def gather(self, node: GatherNode, flow: Flow, prompt: bool) -> Input:
        grammar = Grammar.of(node, flow)
        how = "finished"
        if prompt:
            p = node.prompt
            how = await self._play(await (self._speech(p.say) if p.say else self._file(p.play or "")), node.barge_in)
        dtmf_ok = "dtmf" in node.input
        keys = self._typeahead() if dtmf_ok else ""
        found = keys_decided(node, keys)
        if found is not None:
            return found
        listener = None
        if grammar.keywords is not None and not keys:
            cfg = self.config
            try:
                listener = self.call.sw.flows.asr().open(
                    grammar.keywords, no_input_ms=int(node.timeout_s * 1000), end_silence_ms=node.end_silence_ms,
                    max_utterance_ms=int(cfg.max_utterance_s * 1000))
            except Exception as exc:  # noqa: BLE001 - no recogniser: keys still work
                self.call.log.error("ivr: speech recognition unavailable: %s", exc)
        return await self._listen(node, grammar, listener, keys, barged=how == "speech")

    def _typeahead(self) -> str:
        keys = ""
        while not self.events.empty():
            event = self.events.get_nowait()
            if isinstance(event, DtmfEvent):
                keys += event.digit
        return keys

    async def _listen(self, node: GatherNode, grammar: Grammar, listener: Any, keys: str, barged: bool) -> Input:
        if listener is not None:
            if barged:  # the caller is already talking: give the recogniser what it missed
                for pcm in self.ring:
                    listener.feed(pcm)
            self.ring.clear()
            self.listener = listener
        key_task: asyncio.Future[Any] = asyncio.ensure_future(self.events.get())
        asr_task: asyncio.Future[Any] | None = (asyncio.ensure_future(listener.events.get())
                                                if listener is not None else None)
        # Without speech the gather's own timeout; with speech the recogniser's no-input decides
        # (plus a margin, should it never answer).
        timeout: float | None = node.timeout_s if listener is None else node.timeout_s + self.config.max_utterance_s + 5
        if keys:
            timeout = self.config.inter_digit_s
        key_at = self.loop.time()
        try:
            while True:
                waiting = {key_task} | ({asr_task} if asr_task is not None else set())
                done, _ = await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    if keys:
                        return digit_input(node, keys, self._ms(key_at))
                    return Input("no_input")
                if key_task in done:
                    event = key_task.result()
                    key_task = asyncio.ensure_future(self.events.get())
                    if isinstance(event, DtmfEvent) and "dtmf" in node.input:
                        keys += event.digit
                        key_at = self.loop.time()
                        if asr_task is not None:  # keys win over speech
                            asr_task.cancel()
                            asr_task = None
                            await self._stop_listening()
                        found = keys_decided(node, keys)
                        if found is not None:
                            return found
                        timeout = self.config.inter_digit_s
                if asr_task is not None and asr_task in done:
                    event = asr_task.result()
                    asr_task = asyncio.ensure_future(listener.events.get())
                    if event.kind == SPEECH_START_EVENT:
                        self.session.stop_playback()
                    elif event.kind == FINAL:
                        return self._speech_input(grammar, event)
                    elif event.kind == NO_INPUT:
                        return Input("no_input")
        finally:
            for task in (key_task, asr_task):
                if task is not None and not task.done():
                    task.cancel()
            if key_task.done() and not key_task.cancelled():  # a key nobody read: keep it for the next gather
                self.events.put_nowait(key_task.result())
            await self._stop_listening()

    def _speech_input(self, grammar: Grammar, event: Any) -> Input:
        end = event.speech_end_time  # when the recogniser got the last voiced frame
        decision_ms = round((self.loop.time() - end) * 1000, 1) if end is not None else None
        return grammar.recognised(event, decision_ms)

    async def _stop_listening(self) -> None:
        listener, self.listener = self.listener, None
        if listener is not None:
            await listener.close()

    def _ms(self, since: float) -> float:
        return round((self.loop.time() - since) * 1000, 1)

    async def transfer(self, target: str, trunk: str | None, *, priority: int = 0,
                       skills: dict[str, int] | None = None, record: bool = False) -> str | None:
        if record:
            self.call.record_at_bridge = True
        return await self.call.transfer(target, trunk, priority=priority, skills=skills)

    async def record_call(self, action: str) -> None:
        if action == "start":
            if self.call.recording is None and self.call.session is not None:
                self.call.start_recording(self.call.session)
                await self.call.recording_beep()
        else:
            self.call.set_recording_paused(action == "pause")

    async def record(self, max_s: int, beep: bool) -> str | None:
        """Voicemail: after a beep, what the caller says until '#', max_s, 5 s of silence after speech, or
        NO_SPEECH_END_S without any."""
        if beep:
            await self.session.play(self.media.tone("beep"))
        self._typeahead()
        self.recording, self.last_loud = [], 0
        key = asyncio.ensure_future(self.events.get())
        try:
            started = self.loop.time()
            deadline = started + max_s
            while self.loop.time() < deadline:
                done, _ = await asyncio.wait({key}, timeout=0.25)
                if done:
                    event = key.result()
                    if isinstance(event, DtmfEvent) and event.digit == "#":
                        break
                    key = asyncio.ensure_future(self.events.get())
                if self.last_loud and len(self.recording) - self.last_loud >= SILENCE_END_S / FRAME_S:
                    break
                if not self.last_loud and self.loop.time() - started >= NO_SPEECH_END_S:
                    break   # nobody speaks (or no media arrives at all): by the clock, not by frames
        finally:
            key.cancel()
            frames, self.recording = self.recording, None
        self.recordings += 1
        path = self.call.sw.config.resolve_path(self.config.recordings_dir) / f"{self.call.id}-{self.recordings}.wav"
        try:
            await asyncio.to_thread(_write_wav, path, frames)
        except OSError as exc:
            self.call.log.error("ivr: cannot write %s: %s", path, exc)
            return None
        self.call.log.info("ivr: recorded %.1f s to %s", len(frames) * FRAME_S, path)
        return str(path)

    async def hangup(self) -> None:
        self.call.hangup(16, "system")

    def close(self) -> None:
        self.reader.cancel()
        self.tap.close()
        self.session.unsubscribe(self.events)
        if self.listener is not None:
            asyncio.ensure_future(self._stop_listening())


def _write_wav(path: Path, frames: list[np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = np.concatenate(frames) if frames else np.zeros(0, np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(pcm.astype("<i2").tobytes())

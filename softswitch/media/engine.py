"""The media engine: owns the media clock, the relay, terminated sessions, prompts, tones and TTS.

One per ``Switch`` (no globals). Relayed calls cost nothing per tick; terminated sessions and taps
join the clock. Loading a prompt reads and resamples a file, so it runs in a worker thread; TTS runs
espeak-ng as a subprocess; neither stalls the media of other calls.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .clock import MediaClock
from .players import PromptCache, Source
from .ports import PortAllocator, bind_pair
from .relay import MediaRelay
from .session import MediaSession
from .stream import JitterSettings
from .tones import ToneCache, tone_source
from .tts import EspeakTts, TtsEngine


@dataclass
class MediaSettings:
    jitter: JitterSettings = field(default_factory=JitterSettings)
    dtmf_inband: bool = True
    tone_country: str = "us"
    tones: Mapping[str, str] = field(default_factory=dict)
    prompts_dir: Path = Path(".")
    tts_cache_dir: Path = Path("data/tts-cache")
    tts_voice: str = "en-us"
    tts_rate: int = 150


class MediaEngine:
    def __init__(self, loop: asyncio.AbstractEventLoop, ip: str, allocator: PortAllocator,
                 settings: MediaSettings | None = None, tts: TtsEngine | None = None) -> None:
        self.loop = loop
        self.ip = ip
        self.settings = settings or MediaSettings()
        self.clock = MediaClock(loop)
        self.allocator = allocator
        self.relay = MediaRelay(loop, ip, allocator, self.clock)
        self.prompts = PromptCache()
        self.tone_cache = ToneCache()
        s = self.settings
        self.tts: TtsEngine = tts or EspeakTts(s.tts_cache_dir, s.tts_voice, s.tts_rate)
        self.cname = f"softswitch@{ip}"
        self._family = socket.AF_INET6 if ipaddress.ip_address(ip).version == 6 else socket.AF_INET
        self.sessions: set[MediaSession] = set()

    async def create_session(self) -> MediaSession:
        """Bind sockets for a terminated stream; ``start`` it once offer/answer settled."""
        port, socks = bind_pair(self.ip, self._family, self.allocator)
        session = MediaSession(self, port, self.allocator.release)
        try:
            for proto, sock in zip((session.rtp, session.rtcp), socks):
                await self.loop.create_datagram_endpoint(lambda p=proto: p, sock=sock)
        except BaseException:
            for proto, sock in zip((session.rtp, session.rtcp), socks):
                if proto.transport is not None:
                    proto.transport.close()
                else:
                    sock.close()
            self.allocator.release(port)
            raise
        self.sessions.add(session)
        return session

    def session_closed(self, session: MediaSession) -> None:
        self.sessions.discard(session)

    # ------------------------------------------------------------------ sources
    def prompt_path(self, name: str | Path) -> Path:
        path = Path(name)
        return path if path.is_absolute() else self.settings.prompts_dir / path

    async def prompt(self, name: str | Path) -> np.ndarray:
        """A WAV prompt as 8 kHz int16 (cached); PromptError names the file if it is unusable."""
        return await asyncio.to_thread(self.prompts.load, self.prompt_path(name))

    async def say(self, text: str, voice: str | None = None, rate: int | None = None) -> np.ndarray:
        return await self.tts.synthesize(text, voice, rate)

    def tone(self, name: str, duration_ms: int | None = None) -> Source:
        """A call-progress tone (ringback, busy, congestion, beep…) of the configured country."""
        return tone_source(name, self.settings.tone_country, self.settings.tones, duration_ms=duration_ms,
                           cache=self.tone_cache)

    # ------------------------------------------------------------------ lifecycle
    def stats(self) -> dict:
        return {**self.clock.stats(), "sessions": len(self.sessions)}

    def close(self) -> None:
        for session in list(self.sessions):
            session.close()
        self.relay.close()
        self.clock.close()

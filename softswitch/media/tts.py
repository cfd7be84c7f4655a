"""Text to speech behind a small interface, with espeak-ng as the bundled engine.

Synthesis spawns a process and takes tens to hundreds of milliseconds, while the same phrases
("please enter your PIN") recur on every call, so results are cached twice: as 8 kHz WAV files on
disk (they survive restarts) and as arrays in a bounded in-memory LRU. Identical requests that
arrive while one synthesis is running wait for it instead of spawning their own. Nothing here
blocks the event loop: the process is awaited, and file reads and writes run in worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import tempfile
import wave
from collections import OrderedDict
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from .players import RATE, PromptError, load_wav

log = logging.getLogger("softswitch.media")

ENGINE = "espeak-ng"
LEAD_KEEP = 40        # samples (5 ms) of silence kept before speech starts
SILENT_LEVEL = 64     # |sample| at or below this (-54 dBFS) is silence


def trim_leading_silence(pcm: np.ndarray) -> np.ndarray:
    """espeak-ng starts every utterance with ~40 ms of silence: an IVR answering a caller should not
    make them wait for it (it is part of the end-of-speech -> next prompt latency)."""
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > SILENT_LEVEL)
    if loud.size == 0:
        return pcm
    start = max(0, int(loud[0]) - LEAD_KEEP)
    return pcm[start:] if start else pcm


class TtsError(Exception):
    """Synthesis failed; the message says why (missing binary, engine error, timeout)."""


@runtime_checkable
class TtsEngine(Protocol):
    async def synthesize(self, text: str, voice: str | None = None, rate: int | None = None) -> np.ndarray:
        """Speech as 8 kHz mono int16."""
        ...


def _write_wav(path: Path, pcm: np.ndarray) -> None:
    """Write via a temporary name and rename, so a crash never leaves a half cache file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tts-", suffix=".wav")
    try:
        with os.fdopen(fd, "wb") as f, wave.open(f, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.writeframes(pcm.astype("<i2").tobytes())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _read_cached(path: Path) -> np.ndarray | None:
    """A cache file's audio, or None when it is absent or unusable (then it is synthesized again)."""
    if not path.exists():
        return None
    try:
        return load_wav(path)
    except PromptError as exc:
        log.warning("tts: ignoring unusable cache file: %s", exc)
        return None


def _new_tmp(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".espeak-", suffix=".wav")
    os.close(fd)
    return Path(tmp)


def _unlink(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


class EspeakTts:
    """espeak-ng through ``asyncio.create_subprocess_exec`` (no shell), cached on disk and in memory."""

    def __init__(self, cache_dir: str | Path, voice: str = "en-us", rate: int = 150, binary: str = "espeak-ng",
                 max_memory_items: int = 256, timeout_s: float = 20.0) -> None:
        self.cache_dir = Path(cache_dir)
        self.voice = voice
        self.rate = rate
        self.binary = binary
        self.max_memory_items = max_memory_items
        self.timeout_s = timeout_s
        self._memory: OrderedDict[str, np.ndarray] = OrderedDict()
        self._inflight: dict[str, asyncio.Task[np.ndarray]] = {}
        self.spawns = 0        # processes started, for stats and tests
        self.disk_hits = 0
        self.memory_hits = 0

    @staticmethod
    def cache_key(voice: str, rate: int, text: str) -> str:
        return hashlib.sha256(json.dumps([ENGINE, voice, rate, text]).encode()).hexdigest()

    def cache_path(self, voice: str, rate: int, text: str) -> Path:
        return self.cache_dir / f"{self.cache_key(voice, rate, text)}.wav"

    async def synthesize(self, text: str, voice: str | None = None, rate: int | None = None) -> np.ndarray:
        """Speech for ``text`` as a read-only 8 kHz mono int16 array (shared; do not modify)."""
        if not text or not text.strip():
            raise ValueError("text to synthesize is empty")
        if "\0" in text:
            raise ValueError("text to synthesize contains a NUL character")
        voice = voice or self.voice
        rate = rate or self.rate
        if not isinstance(rate, int) or rate <= 0:
            raise ValueError(f"rate must be a positive integer (words per minute), got {rate!r}")
        key = self.cache_key(voice, rate, text)
        pcm = self._memory.get(key)
        if pcm is not None:
            self._memory.move_to_end(key)
            self.memory_hits += 1
            return pcm
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._produce(key, voice, rate, text))
            self._inflight[key] = task
            task.add_done_callback(lambda _t, k=key: self._inflight.pop(k, None))
        # shield: one caller giving up (hang-up) must not cancel the synthesis others wait for
        return await asyncio.shield(task)

    async def _produce(self, key: str, voice: str, rate: int, text: str) -> np.ndarray:
        path = self.cache_dir / f"{key}.wav"
        pcm = await asyncio.to_thread(_read_cached, path)
        if pcm is not None:
            self.disk_hits += 1
        else:
            pcm = trim_leading_silence(await self._run_espeak(voice, rate, text))
            try:
                await asyncio.to_thread(_write_wav, path, pcm)
            except OSError as exc:  # a read-only or full disk costs speed, not the prompt
                log.warning("tts: cannot write cache file %s: %s", path, exc)
        pcm = trim_leading_silence(pcm)  # (files cached by older versions still have it)
        pcm.flags.writeable = False
        self._memory[key] = pcm
        while len(self._memory) > self.max_memory_items:
            self._memory.popitem(last=False)
        return pcm

    async def _run_espeak(self, voice: str, rate: int, text: str) -> np.ndarray:
        try:
            tmp = await asyncio.to_thread(_new_tmp, self.cache_dir)
        except OSError as exc:
            raise TtsError(f"cannot use TTS cache directory {self.cache_dir}: {exc}") from None
        try:
            try:
                proc = await asyncio.create_subprocess_exec(
                    self.binary, "-v", voice, "-s", str(rate), "-w", str(tmp), "--", text,
                    stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.PIPE)
            except FileNotFoundError:
                raise TtsError(f"{self.binary} not found: install the Debian package 'espeak-ng' "
                               f"(apt-get install espeak-ng)") from None
            except PermissionError:
                raise TtsError(f"{self.binary} is not executable") from None
            self.spawns += 1
            try:
                _, stderr = await asyncio.wait_for(proc.communicate(), self.timeout_s)
            except asyncio.TimeoutError:
                raise TtsError(f"{self.binary} timed out after {self.timeout_s:g} s "
                               f"(voice {voice!r}, {len(text)} characters)") from None
            finally:
                if proc.returncode is None:  # timed out or cancelled: do not leave it running
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    await asyncio.shield(proc.wait())
            err = stderr.decode(errors="replace").strip()
            if proc.returncode != 0:
                raise TtsError(f"{self.binary} failed (exit {proc.returncode}, voice {voice!r}): "
                               f"{err or 'no error output'}")
            try:
                return await asyncio.to_thread(load_wav, tmp)
            except PromptError as exc:
                raise TtsError(f"{self.binary} produced no usable audio ({exc.problem})"
                               + (f": {err}" if err else "")) from None
        finally:
            await asyncio.to_thread(_unlink, tmp)

    def clear_memory(self) -> None:
        self._memory.clear()

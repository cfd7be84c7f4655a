#!/usr/bin/env python3
"""Concurrent IVR calls doing live speech recognition on ONE core, and end of speech -> next prompt latency.

  SIPp uac (bench/scenarios/uac_ivr.xml: PCMU, 20 ms packets, a looped 5 s clip: 1 s silence, espeak-ng saying
  "credit card" in the telephone band, silence) -> softswitch, route `ivr` -> flow:ivr_bench
  (bench/flows/ivr_bench.yaml)                                                          pinned: taskset -c 0
  SIPp runs on core 1, and so does this script with its probe calls. The flow is one speech + DTMF gather whose
  every exit (keyword, no match, no input, attempts used up) loops back to it through a short `say`, so each
  call stays in live recognition (webrtcvad endpointing on the event loop, PocketSphinx decoding in the switch's
  `asr_workers` decoder processes, children of the pinned switch that inherit its core: "one core" includes the
  decoding, and their CPU is counted with the switch's) for as long as it is held.
  Every call says the keyword every 5 s; the switch answers each recognition with "Credit card, got it."

For each step of concurrent calls N (--steps), a freshly started switch gets N SIPp calls, opened evenly over one
period of the clip (N / 5 CPS) so that their keywords are spread over it rather than all spoken at once,
plus two probe calls placed by this script (raw SIP/RTP over UDP from an asyncio loop in a thread):
  - the latency probe dials the same flow and streams the same clip at a steady 20 ms pace; for each keyword it
    sent, latency = arrival of the first non-silent RTP packet from the switch after the send time of the clip's
    last speech packet (speech end found by energy, the switch VAD's -55 dBFS floor). That is the caller's view
    of end of speech -> first packet of the next prompt: the endpointer's wait (the recogniser's early endpoint,
    or the gather's end_silence_ms),
    the decode, the hand-back to the event loop, the start of the prompt and the jitter/tick on the way out;
  - the peer probe dials the `echo` service with the same clip: first speech packet sent -> first non-silent
    packet back = the switch's bare media path under the same load, for comparison.
The switch logs media-clock counters on SIGUSR1 (late frames: sent > 10 ms after their tick was due); the
script signals it at both ends of the window. From the CDRs (`softswitch cdr --format json`, `ivr.hits`): the
recognitions per call, the recognition rate and the switch's own decision_ms (end of speech -> decision).
A step passes with late % < 0.5 %, recognition rate >= 90 %, every call answered and >= 95 % of them up
through the window. Steps go up until one fails, then one halfway back. Then, as the CPU peer measured in the
same run, the same SIPp callers dial `moh` (terminated media, no recognition: bench/media_calls.py's service)
at the best N: the IVR's CPU per call over that is what recognition costs.

Prints one JSON object and rewrites the ``ivr_calls`` section of docs/benchmarks.md (``--doc`` for another file).
Run: ``python bench/ivr_calls.py`` (about 6-8 minutes), ``--quick`` for a smoke test, ``--no-write`` to leave
the docs alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (CALL_PORTS as PORT, CALL_RTP_RANGE as RTP_RANGE, REPO, SCENARIOS, SIPP,  # noqa: E402
                     SIPP_BUFF, SIPP_CPU, DropTracker, Proc, Processes, add_output_options, add_step_options,
                     best_step, calls_in_window, climb_steps, halfway_back, commands_block, core_cell, first_lines, headline,
                     hold_window, keep_off_switch_core, limit_line, log_problems, log_problems_line, machine_info,
                     make_workdir, md_table, parse_steps, pinned_command, render_saved, run_and_report, run_fields,
                     run_paragraph, say, softnet_dropped, start_switch, status_cell, step_switch,
                     step_timing, summarize_steps, switch_config, uac_figures, wait_cdrs)
from harness import check_stats_log_level, prefer_checkout  # noqa: E402
from media_calls import switch_stats, window_figures  # noqa: E402 - the same SIGUSR1 counters and window maths

SERVICE = "ivr"
FLOW = Path(__file__).resolve().parent / "flows" / "ivr_bench.yaml"
KEYWORD = "credit card"
PERIOD_S = 5.0                        # one keyword every 5 s
LEAD_S = 1.0                          # silence before the keyword in each period
SPEECH_DBFS = -55.0                   # a 20 ms frame at or above this RMS is speech (the switch VAD's floor)
HEARD_DBFS = -60.0                    # a received packet above this RMS is not the switch's idle silence
QUIET_BEFORE = 15                     # a response starts with a loud packet after >= 15 silent ones (300 ms):
                                      # longer than any pause inside the prompts ("Credit card, got it." has 180 ms)
MAX_LATE = 0.005
MIN_RECOGNISED = 0.90
MIN_HELD = 0.95
DECIDE_MARGIN_S = 1.0                 # an utterance counts as sent if it ended >= 1 s before the call's BYE
GOAL_CALLS, GOAL_P50_MS = 50, 300
PROBE_PORTS = (30000, 30998)          # the probes' RTP (even) + RTCP ports, below the switch's range
PPS = 50


# ---------------------------------------------------------------------------------------------- audio
def _ulaw_table() -> np.ndarray:
    out = np.zeros(256, np.int16)
    for i in range(256):
        u = ~i & 0xFF
        t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
        out[i] = (0x84 - t) if u & 0x80 else (t - 0x84)
    return out


ULAW = _ulaw_table()


def ulaw_dbfs(payload: bytes) -> float:
    x = ULAW[np.frombuffer(payload, np.uint8)].astype(np.float64)
    rms = float(np.sqrt(np.mean(x * x))) if x.size else 0.0
    return 20 * np.log10(rms / 32768.0) if rms > 0 else -120.0


def make_speech(work: Path, text: str = KEYWORD) -> dict:
    """espeak-ng -> telephone band 8 kHz (as tests/peers/audio.py) -> one PERIOD_S clip -> raw PCMU for SIPp's
    rtp_stream (WORK/ivr_speech.ulaw, read by the probes too). Speech start/end found by energy in the PCMU
    as the switch will decode it: the first/last 20 ms frame at or above SPEECH_DBFS."""
    wav, clip = work / "ivr_speech_raw.wav", work / "ivr_speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), text], check=True, capture_output=True)
    subprocess.run(["sox", str(wav), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer", str(clip),
                    "sinc", "300-3400", "pad", f"{LEAD_S:g}", f"{PERIOD_S:g}", "trim", "0", f"{PERIOD_S:g}"],
                   check=True, capture_output=True)
    ulaw = work / "ivr_speech.ulaw"
    subprocess.run(["sox", str(clip), "-t", "ul", "-r", "8000", "-c", "1", str(ulaw)], check=True, capture_output=True)
    data = ulaw.read_bytes()
    frames = [data[i:i + 160] for i in range(0, len(data) - 159, 160)]
    loud = [i for i, f in enumerate(frames) if ulaw_dbfs(f) >= SPEECH_DBFS]
    if not loud:
        raise RuntimeError(f"espeak-ng produced no speech for {text!r}")
    return {"text": text, "period_s": len(frames) / PPS, "frames": len(frames), "first_speech_frame": loud[0],
            "last_speech_frame": loud[-1], "speech_start_s": loud[0] / PPS, "speech_end_s": (loud[-1] + 1) / PPS,
            "espeak": "espeak-ng -v en-us -s 150; sox sinc 300-3400, 8 kHz; PCMU"}


def prompt_lead_ms(text: str) -> float | None:
    """Leading silence (below HEARD_DBFS) of `text` as the switch plays it (espeak-ng, leading silence trimmed):
    part of any prompt-start latency."""
    with tempfile.TemporaryDirectory(prefix="ivr-lead-") as tmp:
        raw, out = Path(tmp) / "a.wav", Path(tmp) / "b.wav"
        try:
            subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), text], check=True,
                           capture_output=True)  # the switch's TTS defaults: voice en-us, rate 150
            subprocess.run(["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", str(out)], check=True,
                           capture_output=True)
            with wave.open(str(out)) as w:
                pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
            from softswitch.media.tts import trim_leading_silence  # what the switch does to every TTS prompt
            x = trim_leading_silence(pcm).astype(np.float64)
        except (OSError, subprocess.CalledProcessError, wave.Error):
            return None
    for i in range(0, len(x) - 159, 160):
        f = x[i:i + 160]
        if 20 * np.log10(max(1e-9, float(np.sqrt(np.mean(f * f)))) / 32768.0) > HEARD_DBFS:
            return i / 8.0
    return None


GIL_PROBE = r"""
import json, sys, threading, time, wave
import numpy as np
from asr.keywords import KeywordSet
from asr.pocketsphinx_engine import PocketSphinxEngine
e = PocketSphinxEngine()
with wave.open(sys.argv[1]) as w:
    x = np.frombuffer(w.readframes(w.getnframes()), "<i2")
x = x[int(float(sys.argv[2]) * 8000) - 1600:int(float(sys.argv[3]) * 8000) + 3200]
g = e.grammar_for(KeywordSet({"card": ["credit card"], "account": ["bank account"]}))
e.recognise(x, g)
t = time.perf_counter()
for _ in range(5):
    text, _ = e.recognise(x, g)
decode = (time.perf_counter() - t) / 5
gaps, stop = [], False
def tick():
    last = time.perf_counter()
    while not stop:
        time.sleep(0.001)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now
th = threading.Thread(target=tick)
th.start()
time.sleep(0.05)
for _ in range(5):
    e.recognise(x, g)
stop = True
th.join()
print(json.dumps({"text": text, "decode_ms": round(1000 * decode, 1), "ticker_max_gap_ms": round(1000 * max(gaps), 1),
                  "audio_s": round(len(x) / 8000, 2)}))
"""


def gil_probe(work: Path, speech: dict) -> dict | None:
    """How long one PocketSphinx decode of the bench's utterance takes, and how long a thread that wants the GIL
    every 1 ms is kept waiting meanwhile (= the event loop's stall per decode when decoding runs in its threads).
    Runs in a subprocess on core 1 (this script's core), away from the switch."""
    out = subprocess.run(["taskset", "-c", str(SIPP_CPU), sys.executable, "-c", GIL_PROBE,
                          str(work / "ivr_speech.wav"), str(speech["speech_start_s"]), str(speech["speech_end_s"])],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    try:
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        say(f"gil probe failed: {out.stderr.strip()[-300:]}")
        return None


# ---------------------------------------------------------------------------------------------- the switch
def flow_file(work: Path, end_silence_ms: int | None) -> tuple[Path, dict]:
    """bench/flows/ivr_bench.yaml copied into WORK/flows (with --end-silence-ms applied); its gather's settings."""
    data = yaml.safe_load(FLOW.read_text())
    gather = data["nodes"]["listen"]
    flows = work / "flows"
    flows.mkdir(exist_ok=True)
    if end_silence_ms is not None and end_silence_ms != gather.get("end_silence_ms"):
        text = FLOW.read_text()
        if "end_silence_ms" in gather:
            text = re.sub(r"(?m)^(\s+end_silence_ms:) *\d+", rf"\g<1> {end_silence_ms}", text, count=1)
        else:  # the gather's settings are the first keys indented under `listen:` with `type: gather`
            text = re.sub(r"(?m)^(\s+)type: gather\n", rf"\g<0>\g<1>end_silence_ms: {end_silence_ms}\n", text,
                          count=1)
        (flows / FLOW.name).write_text(text)
        gather["end_silence_ms"] = end_silence_ms
    else:
        shutil.copy(FLOW, flows / FLOW.name)
    out = subprocess.run([sys.executable, "-m", "softswitch", "ivr", "validate", str(flows / FLOW.name)],
                         capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        raise RuntimeError(f"the bench flow does not validate:\n{out.stdout}{out.stderr}")
    says = [n["text"] for n in data["nodes"].values() if n.get("type") == "say"]
    try:  # the recogniser's tentative endpoint, if this checkout's engine has one (asr.engine.EARLY_SILENCE_MS)
        from asr.engine import EARLY_SILENCE_MS as early  # noqa: PLC0415
    except ImportError:
        early = None
    return flows, {"end_silence_ms": gather.get("end_silence_ms", 800), "early_silence_ms": early,
                   "endpoint_ms": min(x for x in (gather.get("end_silence_ms", 800), early) if x),
                   "timeout_s": gather.get("timeout_s", 5.0),
                   "barge_in": gather.get("barge_in", True), "prompt": gather["prompt"].get("say"),
                   "answer": says[0] if says else None}


def ivr_config(flows: Path, moh: Path, asr_threads: int, log_level: str) -> str:
    """harness.switch_config plus the routes `ivr` (the bench flow), `echo` (probe peer) and `moh` (CPU peer)."""
    text = switch_config(PORT["switch"], PORT["uas"], RTP_RANGE, db="data/ivr_calls.db", log_level=log_level)
    return text + f"""
[[routes]]
name = "ivr"
exact = "{SERVICE}"
source = "any"
to = "flow:{FLOW.stem}"

[[routes]]
name = "echo"
exact = "echo"
source = "any"
to = "service:echo"

[[routes]]
name = "moh"
exact = "moh"
source = "any"
to = "service:moh"

[services]
moh_prompt = "{moh}"

[ivr]
flows_dir = "{flows}"
asr_engine = "pocketsphinx"
asr_workers = {asr_threads}
"""


def uac_ivr_argv(service: str, calls: int, rate: float, hold_ms: int, stat: Path, err: Path) -> list[str]:
    """SIPp as the callers (bench/scenarios/uac_ivr.xml): N calls streaming WORK/ivr_speech.ulaw, held HOLD ms."""
    return [SIPP, "-nostdin", "-sf", str(SCENARIOS / "uac_ivr.xml"), "-i", "127.0.0.1", "-p", str(PORT["uac"]),
            "-cp", str(PORT["uac_cp"]), "-mp", str(PORT["uac_media"]), "-s", service, "-r", f"{rate:g}",
            "-m", str(calls), "-l", str(calls), "-d", str(hold_ms), "-recv_timeout", "32000", *SIPP_BUFF,
            "-trace_stat", "-stf", str(stat), "-fd", "5", "-trace_err", "-error_file", str(err),
            "-max_log_size", "1000000", f"127.0.0.1:{PORT['switch']}"]


# ---------------------------------------------------------------------------------------------- the probe
class _Udp(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, float], None]) -> None:
        self.on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr) -> None:
        self.on_datagram(data, time.monotonic())

    def error_received(self, exc: Exception) -> None:
        pass


class ProbeCall:
    """One call from raw SIP over UDP (INVITE with PCMU SDP, ACK, BYE) whose RTP plays the clip in a loop at a
    steady 20 ms pace and timestamps every packet it sends and receives (time.monotonic())."""

    def __init__(self, name: str, service: str, clip: bytes, speech: dict) -> None:
        self.name, self.service, self.clip, self.speech = name, service, clip, speech
        self.call_id = f"{name}-{uuid.uuid4().hex[:12]}@127.0.0.1"
        self.tag = uuid.uuid4().hex[:10]
        self.sent: list[tuple[float, int]] = []          # (send time, clip frame index)
        self.heard: list[float] = []                     # arrival times of onsets: loud after QUIET_BEFORE silent
        self._quiet = QUIET_BEFORE
        self.received = 0
        self.error: str | None = None
        self.answered_at: float | None = None
        self._sip_q: asyncio.Queue[str] = asyncio.Queue()

    # -- SIP
    def _headers(self, method: str, cseq: int, to_tag: str | None) -> str:
        return (f"Via: SIP/2.0/UDP 127.0.0.1:{self.sip_port};branch=z9hG4bK{uuid.uuid4().hex};rport\r\n"
                f"Max-Forwards: 70\r\nFrom: <sip:{self.name}@127.0.0.1:{self.sip_port}>;tag={self.tag}\r\n"
                f"To: <sip:{self.service}@127.0.0.1:{PORT['switch']}>{';tag=' + to_tag if to_tag else ''}\r\n"
                f"Call-ID: {self.call_id}\r\nCSeq: {cseq} {method}\r\n"
                f"Contact: <sip:{self.name}@127.0.0.1:{self.sip_port}>\r\n")

    def _send_sip(self, text: str) -> None:
        self.sip.sendto(text.encode(), ("127.0.0.1", PORT["switch"]))

    def _on_sip(self, data: bytes, _t: float) -> None:
        text = data.decode(errors="replace")
        if text.startswith("SIP/2.0 "):
            self._sip_q.put_nowait(text)
        elif text.startswith("BYE ") or text.startswith("OPTIONS "):  # answer in-dialog requests with 200
            head = text.split("\r\n\r\n", 1)[0].split("\r\n")
            keep = [h for h in head[1:] if h.split(":", 1)[0].lower() in ("via", "from", "to", "call-id", "cseq")]
            self._send_sip("SIP/2.0 200 OK\r\n" + "\r\n".join(keep) + "\r\nContent-Length: 0\r\n\r\n")
            if text.startswith("BYE "):
                self.error = self.error or "the switch hung up"

    async def _response(self, cseq_method: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = await asyncio.wait_for(self._sip_q.get(), max(0.01, deadline - time.monotonic()))
            code = int(text[8:11])
            if f" {cseq_method}" in _header(text, "CSeq") and code >= 200:
                return text

    # -- RTP
    def _on_rtp(self, data: bytes, t: float) -> None:
        if len(data) < 12 or data[0] >> 6 != 2 or (data[1] & 0x7F) != 0:
            return
        self.received += 1
        cc = data[0] & 0x0F
        if ulaw_dbfs(data[12 + 4 * cc:]) > HEARD_DBFS:
            if self._quiet >= QUIET_BEFORE:
                self.heard.append(t)
            self._quiet = 0
        else:
            self._quiet += 1

    async def _stream(self, until: float) -> None:
        ssrc, seq, ts = random.getrandbits(32), random.getrandbits(16), random.getrandbits(32)
        nframes = len(self.clip) // 160
        t0, i = time.monotonic(), 0
        while True:
            due = t0 + i * 0.02
            if due >= until:
                return
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            k = i % nframes
            header = bytes([0x80, 0x80 if i == 0 else 0x00]) + ((seq + i) & 0xFFFF).to_bytes(2, "big") + \
                ((ts + 160 * i) & 0xFFFFFFFF).to_bytes(4, "big") + ssrc.to_bytes(4, "big")
            self.rtp.sendto(header + self.clip[k * 160:(k + 1) * 160], self.remote_rtp)
            self.sent.append((time.monotonic(), k))
            i += 1

    async def run(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        sip_t, _ = await loop.create_datagram_endpoint(lambda: _Udp(self._on_sip), local_addr=("127.0.0.1", 0))
        self.sip = sip_t
        self.sip_port = sip_t.get_extra_info("sockname")[1]
        self.rtp = rtcp = None
        for port in random.sample(range(PROBE_PORTS[0], PROBE_PORTS[1], 2), 200):
            try:
                self.rtp, _ = await loop.create_datagram_endpoint(lambda: _Udp(self._on_rtp),
                                                                  local_addr=("127.0.0.1", port))
                rtcp, _ = await loop.create_datagram_endpoint(lambda: _Udp(lambda d, t: None),
                                                              local_addr=("127.0.0.1", port + 1))
                break
            except OSError:
                if self.rtp is not None:
                    self.rtp.close()
                    self.rtp = None
        if self.rtp is None:
            self.error = "no free RTP port pair"
            sip_t.close()
            return
        rtp_port = self.rtp.get_extra_info("sockname")[1]
        try:
            await self._call(rtp_port, seconds)
        except (asyncio.TimeoutError, ValueError, IndexError) as exc:
            self.error = self.error or f"{type(exc).__name__}: {exc}"
        finally:
            for t in (self.rtp, rtcp, sip_t):
                if t is not None:
                    t.close()

    async def _call(self, rtp_port: int, seconds: float) -> None:
        sdp = (f"v=0\r\no=probe 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
               f"m=audio {rtp_port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\n")
        uri = f"sip:{self.service}@127.0.0.1:{PORT['switch']}"
        invite = (f"INVITE {uri} SIP/2.0\r\n" + self._headers("INVITE", 1, None) +
                  f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}")
        ok = None
        for attempt in range(6):  # Timer A by hand: 0.5, 1, 2 ... s
            self._send_sip(invite)
            try:
                ok = await self._response("INVITE", 0.5 * 2 ** attempt)
                break
            except asyncio.TimeoutError:
                continue
        if ok is None or not ok.startswith("SIP/2.0 200"):
            self.error = f"INVITE: {ok.splitlines()[0] if ok else 'no final response'}"
            return
        to_tag = _header(ok, "To").split("tag=", 1)[1].split(";")[0].strip()
        body = ok.split("\r\n\r\n", 1)[1]
        ip = next(ln[9:].strip() for ln in body.splitlines() if ln.startswith("c=IN IP4 "))
        port = int(next(ln for ln in body.splitlines() if ln.startswith("m=audio ")).split()[1])
        self.remote_rtp = (ip, port)
        contact = _header(ok, "Contact").strip().strip("<>").split(">")[0] or uri
        self._send_sip(f"ACK {contact} SIP/2.0\r\n" + self._headers("ACK", 1, to_tag) + "Content-Length: 0\r\n\r\n")
        self.answered_at = time.monotonic()
        await self._stream(self.answered_at + seconds)
        if self.error:  # the switch hung up
            return
        bye = f"BYE {contact} SIP/2.0\r\n" + self._headers("BYE", 2, to_tag) + "Content-Length: 0\r\n\r\n"
        for attempt in range(4):
            self._send_sip(bye)
            try:
                await self._response("BYE", 0.5 * 2 ** attempt)
                return
            except asyncio.TimeoutError:
                continue

    # -- figures
    def utterances(self) -> list[tuple[float, float]]:
        """(send time of the first, of the last speech packet) of every complete keyword sent."""
        first, last = self.speech["first_speech_frame"], self.speech["last_speech_frame"]
        out, start = [], None
        for t, k in self.sent:
            if k == first:
                start = t
            elif k == last and start is not None:
                out.append((start, t))
                start = None
        return out

    def latencies(self, since: float, until: float, mode: str) -> tuple[list[float], int]:
        """(latencies in ms, utterances with no answer within 3 s) for keywords that ended in [since, until].
        mode "prompt": last speech packet sent -> first onset received after it;
        mode "echo": first speech packet sent -> first onset received after it.
        An onset is a non-silent packet after >= QUIET_BEFORE silent ones: the start of a prompt (or of the echoed
        keyword), never the tail of one still playing."""
        heard = np.asarray(self.heard)
        out, missed = [], 0
        for start, end in self.utterances():
            if not since <= end <= until:
                continue
            ref = end if mode == "prompt" else start
            i = int(np.searchsorted(heard, ref, side="right"))
            if i < len(heard) and heard[i] - ref <= 3.0:
                out.append(round(1000 * (heard[i] - ref), 1))
            else:
                missed += 1
        return out, missed


def _header(msg: str, name: str) -> str:
    for line in msg.split("\r\n\r\n", 1)[0].split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return ""


def run_probes(probes: list[ProbeCall], seconds: float) -> threading.Thread:
    """The probe calls on their own asyncio loop in a thread of this script (core 1): started now, each held
    for ``seconds`` after it is answered."""
    async def main() -> None:
        await asyncio.gather(*(p.run(seconds) for p in probes))
    th = threading.Thread(target=asyncio.run, args=(main(),), name="probes", daemon=True)
    th.start()
    return th


def pct(values: list[float], q: float) -> float | None:
    """The q-quantile (0..1) by linear interpolation; None without values."""
    if not values:
        return None
    v = sorted(values)
    pos = q * (len(v) - 1)
    lo = int(pos)
    return round(v[lo] + (v[min(lo + 1, len(v) - 1)] - v[lo]) * (pos - lo), 1)


# ---------------------------------------------------------------------------------------------- CDRs
def recognition_figures(cdrs: list[dict], speech: dict, wall0: float | None, wall1: float | None) -> dict:
    """Per answered SIPp call: keywords it sent (each utterance whose end, counted from answer_ts, lies
    >= DECIDE_MARGIN_S before the call's end_ts) and what the switch made of them (ivr.hits)."""
    answered = [c for c in cdrs if c.get("disposition") == "ANSWERED"]
    sent = right = wrong = nomatch = noinput = 0
    decision: list[float] = []
    results: dict[str, int] = {}
    per_call: list[int] = []
    for c in answered:
        ivr = c.get("ivr") or {}
        results[str(ivr.get("result"))] = results.get(str(ivr.get("result")), 0) + 1
        if c.get("answer_ts") and c.get("end_ts"):
            usable = c["end_ts"] - c["answer_ts"] - speech["speech_end_s"] - DECIDE_MARGIN_S
            sent += int(usable // speech["period_s"]) + 1 if usable >= 0 else 0
        hits = ivr.get("hits") or []
        mine = 0
        for h in hits:
            if h.get("source") == "none":
                noinput += 1
            elif h.get("keyword") == KEYWORD:
                right += 1
                mine += 1
                if isinstance(h.get("decision_ms"), (int, float)):
                    decision.append(h["decision_ms"])
            elif h.get("keyword"):
                wrong += 1
            elif h.get("source") == "speech":
                nomatch += 1
        per_call.append(mine)
    out = {"answered_cdrs": len(answered), "utterances_sent": sent, "recognised": right,
           "recognition_pct": round(100 * right / sent, 1) if sent else None,
           "wrong_keyword": wrong, "no_match": nomatch, "no_input": noinput,
           "recognitions_per_call": round(right / len(answered), 2) if answered else None,
           "recognitions_per_call_min": min(per_call) if per_call else None,
           "decision_ms_p50": pct(decision, 0.5), "decision_ms_p95": pct(decision, 0.95),
           "decision_ms_max": max(decision) if decision else None, "decisions": len(decision),
           "flow_results": results,
           "rx_packets": sum(((c.get("legs") or [{}])[0].get("rtp") or {}).get("packets_in", 0) or 0
                             for c in answered)}
    if wall0 is not None and wall1 is not None:
        out.update(calls_in_window(answered, wall0, wall1))
    return out


# ---------------------------------------------------------------------------------------------- one step
def setup_rate(n: int, args: argparse.Namespace, speech: dict) -> float:
    """Calls are opened evenly over one period of the clip (N / 5 CPS, at most --setup-cps), so their keywords
    fall at every phase of the period instead of all at once (real callers are not synchronised, and N decodes
    queued at the same moment would measure a burst, not a load)."""
    return min(args.setup_cps, max(0.2, n / speech["period_s"]))


def aligned_hold(n: int, args: argparse.Namespace, speech: dict) -> tuple[float, int]:
    """step_timing's (ramp, hold ms) at setup_rate, the hold lengthened so that each call's BYE comes half a period
    after the end of one of its keywords (mid-silence): no utterance is cut by the hang-up, and the last one
    counted had period/2 (2.5 s) to be decided."""
    ramp, hold_ms = step_timing(n, argparse.Namespace(**{**vars(args), "setup_cps": setup_rate(n, args, speech)}))
    period, end = speech["period_s"], speech["speech_end_s"]
    k = max(0, -(-(hold_ms / 1000 - end - period / 2) // period))
    return ramp, int(round(1000 * (end + period / 2 + k * period)))


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def children_cpu(proc: Proc) -> float:
    """CPU seconds of the switch's child processes, which its own utime/stime leave out: those that exited and
    were waited for (cutime + cstime: espeak-ng runs) plus every live descendant (e.g. a decoding process pool)."""
    tck = os.sysconf("SC_CLK_TCK")
    fields = _stat_fields(proc.pid)
    if fields is None:
        return 0.0
    total = (int(fields[13]) + int(fields[14])) / tck
    todo, seen = [proc.pid], set()
    while todo:
        pid = todo.pop()
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                kids = Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
            except OSError:
                continue
            for kid in map(int, kids):
                if kid in seen:
                    continue
                seen.add(kid)
                todo.append(kid)
                f = _stat_fields(kid)
                if f is not None:
                    total += (int(f[11]) + int(f[12])) / tck
    return total


def run_step(procs: Processes, work: Path, switch: Proc, config: Path, n: int, args: argparse.Namespace,
             speech: dict, service: str = SERVICE) -> dict:
    """N SIPp calls to ``service`` (+ the two probe calls when it is the IVR) held through the window."""
    base = work / f"{service}-{n}"
    ramp, hold_ms = aligned_hold(n, args, speech)
    softnet0 = softnet_dropped()
    clip = (work / "ivr_speech.ulaw").read_bytes()
    probes = [ProbeCall("ivrprobe", SERVICE, clip, speech), ProbeCall("echoprobe", "echo", clip, speech)] \
        if service == SERVICE and not args.no_probe else []
    rate = setup_rate(n, args, speech)
    uac = procs.start("uac", uac_ivr_argv(service, n, rate, hold_ms, Path(f"{base}-uac.csv"),
                      Path(f"{base}-uac-err.log")), work, Path(f"{base}-uac.out"), cpu=SIPP_CPU)
    t0 = time.monotonic()
    probe_thread = run_probes(probes, ramp + args.settle + args.window + 0.5) if probes else None
    tracker = DropTracker({"switch": (switch, RTP_RANGE)})
    snaps: dict[str, dict | None] = {}
    sipp_cpu: dict[str, float] = {}

    def snapshot(key: str) -> Callable[[float], None]:
        def take(now: float) -> None:
            snaps[key] = switch_stats(switch)
            sipp_cpu[key] = uac.cpu_seconds()
            sipp_cpu["children_" + key] = children_cpu(switch)
        return take
    try:
        hold_window(uac, tracker, ramp, hold_ms, args, snapshot("s0"), snapshot("s1"))  # (ramp already at rate)
    finally:
        procs.stop(uac)
        if probe_thread is not None:
            probe_thread.join(30)
    st, res = uac_figures(Path(f"{base}-uac.csv"), n, hold_ms)
    res.update({"service": service, "setup_cps": round(rate, 2), "sipp_failures": st.failures if st else {},
                "softnet_backlog_drops": softnet_dropped() - softnet0,
                "switch_socket_drops": tracker.drops("switch"), "alive": switch.alive()})
    s0, s1 = snaps.get("s0"), snaps.get("s1")
    if s0 and s1:
        res.update(window_figures(s0, s1))
        # The event loop's run-queue wait counts the switch's own decoder processes here (they share its core), so only
        # other tasks and the hypervisor mark a step as contended.
        res["contended"] = (res.get("core0_others_pct") or 0) + (res.get("core0_steal_pct") or 0) >= 10.0
        res["sipp_core_pct"] = round(100 * (sipp_cpu["s1"] - sipp_cpu["s0"]) / max(1e-9, s1["t"] - s0["t"]), 1)
        # the switch is all its processes: its children's CPU in the window is added to its own
        kids = sipp_cpu["children_s1"] - sipp_cpu["children_s0"]
        res["switch_children_cpu_s"] = round(kids, 3)
        if kids > 0 and res.get("window_s"):
            res["switch_cpu_s"] = round(res["switch_cpu_s"] + kids, 3)
            res["switch_core_pct"] = round(100 * res["switch_cpu_s"] / res["window_s"], 1)
            if res.get("core0_busy_pct") is not None:
                res["core0_others_pct"] = round(max(0.0, res["core0_busy_pct"] - res["switch_core_pct"]), 1)
                res["contended"] = res["core0_others_pct"] + (res.get("core0_steal_pct") or 0) >= 10.0
    else:
        res["window_s"] = 0.0
        res["stats_missing"] = [k for k in ("s0", "s1") if not snaps.get(k)]
    cdrs = wait_cdrs(config, work, f"-{uac.pid}@", res["successful"]) if res["alive"] else []
    res.update(recognition_figures(cdrs, speech, s0["wall"] if s0 else None, s1["wall"] if s1 else None))
    # CPU per call: all the switch's calls count (the probes are calls too)
    calls_up = (res.get("calls_avg_in_window") or 0) + sum(1 for p in probes if p.answered_at)
    if res.get("switch_core_pct") is not None and calls_up:
        res["cpu_pct_per_call"] = round(res["switch_core_pct"] / calls_up, 4)
        res["cpu_ms_per_call_s"] = round(1000 * res["switch_cpu_s"] / (calls_up * res["window_s"]), 3)
        res["calls_per_core_linear"] = int(100 / res["cpu_pct_per_call"]) if res["cpu_pct_per_call"] else None
    if probes:
        since, until = t0 + ramp + args.settle, t0 + ramp + args.settle + args.window  # the window
        for p, mode, key in ((probes[0], "prompt", "probe"), (probes[1], "echo", "echo")):
            lat, missed = p.latencies(since, until, mode)
            res[f"{key}_latencies_ms"] = lat
            res[f"{key}_ms_p50"], res[f"{key}_ms_p95"] = pct(lat, 0.5), pct(lat, 0.95)
            res[f"{key}_unanswered"] = missed
            res[f"{key}_error"] = p.error
            res[f"{key}_packets"] = [len(p.sent), p.received]
        if res.get("probe_ms_p50") is not None and res.get("echo_ms_p50") is not None:
            res["ivr_adds_ms_p50"] = round(res["probe_ms_p50"] - res["echo_ms_p50"], 1)
    problems, first = log_problems(switch.log_path, 6)
    res["log_problem_lines"], res["log_problems_first"] = problems, first
    reasons = []
    if not res["alive"]:
        reasons.append("switch died")
    if res["failed"] > 0 or res.get("answered_cdrs", 0) < n:
        reasons.append(f"{res['failed']} calls failed, {res.get('answered_cdrs', 0)}/{n} answered CDRs")
    if res["window_s"] == 0.0:
        reasons.append("no measurement window (stats line missing or calls ended early)")
    elif res["late_pct"] >= 100 * MAX_LATE:
        reasons.append(f"late frames {res['late_pct']} % >= {100 * MAX_LATE:g} %")
    if service == SERVICE and (res.get("recognition_pct") or 0) < 100 * MIN_RECOGNISED:
        reasons.append(f"recognised {res.get('recognised')}/{res.get('utterances_sent')} keywords "
                       f"({res.get('recognition_pct')} %) < {100 * MIN_RECOGNISED:g} %")
    avg = res.get("calls_avg_in_window") or 0
    if res["window_s"] and avg < MIN_HELD * n:
        reasons.append(f"only {avg:g} of {n} calls up on average in the window")
    if res.get("media_errors"):
        reasons.append(f"{res['media_errors']} media tick errors")
    res["passed"] = not reasons
    res["reason"] = "; ".join(reasons) or "ok"
    if reasons:
        res["errors"] = first_lines(Path(f"{base}-uac-err.log"), 4)
    return res


# ---------------------------------------------------------------------------------------------- reporting
def ms(v) -> str:
    return "-" if v is None else f"{v:g}"


def report(result: dict, args: argparse.Namespace, commands: dict[str, str]) -> str:
    sp, fl = result["speech"], result["flow"]
    rows = []
    for s in sorted(result["steps"], key=lambda s: s["calls"]):
        late = f"{s['late_pct']} % ({s['late_frames']:,}+{s['skipped_frames']:,} of {s['frames']:,})" \
            if s.get("frames") is not None else "-"
        max_late = s.get("max_late_ms_run", "-")
        if s.get("max_late_ms_rose_in_window") is False:
            max_late = f"≤ {max_late} (before)"
        rec = (f"{s.get('recognised')}/{s.get('utterances_sent')} = {s.get('recognition_pct')} %"
               + (f" ({s['wrong_keyword']} wrong, {s['no_match']} no match)" if s.get("wrong_keyword")
                  or s.get("no_match") else ""))
        rows.append((s["calls"], f"{s.get('calls_up_in_window', '-')} / {s.get('calls_avg_in_window', '-')}",
                     f"{s['successful']}/{s['calls']}", late, max_late, core_cell(s), s.get("cpu_ms_per_call_s", "-"),
                     f"{s.get('runqueue_wait_pct', '-')} / {s.get('core0_others_pct', '-')} / "
                     f"{s.get('core0_steal_pct', '-')}{' ⚠' if s.get('contended') else ''}",
                     rec, s.get("recognitions_per_call", "-"),
                     f"{ms(s.get('decision_ms_p50'))} / {ms(s.get('decision_ms_p95'))}",
                     f"{ms(s.get('probe_ms_p50'))} / {ms(s.get('probe_ms_p95'))} "
                     f"(n={len(s.get('probe_latencies_ms') or [])}"
                     f"{', ' + str(s['probe_unanswered']) + ' unanswered' if s.get('probe_unanswered') else ''})",
                     f"{ms(s.get('echo_ms_p50'))} / {ms(s.get('echo_ms_p95'))}",
                     s.get("sipp_core_pct", "-"), status_cell(s)))
    peer_rows = []
    for p in result.get("peer", []):
        if "error" in p:
            peer_rows.append((p.get("calls", "-"), "-", "-", "-", "-", f"✗ {p['error']}"))
            continue
        peer_rows.append((p["calls"], f"{p['successful']}/{p['calls']}", p.get("calls_avg_in_window", "-"),
                          f"{p.get('late_pct', '-')} %", p.get("switch_core_pct", "-"),
                          p.get("cpu_ms_per_call_s", "-"), p.get("ivr_vs_moh", "-")))
    if result.get("max_calls"):
        limit = headline(result, [(("recognition_limited",), " (above it recognition fell below 90 %)"),
                                  (("late_limited",), " (above it the media clock fell behind)")])
        best = best_step(result) or {}
        at = "at that step"
    else:
        limit = "none of the steps" + (" (every one had ≥ 0.5 % late frames)" if all(
            "late frames" in s.get("reason", "") for s in result["steps"]) else "")
        n = peer_calls(result)
        best = next((s for s in result["steps"] if s["calls"] == n), {})
        at = (f"at {n} calls (the most that met every other criterion with the switch under 85 % of its core)"
              if n else "(no step to quote)")
    ignoring = result.get("max_calls_ignoring_late")
    top = next((s for s in result["steps"] if s["calls"] == ignoring), {})
    largest = (f" (the largest step measured; the switch at {top.get('switch_core_pct')} % of its core)"
               if ignoring and ignoring == max(s["calls"] for s in result["steps"]) else "")
    return f"""## IVR: concurrent calls with live speech recognition per core (`bench/ivr_calls.py`)

{run_paragraph(result, args).replace(
    f"calls opened at {args.setup_cps:g} CPS",
    f"calls opened at N / {sp['period_s']:g} CPS (evenly over one period of the clip)")}

{code_line(result.get("code"))}Each call: SIPp uac (`uac_ivr.xml`) dials `ivr` and streams G.711 µ-law (PCMU, 20 ms packets) for the whole
call: a {sp['period_s']:g} s clip looped, {LEAD_S:g} s of silence, espeak-ng saying "{sp['text']}" (telephone band,
speech {sp['speech_start_s']:.2f}–{sp['speech_end_s']:.2f} s into the clip by energy), silence: one keyword every
{sp['period_s']:g} s. The route `ivr` runs `bench/flows/ivr_bench.yaml`: one gather (speech + DTMF, keywords
"credit card" / "bank account", prompt "{fl['prompt']}", barge-in, {endpointing(fl)},
`timeout_s = {fl['timeout_s']:g}`) whose keyword branch goes to a `say` ("{fl['answer']}") that loops back, as do
its no-input, no-match and failure edges: every call stays in live recognition while it is held. Per call the
switch decodes the G.711, runs webrtcvad endpointing on every 20 ms frame of the caller (event loop) and decodes each
utterance with PocketSphinx (JSGF grammar of the gather, in the switch's decoder processes, `asr_workers =
{args.asr_threads}`). The switch is pinned to core 0 (`taskset -c 0`), and its decoder processes with it (they
inherit the affinity; their CPU is added to the switch's): that is what "one core" means here. SIPp and this script (with its probe calls) run on core 1; a fresh switch per step.
The config is the one above plus `[log] level = "INFO"`, the routes `ivr` → `flow:ivr_bench`, `echo` →
`service:echo`, `moh` → `service:moh` and `[ivr] flows_dir` = a copy of `bench/flows`.

Method: late frames as in `media_calls` (the media clock's counters read with SIGUSR1 at both ends of the
window: late % = (late + skipped) / (frames + skipped)); CPU = the switch process's utime+stime (all threads,
ASR included) over the window, per call-second of all its calls (the SIPp ones up on average in the window,
from the CDRs, plus the two probe calls). **Recognition** (from the CDRs' `ivr.hits`, over each call's whole
life, which is the window plus the ramp and {args.settle:g} s settle): keywords sent = for each answered call,
the utterances whose end, counted from the call's answer time, lies at least {DECIDE_MARGIN_S:g} s before its
BYE (the hold is chosen so that the BYE comes {sp['period_s'] / 2:g} s after a keyword's end: none is cut, each
had time to be decided); recognised = hits whose keyword is "{KEYWORD}"; rate =
recognised / sent (a miss, a wrong keyword, a no-match and an utterance the switch did not hear all count
against it). decision ms = the switch's own `decision_ms` of those hits (end of speech as its endpointer placed
it → decision, so it includes the endpointer's {fl.get('endpoint_ms', fl['end_silence_ms'])} ms wait). **Latency probe**, measured on the wire by an
extra call per step that this script places itself (raw SIP over UDP, PCMU, the same clip sent at a steady
20 ms pace from an asyncio loop on core 1): for each keyword that ended in the window, send time of the clip's
last speech packet → arrival of the first onset the switch sent after it (a packet above {HEARD_DBFS:g} dBFS
after ≥ {QUIET_BEFORE * 20} ms of silent ones, longer than any pause inside the prompts), i.e. the start of
"{fl['answer']}"; none within 3 s = "unanswered". It includes the {fl.get('endpoint_ms', fl['end_silence_ms'])} ms endpointer wait,
the decode,
the TTS prompt's own leading silence ({ms(result.get('prompt_lead_ms'))} ms as the switch plays it: it trims espeak-ng's leading silence) and up to
20 ms of tick alignment. **Peer in the same run, per step**: a second probe call dials the `echo` service with
the same clip: first speech packet sent → first onset back = the switch's bare media path (jitter
buffer, tick) under the same load; probe − echo is what the IVR adds. A step passes with late % < 0.5 %,
recognition ≥ {100 * MIN_RECOGNISED:g} %, every call answered and ≥ 95 % of them up on average in the window.

**Max concurrent IVR calls with live recognition on one core: {limit}** (goal ≥ {GOAL_CALLS}); with the
late-frame criterion left out (recognition ≥ {100 * MIN_RECOGNISED:g} %, every call answered and up):
{f'{ignoring:,} calls' if ignoring else 'none'}{largest}.
End of speech → next prompt on the wire {at} p50 / p95 = {ms(best.get('probe_ms_p50'))} /
{ms(best.get('probe_ms_p95'))} ms (goal p50 ≤ {GOAL_P50_MS} ms); the switch's decision_ms p50 / p95 =
{ms(best.get('decision_ms_p50'))} / {ms(best.get('decision_ms_p95'))} ms; the echo peer's media path p50 =
{ms(best.get('echo_ms_p50'))} ms.

{md_table(("calls", "up all window / avg", "answered", "late frames (late+skipped of frames)", "max late ms",
           "switch % of core 0", "ms CPU per call-s", "core 0 wait / others / steal %", "recognised / sent",
           "recognitions per call", "decision ms p50 / p95 (switch)", "probe ms p50 / p95 (wire)",
           "echo peer ms p50 / p95", "SIPp % of core 1", "pass"), rows)}

{'Every step was measured (`--all-steps`), not only up to the first failing one, so that the table shows the trend of each figure even though every step failed.' + chr(10) + chr(10) if args.all_steps and not result.get('max_calls') else ''}"core 0 wait" = % of the window the event loop's thread was runnable but not running, which here includes the
time the switch's own decoder processes had the core; ⚠ marks a step where other tasks and the hypervisor took
≥ 10 % of core 0.

CPU peer in the same run: the same SIPp callers, the same clip, dialling `moh` (terminated media as
`bench/media_calls.py` measures it: a prompt looped back, no recognition) at the best N (when no step passed:
the largest that met every other criterion with the switch under 85 % of its core):

{md_table(("calls", "answered", "avg up", "late frames", "switch % of core 0", "ms CPU per call-s",
           "IVR / moh CPU per call"), peer_rows) if peer_rows else '(not run)'}

{result.get('analysis', '')}

Commands (WORK = the work directory: `softswitch.toml`, `flows/ivr_bench.yaml`, `ivr_speech.ulaw` are
written there, SIPp runs there; N = calls of the step, HOLD = (N / setup CPS + settle + window + 1) s in ms,
lengthened so that each call's BYE falls half a period after one of its keywords ended; the probes are this
script's own code, `ProbeCall` in `bench/ivr_calls.py`):
{commands_block(commands, result["workdir"])}
"""


def code_line(code: dict | None) -> str:
    if not code or not code.get("head"):
        return ""
    dirty = code.get("uncommitted") or []
    return (f"Code measured: commit {code['head']}"
            + (f" plus uncommitted changes to {', '.join(f'`{f}`' for f in dirty)}" if dirty else "") + ".\n\n")


def endpointing(fl: dict) -> str:
    """The gather's endpointing as the docs describe it."""
    text = f"`end_silence_ms = {fl['end_silence_ms']}`"
    early = fl.get("early_silence_ms")
    if early and early < fl["end_silence_ms"]:
        text += (f" with the recogniser's early endpoint (`asr.engine.EARLY_SILENCE_MS = {early}`: a keyword "
                 f"decoded after {early} ms of silence ends the gather)")
    return text


def analyse(result: dict) -> str:
    steps = result["steps"]
    fl = result["flow"]
    if not steps:
        return ""
    f, line = limit_line(steps)
    lines = [line]
    if f and f.get("contended"):
        lines.append(f"That step was contended: other tasks used {f.get('core0_others_pct')} % of core 0 and the "
                     f"hypervisor {f.get('core0_steal_pct')} %: the figures are this machine's at that moment.")
    passing = [s for s in steps if s.get("passed") and s.get("cpu_ms_per_call_s")]
    if passing:
        s = max(passing, key=lambda s: s["calls"])
        lines.append(f"CPU per call at {s['calls']} calls: {s['cpu_ms_per_call_s']} ms per call-second "
                     f"({s['cpu_pct_per_call']} % of a core), the core {s.get('switch_core_pct')} % busy: "
                     f"linearly {s.get('calls_per_core_linear'):,} calls per core.")
    for p in result.get("peer", []):
        if p.get("ivr_vs_moh"):
            lines.append(f"At {p['calls']} calls an IVR call in recognition costs {p['ivr_vs_moh']}× the CPU of a "
                         f"terminated `moh` call ({p['ivr_ms']} vs {p['cpu_ms_per_call_s']} ms per call-second).")
    late = [s for s in steps if "late frames" in s.get("reason", "")]
    peer_late = [p for p in result.get("peer", []) if p.get("late_pct") is not None]
    if late:
        g = result.get("gil_probe") or {}
        line = (f"Late frames failed {len(late)} of {len(steps)} steps (from {min(s['calls'] for s in late)} calls, "
                f"{min(s['late_pct'] for s in late)}–{max(s['late_pct'] for s in late)} %)")
        if peer_late:
            p = peer_late[0]
            line += (f", while the `moh` peer, the same callers without recognition, had {p['late_pct']} % at "
                     f"{p['calls']} calls")
        if g.get("decode_ms"):
            line += (f". PocketSphinx's `process_raw` keeps the GIL for the whole decode: one {g['audio_s']:g} s "
                     f"utterance takes {g['decode_ms']:g} ms, and a thread that wants the GIL every 1 ms waited up "
                     f"to {g['ticker_max_gap_ms']:g} ms meanwhile (measured on core 1 before the run): the reason the "
                     f"switch decodes in processes, not in threads of its event loop's process")
        lines.append(line + ".")
    lat = [s for s in sorted(steps, key=lambda s: s["calls"]) if s.get("probe_ms_p50") is not None]
    if lat:
        lines.append("End of speech → next prompt on the wire, p50 by step: " + ", ".join(
            f"{s['calls']}: {s['probe_ms_p50']:g} ms (echo {ms(s.get('echo_ms_p50'))}, "
            f"switch {ms(s.get('decision_ms_p50'))})"
            for s in lat) + f"; the endpointer alone waits {fl.get('endpoint_ms', fl['end_silence_ms'])} ms of "
            f"silence before it decodes, and the prompt's TTS audio starts with {ms(result.get('prompt_lead_ms'))} "
            f"ms of silence.")
    ok = [s for s in lat if s.get("decision_ms_p50") is not None
          and (s.get("skipped_frames") or 0) < 0.01 * (s.get("frames") or 1)]
    if ok:
        gap = [s["probe_ms_p50"] - s["decision_ms_p50"] for s in ok]
        lines.append(f"Wire minus switch (probe p50 − decision_ms p50) is {min(gap):.0f}–{max(gap):.0f} ms in the "
                     f"steps with < 1 % skipped frames ({', '.join(str(s['calls']) for s in ok)} calls): the switch's decision_ms starts when the last speech frame leaves "
                     f"its jitter buffer, the wire figure when the packet was sent, and it ends at the decision, "
                     f"not at the prompt's first audible packet ({ms(result.get('prompt_lead_ms'))} ms of leading "
                     f"silence in the TTS audio, the next 20 ms tick, the outbound path).")
    backlog = [s for s in steps if (s.get("echo_ms_p50") or 0) > 300]
    if backlog:
        s = min(backlog, key=lambda s: s["calls"])
        lines.append(f"From {s['calls']} calls the echo peer's media path itself took {s['echo_ms_p50']:g} ms (p50): "
                     f"the media clock skipped ticks ({s.get('skipped_frames'):,} frames): the core is saturated.")
    for s in steps:
        if s.get("probe_error") or s.get("echo_error"):
            lines.append(f"At {s['calls']} calls a probe call failed: {s.get('probe_error') or s.get('echo_error')}.")
    if problems := log_problems_line(result):
        lines.append(problems)
    for note in result.get("notes", []):
        lines.append(note)
    return "\n".join(f"- {line}" for line in lines)


def summarize(result: dict) -> None:
    first_fail = summarize_steps(result)
    # the same search with the late-frame criterion left out: what recognition alone would carry
    ok = [s["calls"] for s in result["steps"]
          if s.get("alive", True) and not [r for r in s.get("reason", "").split("; ") if r and r != "ok"
                                           and not r.startswith("late frames")]]
    result["max_calls_ignoring_late"] = max(ok) if ok else 0
    reason = (first_fail or {}).get("reason", "")
    result["recognition_limited"] = "recognised" in reason
    result["late_limited"] = "late frames" in reason
    for p in result.get("peer", []):
        mine = next((s for s in result["steps"] if s["calls"] == p.get("calls")), None)
        if mine and mine.get("cpu_ms_per_call_s") and p.get("cpu_ms_per_call_s"):
            p["ivr_ms"] = mine["cpu_ms_per_call_s"]
            p["ivr_vs_moh"] = round(mine["cpu_ms_per_call_s"] / p["cpu_ms_per_call_s"], 2)
    result["analysis"] = analyse(result)


def output(result: dict, args: argparse.Namespace, commands: dict[str, str]) -> dict:
    best = best_step(result, {})
    return {"max_calls": result.get("max_calls"), "max_calls_ignoring_late": result.get("max_calls_ignoring_late"),
            "goal_calls": GOAL_CALLS, "goal_p50_ms": GOAL_P50_MS,
            **{k: result.get(k) for k in ("limit_not_reached", "switch_saturated", "recognition_limited",
                                          "late_limited")},
            "cpu_ms_per_call_s_at_max": best.get("cpu_ms_per_call_s"),
            "switch_core_pct_at_max": best.get("switch_core_pct"), "late_pct_at_max": best.get("late_pct"),
            "recognition_pct_at_max": best.get("recognition_pct"),
            "probe_ms_p50_at_max": best.get("probe_ms_p50"), "probe_ms_p95_at_max": best.get("probe_ms_p95"),
            "decision_ms_p50_at_max": best.get("decision_ms_p50"),
            "decision_ms_p95_at_max": best.get("decision_ms_p95"),
            "echo_ms_p50_at_max": best.get("echo_ms_p50"),
            "steps": result["steps"], "peer": result.get("peer", []), "speech": result["speech"],
            "flow": result["flow"], "prompt_lead_ms": result.get("prompt_lead_ms"), "asr_threads": args.asr_threads,
            "gil_probe": result.get("gil_probe"), "all_steps": args.all_steps, "code": result.get("code"),
            "notes": result.get("notes", []), "contention_at_start": result.get("contention_at_start"),
            **run_fields(result, args, commands)}


def render(path: Path, args: argparse.Namespace) -> int:
    saved = json.loads(path.read_text())
    args.asr_threads = saved.get("asr_threads", args.asr_threads)
    args.all_steps = saved.get("all_steps", False)
    return render_saved("ivr_calls", path, args,
                        lambda s: {"peer": s.get("peer", []), "speech": s["speech"], "flow": s["flow"],
                                   "prompt_lead_ms": s.get("prompt_lead_ms"), "notes": s.get("notes", []),
                                   "gil_probe": s.get("gil_probe"), "code": s.get("code")},
                        summarize, report)


# ---------------------------------------------------------------------------------------------- the run
def code_state() -> dict:
    """The checkout measured: HEAD and the uncommitted source files of the switch, IVR and ASR packages (others
    edit them while benchmarks run)."""
    def git(*a: str) -> str:
        out = subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True)
        return out.stdout if out.returncode == 0 else ""
    dirty = [ln[3:] for ln in git("status", "--porcelain", "--", "softswitch", "ivr", "asr").splitlines()
             if ln[3:].endswith(".py")]
    return {"head": git("rev-parse", "--short", "HEAD").strip(), "uncommitted": dirty}


def heavy_neighbours() -> list[str]:
    """Other heavy jobs on the machine (ASR evaluations, test runs) at this moment, for the record."""
    out = subprocess.run(["pgrep", "-fa", r"asr\.eval|pytest"], capture_output=True, text=True)
    return [ln[:160] for ln in out.stdout.splitlines() if str(os.getpid()) != ln.split()[0]]


def peer_calls(result: dict) -> int:
    """N for the moh CPU peer: the best passing step; failing that, the largest step that met every criterion
    but late frames with the switch under 85 % of its core (a saturated switch skips ticks, i.e. work)."""
    if result.get("max_calls"):
        return result["max_calls"]
    ok = [s["calls"] for s in result["steps"] if s["calls"] <= (result.get("max_calls_ignoring_late") or 0)
          and (s.get("switch_core_pct") or 100) < 85 and s.get("recognition_pct") is not None
          and s["recognition_pct"] >= 100 * MIN_RECOGNISED]
    return max(ok) if ok else 0


def measure(args: argparse.Namespace, steps: list[int], work: Path, result: dict, commands: dict[str, str]) -> None:
    config = work / "softswitch.toml"
    flows, result["flow"] = flow_file(work, args.end_silence_ms)
    config.write_text(ivr_config(flows, work / "ivr_speech.wav", args.asr_threads, args.switch_log_level))
    speech = result["speech"]
    logs: list[Path] = []
    with Processes() as procs:
        def fresh_switch(log_path: Path) -> Proc:
            logs.append(log_path)
            switch = start_switch(procs, config, work, log_path)
            commands["softswitch"] = switch.command
            time.sleep(args.asr_warmup)  # the recogniser and the prompts' TTS load in the background after start
            return switch
        commands["uac"] = pinned_command(SIPP_CPU, uac_ivr_argv(SERVICE, 0, 1.0, 0, Path("uac.csv"),
                                                                 Path("uac-err.log"))
                                         ).replace("-r 1 -m 0 -l 0 -d 0", "-r N/5 -m N -l N -d HOLD")
        commands["stats"] = "kill -USR1 <softswitch pid>   # at both ends of the window; read `stats:` in its log"
        commands["probes"] = "(in bench/ivr_calls.py) ProbeCall('ivrprobe', 'ivr'), ProbeCall('echoprobe', 'echo')"
        commands["bench"] = "python " + " ".join(["bench/ivr_calls.py", *sys.argv[1:]]).replace(str(work), "WORK")

        def step(n: int) -> dict:
            neighbours = heavy_neighbours()
            with step_switch(procs, fresh_switch(work / f"softswitch-ivr-{n}.log")) as switch:
                res = run_step(procs, work, switch, config, n, args, speech)
            res["heavy_neighbours"] = neighbours
            result["steps"].append(res)
            say(f"  {n:4d} calls: {'PASS' if res['passed'] else 'fail'}  late {res.get('late_pct')} %"
                f" ({res.get('late_frames')}+{res.get('skipped_frames')} of {res.get('frames')})"
                f"  max late {res.get('max_late_ms_run')} ms  switch {res.get('switch_core_pct')} % core"
                f"  {res.get('cpu_ms_per_call_s')} ms/call-s  recognised {res.get('recognised')}/"
                f"{res.get('utterances_sent')} ({res.get('recognition_pct')} %)  decision p50/p95"
                f" {res.get('decision_ms_p50')}/{res.get('decision_ms_p95')} ms  probe p50/p95"
                f" {res.get('probe_ms_p50')}/{res.get('probe_ms_p95')} ms"
                f" (n={len(res.get('probe_latencies_ms') or [])})"
                f"  echo {res.get('echo_ms_p50')}/{res.get('echo_ms_p95')} ms  up {res.get('calls_up_in_window')}/"
                f"{res.get('calls_avg_in_window')}  {'' if res['passed'] else res['reason']}"
                f"{'  [busy: ' + str(len(neighbours)) + ' ASR eval/test processes]' if neighbours else ''}")
            return res

        if args.all_steps:
            for n in steps:
                step(n)
        else:
            climb_steps(steps, step, halfway_back(not args.no_refine))
        summarize(result)
        if not args.no_peer:
            n = peer_calls(result) or steps[0]
            commands["uac (moh peer)"] = commands["uac"].replace(f"-s {SERVICE}", "-s moh")
            try:
                with step_switch(procs, fresh_switch(work / f"softswitch-moh-{n}.log")) as switch:
                    res = run_step(procs, work, switch, config, n, args, speech, service="moh")
                keep = ("calls", "successful", "failed", "hold_s", "window_s", "calls_avg_in_window", "late_pct",
                        "late_frames", "skipped_frames", "frames", "max_late_ms_run", "switch_core_pct",
                        "switch_sys_share", "cpu_ms_per_call_s", "runqueue_wait_pct", "core0_others_pct",
                        "core0_steal_pct", "contended", "sipp_core_pct", "passed", "reason")
                peer = {k: res.get(k) for k in keep}
            except Exception as exc:  # noqa: BLE001 - the peer must not sink the run's own figures
                peer = {"calls": n, "error": f"{type(exc).__name__}: {exc}"}
            result["peer"].append(peer)
            say(f"  moh peer {n} calls: {peer.get('switch_core_pct')} % core  {peer.get('cpu_ms_per_call_s')}"
                f" ms/call-s  late {peer.get('late_pct')} %  {peer.get('reason') or peer.get('error')}")
    count, first = 0, []
    for path in logs:
        c, lines = log_problems(path)
        count += c
        first += lines
    result["switch_log_problem_lines"], result["switch_log_problems_first"] = count, first[:10]
    busy = sorted({ln for s in result["steps"] for ln in s.get("heavy_neighbours", [])})
    if busy:
        result["notes"].append(f"Contention: {len(busy)} ASR-evaluation/test processes were running during some "
                               f"steps (e.g. `{busy[0][:100]}`); see `heavy_neighbours` per step in the JSON.")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_step_options(p, "10,20,40,60,80,100", 40.0)
    p.add_argument("--asr-workers", "--asr-threads", dest="asr_threads", type=int, default=2,
                   help="the switch's [ivr] asr_workers: decoder processes (2, the default)")
    p.add_argument("--end-silence-ms", type=int, default=None,
                   help="override the bench flow's gather end_silence_ms (the endpointer's hangover)")
    p.add_argument("--asr-warmup", type=float, default=2.0,
                   help="seconds after the switch answers SIP before the calls start (model + TTS warm-up)")
    p.add_argument("--no-refine", action="store_true", help="no extra step between the last pass and the first fail")
    p.add_argument("--all-steps", action="store_true",
                   help="measure every step, not only up to the first failing one (a trend where every N fails)")
    p.add_argument("--no-peer", action="store_true", help="skip the moh CPU peer step")
    p.add_argument("--no-probe", action="store_true", help="no probe calls (no latency figures)")
    p.add_argument("--quick", action="store_true", help="smoke test: steps 5,10, 10 s window")
    p.add_argument("--switch-log-level", default="INFO", help="INFO or DEBUG (the stats line is an INFO line)")
    add_output_options(p)
    args = p.parse_args(argv)
    if args.render:
        return render(args.render, args)
    if args.quick:
        args.steps, args.window, args.settle = "5,10", 10.0, 2.0
    check_stats_log_level(p, args)
    steps = parse_steps(p, args, "steps must be 1..2499 calls (RTP range 40000-49998)")
    keep_off_switch_core()
    prefer_checkout()
    work = make_workdir(args, "ivr_calls")
    speech = make_speech(work)
    result: dict = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine_info(), "steps": [], "peer": [],
                    "workdir": str(work), "speech": speech, "notes": [], "contention_at_start": heavy_neighbours(),
                    "code": code_state()}
    flow = yaml.safe_load(FLOW.read_text())
    result["prompt_lead_ms"] = prompt_lead_ms(flow["nodes"]["got_card"]["text"])
    result["gil_probe"] = gil_probe(work, speech)
    return run_and_report("ivr_calls", args, steps, work, result, measure, summarize, output, report)


if __name__ == "__main__":
    sys.exit(main())

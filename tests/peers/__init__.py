"""Harness that drives real SIP peers (SIPp, baresip, pyVoIP) for end-to-end tests.

Modules:
  netutil       free ports, PortAllocator, wait_udp_sip / wait_tcp / wait_udp_bound
  sipp          Sipp (one sipp process) -> SippResult (exit code, counters, logs)
  baresip       Baresip (one headless baresip UA driven over ctrl_tcp)
  pyvoip_phone  PyVoipPhone (pyVoIP 1.6.8 VoIPPhone that answers/records/plays)
  audio         espeak/tone fixtures, WAV reading, cross-correlation, levels

Peers that are missing make tests fail loudly (PeerMissingError names the apt
package) instead of skipping: a green run must mean the peers really ran.
"""

from __future__ import annotations

import shutil
from pathlib import Path

__all__ = ["PeerMissingError", "require_binary", "tail_file", "tail_text"]

# binary -> Debian package that provides it (for error messages)
APT_PACKAGES: dict[str, str] = {
    "sipp": "sip-tester",
    "baresip": "baresip",
    "espeak-ng": "espeak-ng",
    "sox": "sox",
}


class PeerMissingError(RuntimeError):
    """A peer binary or library is not installed; the message says how to install it."""


def require_binary(name: str) -> str:
    """Absolute path of ``name`` on PATH, or PeerMissingError naming the apt package."""
    path = shutil.which(name)
    if path is None:
        package = APT_PACKAGES.get(name, name)
        raise PeerMissingError(
            f"'{name}' not found on PATH: install it with `apt-get install -y {package}` "
            "(end-to-end tests need the real peer and do not skip)"
        )
    return path


def tail_text(text: str, lines: int = 40) -> str:
    """The last ``lines`` lines of ``text`` (why: keep assertion messages readable)."""
    parts = text.rstrip("\n").splitlines()
    if len(parts) <= lines:
        return "\n".join(parts)
    return f"[... {len(parts) - lines} lines cut ...]\n" + "\n".join(parts[-lines:])


def tail_file(path: Path | None, lines: int = 40, max_bytes: int = 256 * 1024) -> str:
    """Tail of a (possibly large, possibly missing) log file as text."""
    if path is None:
        return "(no file)"
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            if size > max_bytes:
                fh.seek(size - max_bytes)
            data = fh.read()
    except OSError as exc:
        return f"({path}: {exc.strerror})"
    text = data.decode("utf-8", errors="replace")
    return tail_text(text, lines) if text.strip() else f"({path.name} is empty)"

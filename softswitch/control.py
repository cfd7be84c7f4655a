"""Control socket: how ``softswitch queue ...`` / ``softswitch agent ...`` query and change a running switch.

A Unix stream socket speaking JSON lines. Each request is one line holding a JSON object
``{"cmd": "queue.status", ...arguments}``; each answer is one line, ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": "message"}``. A connection may send any number of requests. What the commands mean is
the handler's business (the switch passes a dispatcher); this module only carries them, and no request,
however malformed, and no handler failure takes the server down.

``request()`` is the blocking client the CLI uses: one request, one answer, ``ControlError`` on any failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

__all__ = ["MAX_REQUEST_BYTES", "ControlError", "ControlServer", "request"]

log = logging.getLogger("softswitch.control")

MAX_REQUEST_BYTES = 64 * 1024   # one request line; longer ones are refused and the connection closed

Handler = Callable[[dict[str, Any]], "Awaitable[Any] | Any"]

_SUN_PATH_MAX = 107   # bytes of a Unix socket path (sockaddr_un.sun_path, less the NUL) on Linux


@contextlib.contextmanager
def _addressable(path: Path):
    """A name for ``path`` that fits in a sockaddr_un: itself, or (deep test/work directories) the same
    file reached through an open descriptor of its directory, ``/proc/self/fd/N/NAME``."""
    if len(os.fsencode(str(path))) <= _SUN_PATH_MAX:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


class ControlError(Exception):
    """A control request that failed; ``str()`` is a message for the user (no running switch, the
    switch's own error message, ...)."""


class ControlServer:
    """Serves JSON-line requests on the Unix socket ``path``, each answered by ``handler(request)``.

    ``request`` is the decoded object (``cmd`` included); the handler returns a JSON-serialisable result or
    an awaitable of one. A ``ValueError``/``KeyError`` it raises becomes the error message the client shows;
    anything else is logged with its traceback and answered with a generic error.
    """

    def __init__(self, path: Path, handler: Handler) -> None:
        self.path = Path(path)
        self.handler = handler
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        """Listen on ``path`` (creating its directory). A socket file left by a switch that died is replaced;
        one a live process listens on raises ``OSError``, as does a path that is not a socket."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() or self.path.is_symlink():
            if not self.path.is_socket():
                raise OSError(f"{self.path} exists and is not a socket; not replacing it")
            if _listening(self.path):
                raise OSError(f"another switch is running on {self.path}")
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with _addressable(self.path) as name:
                sock.bind(name)
        except OSError:
            sock.close()
            raise
        self._server = await asyncio.start_unix_server(self._serve, sock=sock, limit=MAX_REQUEST_BYTES)
        log.info("control socket listening on %s", self.path)

    async def close(self) -> None:
        """Stop listening, drop open connections and remove the socket file."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        for writer in list(self._writers):
            writer.close()
        await server.wait_closed()
        with contextlib.suppress(OSError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._server is None:  # accepted just before close()
            writer.close()
            return
        self._writers.add(writer)
        try:
            while True:
                try:
                    line = await reader.readline()
                except ValueError:  # no newline within the limit: we cannot tell where the next request starts
                    await _send(writer, {"ok": False, "error": f"request longer than {MAX_REQUEST_BYTES} bytes"})
                    break
                if not line:
                    break
                if line.strip():
                    await _send(writer, await self._answer(line))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            req = json.loads(line)
        except ValueError as e:
            return {"ok": False, "error": f"malformed request (not JSON: {e})"}
        if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
            return {"ok": False, "error": 'malformed request: expected a JSON object with a "cmd" string'}
        try:
            result = self.handler(req)
            if inspect.isawaitable(result):
                result = await result
            json.dumps(result)  # fail here, as this request's error, rather than when sending
        except (ValueError, KeyError) as e:
            return {"ok": False, "error": str(e.args[0]) if len(e.args) == 1 else str(e)}
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("control request %s failed", req["cmd"])
            return {"ok": False, "error": f"internal error handling {req['cmd']!r} (see the switch's log)"}
        return {"ok": True, "result": result}


async def _send(writer: asyncio.StreamWriter, response: dict[str, Any]) -> None:
    writer.write(json.dumps(response).encode() + b"\n")
    await writer.drain()


def _listening(path: Path) -> bool:
    """Does a process accept connections on the socket file ``path``?"""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            with _addressable(path) as name:
                s.connect(name)
        except (ConnectionRefusedError, FileNotFoundError):
            return False
        except socket.timeout:  # backlog full: someone is there
            return True
        return True


def request(path: Path, cmd: str, timeout: float = 5.0, **args: Any) -> Any:
    """Send one request to the switch on socket ``path`` and return its result (blocking).

    Arguments that are None are left out. Raises ``ControlError`` when no switch runs there, it does not
    answer within ``timeout`` seconds, or it answers with an error (the message is the switch's).
    """
    path = Path(path)
    line = json.dumps({"cmd": cmd, **{k: v for k, v in args.items() if v is not None}}).encode() + b"\n"
    data = b""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            with _addressable(path) as name:
                s.connect(name)
            s.sendall(line)
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except (FileNotFoundError, ConnectionRefusedError):
        raise ControlError(f"no running switch at {path} (start it with `softswitch run`)") from None
    except socket.timeout:
        raise ControlError(f"the switch at {path} did not answer within {timeout:g} s") from None
    except OSError as e:
        raise ControlError(f"cannot reach the switch at {path}: {e.strerror or e}") from None
    if not data.endswith(b"\n"):
        raise ControlError(f"the switch at {path} closed the connection without answering")
    try:
        response = json.loads(data)
        ok, payload = bool(response["ok"]), response["result" if response["ok"] else "error"]
    except (ValueError, KeyError, TypeError):
        raise ControlError(f"the switch at {path} sent an answer that is not a control response") from None
    if not ok:
        raise ControlError(str(payload))
    return payload

"""Unit tests for softswitch.sip.framing.StreamFramer (RFC 3261 §18.3 framing, RFC 5626 pings)."""

from __future__ import annotations

import itertools

import pytest

from softswitch.sip.framing import PING, FramingError, StreamFramer
from softswitch.sip.message import Request, parse_message


def message(body: bytes = b"", length: bytes | None = None, name: bytes = b"Content-Length", n: int = 1) -> bytes:
    size = str(len(body)).encode() if length is None else length
    return (
        b"OPTIONS sip:bob@example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/TCP a.example.com;branch=z9hG4bK%d\r\n"
        b"From: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\n"
        b"Call-ID: c%d\r\nCSeq: %d OPTIONS\r\n" % (n, n, n)
        + name + b": " + size + b"\r\n\r\n" + body
    )


def test_one_message_per_feed() -> None:
    data = message(b"hello")
    out = StreamFramer().feed(data)
    assert out == [data]
    msg = parse_message(out[0])
    assert isinstance(msg, Request) and msg.body == b"hello"


def test_several_messages_in_one_segment() -> None:
    msgs = [message(b"x" * n, n=n) for n in range(1, 5)]
    assert StreamFramer().feed(b"".join(msgs)) == msgs


def test_byte_by_byte_and_random_splits() -> None:
    msgs = [message(b"body\r\n\r\nwith blank lines", n=1), message(n=2), message(b"\x00\xff" * 100, n=3)]
    stream = b"".join(msgs)
    framer = StreamFramer()
    out = [m for i in range(len(stream)) for m in framer.feed(stream[i:i + 1])]
    assert out == msgs
    framer = StreamFramer()
    cuts = [0, 7, 8, 150, 151, 160, 300, 301, len(stream)]
    out = [m for a, b in itertools.pairwise(cuts) for m in framer.feed(stream[a:b])]
    assert out == msgs


def test_partial_body_waits() -> None:
    data = message(b"0123456789")
    framer = StreamFramer()
    assert framer.feed(data[:-3]) == [] and framer.feed(data[-3:]) == [data]


def test_compact_and_case_insensitive_content_length() -> None:
    for name in (b"l", b"L", b"content-length", b"CONTENT-LENGTH", b"Content-Length   "):
        data = message(b"abc", name=name)
        assert StreamFramer().feed(data + data) == [data, data]


def test_folded_content_length() -> None:
    data = message(b"abc", length=b"\r\n 3")
    assert StreamFramer().feed(data) == [data] and parse_message(data).body == b"abc"


def test_bare_lf_message() -> None:
    data = message(b"abc").replace(b"\r\n", b"\n")
    assert StreamFramer().feed(data + b"tail") == [data]


def test_keepalive_pings_between_messages() -> None:
    data = message()
    framer = StreamFramer()
    out = framer.feed(PING + data + PING + PING)
    assert out == [PING, data, PING, PING] and out[0] is PING
    assert framer.feed(b"\r\n") == [] and framer.feed(b"\r\n") == [PING]  # split ping
    assert framer.feed(b"\r") == [] and framer.feed(b"\n\r") == [] and framer.feed(b"\n" + data) == [PING, data]


def test_single_crlfs_between_messages_are_ignored() -> None:
    data = message()
    framer = StreamFramer()
    assert framer.feed(b"\r\n" + data + b"\r\n") == [data]
    assert framer.feed(data) == [data]
    assert framer.feed(b"\n" + data) == [data]


def test_crlf_inside_body_is_not_a_ping() -> None:
    data = message(PING)
    assert StreamFramer().feed(data) == [data]


@pytest.mark.parametrize("length", [b"", b"abc", b"-5", b"1 2", b"\xd9\xa3"])
def test_invalid_content_length(length: bytes) -> None:
    with pytest.raises(FramingError):
        StreamFramer().feed(message(length=length))


def test_missing_content_length() -> None:
    data = message().replace(b"Content-Length: 0\r\n", b"")
    with pytest.raises(FramingError):
        StreamFramer().feed(data)


def test_repeated_content_length_must_agree() -> None:
    same = message(b"ab").replace(b"\r\n\r\n", b"\r\nl: 2\r\n\r\n")
    assert StreamFramer().feed(same) == [same]
    with pytest.raises(FramingError):
        StreamFramer().feed(same.replace(b"l: 2", b"l: 3"))


def test_size_limits() -> None:
    framer = StreamFramer(max_size=300)
    with pytest.raises(FramingError):
        framer.feed(b"INVITE sip:a@b SIP/2.0\r\nX: " + b"y" * 400)
    with pytest.raises(FramingError):
        StreamFramer(max_size=300).feed(message(length=b"1000"))
    small = message(b"z" * 20)
    assert StreamFramer(max_size=len(small)).feed(small) == [small]



def test_fuzz_only_framing_error_escapes() -> None:
    import random

    rng = random.Random(5626)
    pieces = [message(b"abc"), PING, b"\r\n", b"l: 3\r\n", b"Content-Length: x\r\n", b"\r\n\r\n", b"INVITE "]
    for _ in range(500):
        stream = b"".join(rng.choice(pieces) if rng.random() < 0.8 else bytes([rng.randrange(256)]) for _ in range(20))
        framer = StreamFramer(max_size=rng.choice([64, 1000]))
        try:
            while stream:
                cut = rng.randint(1, 40)
                for item in framer.feed(stream[:cut]):
                    assert item is PING or item.endswith(b"abc") or b"\n\n" in item or b"\r\n\r\n" in item
                stream = stream[cut:]
        except FramingError:
            pass

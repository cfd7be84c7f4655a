"""Unit tests for softswitch.sip.message: Headers, parse/serialise, make_response, error_response."""

from __future__ import annotations

import pytest

from softswitch.sip.message import (
    Headers,
    ParseError,
    Request,
    Response,
    error_response,
    make_response,
    parse_message,
    reason_phrase,
)
from softswitch.sip.uri import NameAddr, SipURI, Via

INVITE = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;rport\r\n"
    b"Via: SIP/2.0/TCP proxy.example.com;branch=z9hG4bKp1, SIP/2.0/UDP [2001:db8::1]:5062;branch=z9hG4bKp0\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.atlanta.example.com>;expires=60\r\n"
    b"Timestamp: 54\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"v=0\n"
)

RESPONSE = (
    b"SIP/2.0 180 Ringing\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;received=192.0.2.1\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n"
    b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)


def request() -> Request:
    msg = parse_message(INVITE)
    assert isinstance(msg, Request)
    return msg


def replace(data: bytes, old: bytes, new: bytes) -> bytes:
    assert old in data
    return data.replace(old, new)


# ------------------------------------------------------------------ Headers

def test_compact_forms_are_expanded_and_names_canonical() -> None:
    h = Headers([
        ("i", "x"), ("m", "<sip:a@b>"), ("e", "gzip"), ("l", "0"), ("c", "text/plain"), ("f", "<sip:f@b>"),
        ("s", "hi"), ("k", "timer"), ("t", "<sip:t@b>"), ("v", "SIP/2.0/UDP h"), ("o", "dialog"), ("r", "<sip:r@b>"),
        ("b", "<sip:b@b>"), ("x", "1800"), ("u", "talk"), ("a", "*;audio"), ("j", "*;video"), ("d", "proxy"),
        ("y", "abc"), ("CALL-ID", "y"), ("cseq", "1 X"), ("www-authenticate", "Digest x"), ("max-forwards", "1"),
        ("record-route", "<sip:p>"), ("p-asserted-identity", "<sip:a@b>"), ("X-Custom-HEADER", "kept"),
    ])
    assert [name for name, _ in h] == [
        "Call-ID", "Contact", "Content-Encoding", "Content-Length", "Content-Type", "From", "Subject", "Supported",
        "To", "Via", "Event", "Refer-To", "Referred-By", "Session-Expires", "Allow-Events", "Accept-Contact",
        "Reject-Contact", "Request-Disposition", "Identity", "Call-ID", "CSeq", "WWW-Authenticate", "Max-Forwards",
        "Record-Route", "P-Asserted-Identity", "X-Custom-HEADER",
    ]
    assert h.get("x-custom-header") == "kept" and h.get("I") == "x" and h.get("call-id") == "x"
    assert h.get_all("Call-ID") == ["x", "y"] and len(h) == 26


def test_get_default_contains_iter() -> None:
    h = Headers([("Via", "a"), ("To", "b")])
    assert h.get("From") is None and h.get("From", "none") == "none"
    assert "v" in h and "VIA" in h and "From" not in h and 3 not in h
    assert list(h) == [("Via", "a"), ("To", "b")]


def test_get_all_splits_list_headers_only() -> None:
    h = Headers([
        ("Via", "SIP/2.0/UDP a;branch=1, SIP/2.0/UDP b;branch=2"), ("v", "SIP/2.0/UDP c"),
        ("Contact", '"Doe, John" <sip:j@d;x=1,2>;q=1, <sip:k@d>'), ("Allow", "INVITE, ACK,BYE"),
        ("WWW-Authenticate", 'Digest realm="a, b", nonce="n", qop="auth,auth-int"'),
        ("Date", "Sat, 13 Nov 2010 23:29:00 GMT"), ("Subject", "a, b"),
    ])
    assert h.get_all("Via") == ["SIP/2.0/UDP a;branch=1", "SIP/2.0/UDP b;branch=2", "SIP/2.0/UDP c"]
    assert h.get_all("m") == ['"Doe, John" <sip:j@d;x=1,2>;q=1', "<sip:k@d>"]
    assert h.get_all("Allow") == ["INVITE", "ACK", "BYE"]
    assert h.get_all("WWW-Authenticate") == ['Digest realm="a, b", nonce="n", qop="auth,auth-int"']
    assert h.get_all("Date") == ["Sat, 13 Nov 2010 23:29:00 GMT"] and h.get_all("Subject") == ["a, b"]
    assert h.get("Via") == "SIP/2.0/UDP a;branch=1, SIP/2.0/UDP b;branch=2"  # whole first value


def test_set_add_remove() -> None:
    h = Headers([("Route", "<sip:1>"), ("To", "t"), ("route", "<sip:2>")])
    h.set("ROUTE", "<sip:3>")
    assert list(h) == [("Route", "<sip:3>"), ("To", "t")]
    h.set("From", "f")
    assert list(h)[-1] == ("From", "f")
    h.add("Route", "<sip:0>", first=True)
    h.add("Via", "v1", first=True)
    h.add("v", "v2")
    assert list(h) == [
        ("Via", "v1"), ("Route", "<sip:0>"), ("Route", "<sip:3>"), ("To", "t"), ("From", "f"), ("Via", "v2"),
    ]
    h.add("Via", "v0", first=True)
    assert h.get_all("Via") == ["v0", "v1", "v2"]
    h.remove("via")
    h.remove("Nothing")
    assert "Via" not in h and len(h) == 4


def test_copy_and_equality() -> None:
    h = Headers([("To", "t")])
    dup = h.copy()
    assert dup == h and dup is not h
    dup.add("From", "f")
    assert dup != h and len(h) == 1 and h != [("To", "t")]
    assert "To" in repr(h)


# ------------------------------------------------------------------ parsing

def test_parse_request_accessors() -> None:
    msg = request()
    assert msg.method == "INVITE" and msg.version == "SIP/2.0" and msg.is_request
    assert msg.uri == SipURI(user="bob", host="biloxi.example.com")
    assert msg.call_id == "a84b4c76e66710@pc33.atlanta.example.com" and msg.cseq == (314159, "INVITE")
    assert [(v.transport, v.host, v.port) for v in msg.vias] == [
        ("UDP", "pc33.atlanta.example.com", None), ("TCP", "proxy.example.com", None), ("UDP", "2001:db8::1", 5062),
    ]
    assert msg.top_via.branch == "z9hG4bK776asdhds" and msg.top_via.rport == ""
    assert msg.from_.display == "Alice" and msg.from_.tag == "1928301774"
    assert msg.to.display == "Bob" and msg.to.tag is None
    assert [str(c) for c in msg.contacts] == ["<sip:alice@pc33.atlanta.example.com>;expires=60"]
    assert not msg.contact_star and msg.max_forwards == 70 and msg.expires is None
    assert msg.content_type == "application/sdp" and msg.body == b"v=0\n"


def test_parse_response() -> None:
    msg = parse_message(RESPONSE)
    assert isinstance(msg, Response) and not msg.is_request
    assert (msg.status, msg.reason, msg.version) == (180, "Ringing", "SIP/2.0")
    assert msg.to.tag == "a6c85cf" and msg.top_via.received == "192.0.2.1" and msg.contacts == []


def test_bare_lf_leading_crlf_folding_and_colon_whitespace() -> None:
    data = b"\r\n\r\n" + INVITE.replace(b"\r\n", b"\n").replace(
        b"Max-Forwards: 70", b"Max-Forwards   :\n\t 70"
    ).replace(b"Subject", b"X").replace(b"To: Bob", b"To :  Bob\n  ")
    msg = parse_message(data)
    assert msg.max_forwards == 70 and msg.headers.get("Max-Forwards") == "70"
    assert msg.headers.get("To") == "Bob <sip:bob@biloxi.example.com>" and msg.body == b"v=0\n"
    assert msg.to_bytes() == parse_message(INVITE).to_bytes()


def test_folded_value_is_joined_with_single_space() -> None:
    data = replace(INVITE, b"Timestamp: 54\r\n", b"Subject: first\r\n  second \r\n\tthird\r\n")
    assert parse_message(data).headers.get("Subject") == "first second third"


def test_mixed_blank_line_separators() -> None:
    head, body = INVITE.split(b"\r\n\r\n")
    for sep in (b"\r\n\n", b"\n\r\n", b"\n\n"):
        assert parse_message(head + sep + body).body == body


def test_no_blank_line_means_no_body() -> None:
    head = INVITE.split(b"\r\n\r\n")[0].replace(b"Content-Length: 4", b"Content-Length: 0")
    assert parse_message(head + b"\r\n").body == b"" and parse_message(head).body == b""


def test_content_length_truncates_and_absent_takes_rest() -> None:
    assert parse_message(INVITE + b"garbage after body").body == b"v=0\n"
    no_length = replace(INVITE, b"Content-Length: 4\r\n", b"")
    assert parse_message(no_length + b"more").body == b"v=0\nmore"


def test_utf8_values() -> None:
    data = replace(INVITE, b"Alice <", '"Алиса 😀" <'.encode())
    assert parse_message(data).from_.display == "Алиса 😀"


@pytest.mark.parametrize(("old", "new", "status", "reason"), [
    (b"Content-Length: 4", b"Content-Length: 5", 400, "Content-Length larger than body"),
    (b"Content-Length: 4", b"Content-Length: four", 400, "Bad Content-Length"),
    (b"Content-Length: 4", b"Content-Length: \xd9\xa3", 400, "Bad Content-Length"),  # Arabic-Indic 3
    (b"Content-Length: 4", b"Content-Length: 4\r\nl: 4", 400, "Multiple Content-Length"),
    (b"Alice <", b"\xff\xfe <", 400, "Invalid UTF-8"),
    (b"CSeq: 314159 INVITE", b"CSeq: 314159 BYE", 400, "CSeq method does not match"),
    (b"CSeq: 314159 INVITE", b"CSeq: 2147483648 INVITE", 400, "CSeq out of range"),
    (b"CSeq: 314159 INVITE", b"CSeq: -1 INVITE", 400, "Bad CSeq"),
    (b"CSeq: 314159 INVITE", b"CSeq: 1", 400, "Bad CSeq"),
    (b"CSeq: 314159 INVITE", b"CSeq: 1 INVITE\r\nCSeq: 1 INVITE", 400, "Multiple CSeq"),
    (b"Max-Forwards: 70", b"Max-Forwards: seventy", 400, "Bad Max-Forwards"),
    (b"Max-Forwards: 70", b"Max-Forwards: 70\r\nMax-Forwards: 70", 400, "Multiple Max-Forwards"),
    (b"To: Bob", b"To: Bob\r\nTo: Bob <sip:x@y>\r\nX: Bob", 400, "Multiple To"),
    (b"From: Alice", b"f: <sip:a@b>\r\nFrom: Alice", 400, "Multiple From"),
    (b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com", b"Call-ID: a b", 400, "Bad Call-ID"),
    (b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com", b"Call-ID:", 400, "Bad Call-ID"),
    (b"To: Bob <sip:bob@biloxi.example.com>", b"To: Bob <sip:bob@biloxi.example.com", 400, "Bad To"),
    (b"From: Alice", b"From: Alice, Bob", 400, "Bad From"),
    (b"proxy.example.com;branch=z9hG4bKp1,", b"proxy.example.com:0x;", 400, "Bad Via"),
    (b"Timestamp: 54", b"Bad Header Name: x", 400, "Malformed header line"),
    (b"Timestamp: 54", b"NoColonHere", 400, "Malformed header line"),
    (b"Timestamp: 54", b"Via SIP/2.0/UDP h", 400, "Malformed header line"),
    (b"biloxi.example.com SIP/2.0", b"biloxi.example.com SIP/3.0", 505, "Version Not Supported"),
    (b"biloxi.example.com SIP/2.0", b"biloxi.example.com HTTP/1.1", 400, "Bad SIP-Version"),
    (b"INVITE sip:bob@biloxi.example.com SIP/2.0", b"INVITE sip:bob@biloxi.example.com", 400, "Malformed Request-Line"),
    (b"INVITE sip:bob@biloxi.example.com SIP/2.0", b"INV(TE sip:bob@biloxi.example.com SIP/2.0", 400, "Bad method"),
    (b"INVITE sip:bob@biloxi.example.com SIP/2.0", b"INVITE sip:bob@ SIP/2.0", 400, "Malformed SIP URI"),
    (b"INVITE sip:bob@biloxi.example.com SIP/2.0", b"INVITE sip:bob@b?Route=x SIP/2.0", 400, "headers"),
])
def test_request_errors(old: bytes, new: bytes, status: int, reason: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_message(replace(INVITE, old, new))
    err = info.value
    assert err.status == status and reason in err.reason
    assert err.is_request and err.headers is not None


@pytest.mark.parametrize("missing", [b"Via", b"To", b"From", b"Call-ID", b"CSeq"])
def test_mandatory_headers(missing: bytes) -> None:
    lines = [line for line in INVITE.split(b"\r\n") if not line.startswith(missing + b":")]
    with pytest.raises(ParseError) as info:
        parse_message(b"\r\n".join(lines))
    assert info.value.reason == f"Missing {missing.decode()}"


def test_max_forwards_is_optional() -> None:
    assert parse_message(replace(INVITE, b"Max-Forwards: 70\r\n", b"")).max_forwards is None


@pytest.mark.parametrize("line", [
    b"SIP/2.0 99 Too Small", b"SIP/2.0 700 Too Big", b"SIP/2.0 2000 OK", b"SIP/2.0  OK", b"SIP/2.0 18O Ringing",
    b"SIP/1.0 180 Ringing", b"SIP/2.0",
])
def test_bad_status_lines(line: bytes) -> None:
    with pytest.raises(ParseError) as info:
        parse_message(replace(RESPONSE, b"SIP/2.0 180 Ringing", line))
    assert not info.value.is_request and error_response(info.value) is None


def test_status_line_without_reason_and_lowercase_version() -> None:
    msg = parse_message(replace(RESPONSE, b"SIP/2.0 180 Ringing", b"sip/2.0 180"))
    assert isinstance(msg, Response) and (msg.status, msg.reason) == (180, "")


def test_response_cseq_may_carry_any_method_but_must_be_valid() -> None:
    with pytest.raises(ParseError):
        parse_message(replace(RESPONSE, b"CSeq: 314159 INVITE", b"CSeq: 99999999999 INVITE"))


def test_parse_error_carries_request_context() -> None:
    with pytest.raises(ParseError) as info:
        parse_message(replace(INVITE, b"CSeq: 314159 INVITE", b"CSeq: x"))
    err = info.value
    assert err.is_request and err.method == "INVITE" and err.headers is not None
    assert err.headers.get("Call-ID") == "a84b4c76e66710@pc33.atlanta.example.com"


def test_empty_and_garbage_inputs() -> None:
    for data in (b"", b"\r\n\r\n", b"\x00", b"hello", b"SIP/2.0", b"\n\n\nINVITE"):
        with pytest.raises(ParseError):
            parse_message(data)


# ------------------------------------------------------------------ accessors on garbage

def test_accessors_raise_parse_error_on_garbage() -> None:
    msg = request()
    msg.headers.set("Contact", "<sip:a@b>;;")
    msg.headers.set("Expires", "soon")
    msg.headers.set("Max-Forwards", "-1")
    msg.headers.set("CSeq", "x")
    for accessor in ("contacts", "expires", "max_forwards", "cseq"):
        with pytest.raises(ParseError):
            getattr(msg, accessor)
    msg.headers.remove("Call-ID")
    msg.headers.remove("Via")
    for accessor in ("call_id", "top_via"):
        with pytest.raises(ParseError):
            getattr(msg, accessor)
    assert msg.vias == []


def test_contact_star() -> None:
    msg = request()
    msg.headers.set("Contact", "*")
    msg.headers.set("Expires", "0")
    assert msg.contacts == [] and msg.contact_star and msg.expires == 0


def test_setters() -> None:
    msg = request()
    vias = msg.vias
    vias[0].received = "192.0.2.7"
    msg.vias = [Via("TLS", "edge.example.com", 5061, {"branch": "z9hG4bKnew"}), *vias]
    assert msg.headers.get_all("Via")[:2] == [
        "SIP/2.0/TLS edge.example.com:5061;branch=z9hG4bKnew",
        "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;rport;received=192.0.2.7",
    ]
    assert next(iter(msg.headers))[0] == "Via" and len(msg.vias) == 4
    msg.vias = msg.vias[1:]
    assert msg.top_via.received == "192.0.2.7"
    msg.vias = []
    assert "Via" not in msg.headers
    to = msg.to
    to.tag = "abc"
    msg.to = to
    frm = msg.from_
    frm.display = "Eve"
    msg.from_ = frm
    assert msg.headers.get("To") == "Bob <sip:bob@biloxi.example.com>;tag=abc" and msg.from_.display == "Eve"


# ------------------------------------------------------------------ serialising

def test_round_trip_is_exact_for_canonical_input() -> None:
    assert request().to_bytes() == INVITE and bytes(parse_message(RESPONSE)) == RESPONSE


def test_to_bytes_writes_a_correct_content_length() -> None:
    msg = request()
    msg.body = b"v=0\r\no=x\r\n"
    out = msg.to_bytes()
    assert b"\r\nContent-Length: 10\r\n" in out and out.endswith(b"\r\n\r\nv=0\r\no=x\r\n")
    msg.headers.remove("Content-Length")
    assert msg.to_bytes().endswith(b"\r\nContent-Type: application/sdp\r\nContent-Length: 10\r\n\r\nv=0\r\no=x\r\n")
    msg.headers.add("Content-Length", "1")
    msg.headers.add("l", "2")
    assert msg.to_bytes().count(b"Content-Length") == 1


def test_compact_headers_are_serialised_in_full() -> None:
    data = INVITE.replace(b"\r\nTo:", b"\r\nt:").replace(b"\r\nCall-ID:", b"\r\ni:").replace(b"Content-Length:", b"l:")
    assert parse_message(data).to_bytes() == INVITE


def test_built_messages_serialise() -> None:
    headers = Headers([
        ("Via", str(Via("UDP", "10.0.0.1", 5060, {"branch": "z9hG4bKabc", "rport": None}))),
        ("From", str(NameAddr("Alice", SipURI(user="alice", host="a.example.com"), {"tag": "1"}))),
        ("To", str(NameAddr(None, SipURI(user="bob", host="b.example.com")))),
        ("Call-ID", "c1"), ("CSeq", "1 OPTIONS"), ("Max-Forwards", "70"),
    ])
    req = Request("OPTIONS", SipURI(user="bob", host="b.example.com"), headers)
    expected = req.copy()
    expected.headers.add("Content-Length", "0")
    assert parse_message(req.to_bytes()) == expected


def test_copy_is_deep_enough() -> None:
    msg = request()
    dup = msg.copy()
    dup.headers.set("To", "x")
    assert isinstance(dup.uri, SipURI)
    dup.uri.params["lr"] = None
    assert msg.headers.get("To") != "x" and msg.uri.params == {}
    resp = parse_message(RESPONSE)
    assert isinstance(resp, Response) and resp.copy() == resp


# ------------------------------------------------------------------ responses

def test_make_response_copies_per_rfc3261_8_2_6() -> None:
    msg = request()
    resp = make_response(msg, 180, to_tag="as83kd9")
    assert (resp.status, resp.reason, resp.body) == (180, "Ringing", b"")
    assert [name for name, _ in resp.headers] == ["Via", "Via", "To", "From", "Call-ID", "CSeq"]
    assert resp.headers.get_all("Via") == msg.headers.get_all("Via")
    assert resp.to.tag == "as83kd9" and resp.headers.get("To") == "Bob <sip:bob@biloxi.example.com>;tag=as83kd9"
    assert resp.from_ == msg.from_ and resp.call_id == msg.call_id and resp.cseq == msg.cseq
    parsed = parse_message(resp.to_bytes())
    assert isinstance(parsed, Response) and parsed.status == 180


def test_make_response_keeps_existing_to_tag_and_copies_timestamp_on_100() -> None:
    msg = request()
    msg.headers.set("To", "<sip:bob@biloxi.example.com>;tag=old")
    assert make_response(msg, 200, "Fine", to_tag="new").to.tag == "old"
    trying = make_response(msg, 100)
    assert trying.reason == "Trying" and trying.headers.get("Timestamp") == "54"
    assert "Timestamp" not in make_response(msg, 200).headers
    assert make_response(request(), 200).to.tag is None


def test_reason_phrase() -> None:
    assert reason_phrase(200) == "OK" and reason_phrase(481) == "Call/Transaction Does Not Exist"
    assert reason_phrase(499) == "Client Error" and reason_phrase(299) == "OK"
    assert reason_phrase(199) == "Early Dialog Terminated"
    assert reason_phrase(699) == "Global Failure" and reason_phrase(150) == "Provisional"


def test_error_response_for_a_bad_request() -> None:
    with pytest.raises(ParseError) as info:
        parse_message(replace(INVITE, b"CSeq: 314159 INVITE", b"CSeq: 314159 BYE"))
    resp = error_response(info.value)
    assert resp is not None and resp.status == 400 and resp.reason == "CSeq method does not match request method"
    assert resp.headers.get_all("Via") == request().headers.get_all("Via")
    assert resp.to.tag is not None and resp.headers.get("CSeq") == "314159 BYE"
    assert "Contact" not in resp.headers and "Content-Type" not in resp.headers


def test_no_error_response_for_ack_responses_or_hopeless_requests() -> None:
    ack = replace(replace(INVITE, b"INVITE sip:", b"ACK sip:"), b"CSeq: 314159 INVITE", b"CSeq: x")
    for data in (ack, replace(RESPONSE, b"CSeq: 314159 INVITE", b"CSeq: x"), b"\xff\xfe", b"garbage line\r\n\r\n"):
        with pytest.raises(ParseError) as info:
            parse_message(data)
        assert error_response(info.value) is None
    hopeless = [line for line in INVITE.split(b"\r\n") if not line.startswith(b"Via")]
    with pytest.raises(ParseError) as info:
        parse_message(b"\r\n".join(hopeless))
    assert error_response(info.value) is None

"""Unit tests for softswitch.sip.uri: URIs, name-addr, Via, parameter and list helpers."""

from __future__ import annotations

import pytest

from softswitch.sip.uri import (
    AbsoluteURI,
    NameAddr,
    ParseError,
    SipURI,
    Via,
    parse_params,
    parse_uri,
    quote_string,
    split_header_list,
    unquote_string,
)

# ------------------------------------------------------------------ SipURI

def test_sip_uri_fields() -> None:
    uri = SipURI.parse(
        "SIP:Alice:secret@AtLanta.Example.COM:5070;Transport=TCP;lr;maddr=10.0.0.1?Subject=hi&Priority=urgent"
    )
    assert uri == SipURI(
        "sip", "Alice", "secret", "atlanta.example.com", 5070,
        {"transport": "TCP", "lr": None, "maddr": "10.0.0.1"}, {"Subject": "hi", "Priority": "urgent"},
    )
    assert list(uri.params) == ["transport", "lr", "maddr"]  # order kept


def test_sip_uri_minimal_and_sips() -> None:
    assert SipURI.parse("sip:example.com") == SipURI(host="example.com")
    uri = SipURI.parse("sips:bob@biloxi.example.com")
    assert (uri.scheme, uri.user, uri.port, uri.params) == ("sips", "bob", None, {})


def test_ipv6_reference_is_stored_without_brackets() -> None:
    uri = SipURI.parse("sip:alice@[2001:DB8::10]:5060;transport=udp")
    assert (uri.host, uri.port) == ("2001:db8::10", 5060)
    assert str(uri) == "sip:alice@[2001:db8::10]:5060;transport=udp"
    assert uri.host_port == "[2001:db8::10]:5060"
    assert SipURI.parse("sip:[::1]").host_port == "[::1]"


def test_escapes_are_decoded_and_reencoded() -> None:
    uri = SipURI.parse("sip:I%20have%20spaces%40home@example.com;x=a%3Bb?Route=%3Csip:p.example.com;lr%3E")
    assert uri.user == "I have spaces@home" and uri.params == {"x": "a;b"}
    assert uri.headers == {"Route": "<sip:p.example.com;lr>"}
    text = str(uri)
    assert text == "sip:I%20have%20spaces%40home@example.com;x=a%3Bb?Route=%3Csip:p.example.com%3Blr%3E"
    assert SipURI.parse(text) == uri


def test_header_values_accept_unescaped_separators() -> None:
    uri = SipURI.parse("sip:bob@b.example.com?Replaces=1234@a.example.com;to-tag=7;from-tag=8")
    assert uri.headers == {"Replaces": "1234@a.example.com;to-tag=7;from-tag=8"}
    assert str(uri) == "sip:bob@b.example.com?Replaces=1234%40a.example.com%3Bto-tag%3D7%3Bfrom-tag%3D8"


def test_user_may_contain_user_unreserved_characters() -> None:
    uri = SipURI.parse("sip:+1-212-555-1212;phone-context=example.com@gw.example.com;user=phone")
    assert uri.user == "+1-212-555-1212;phone-context=example.com" and uri.params == {"user": "phone"}
    assert str(uri) == "sip:+1-212-555-1212;phone-context=example.com@gw.example.com;user=phone"


def test_non_utf8_escapes_round_trip() -> None:
    uri = SipURI.parse("sip:%FF%00x@example.com")
    assert str(uri) == "sip:%FF%00x@example.com"


def test_str_escapes_what_must_be_escaped() -> None:
    uri = SipURI(user="a b@c:d", password="p@ss", host="example.com", params={"k": "v w"}, headers={"h": "x&y"})
    assert str(uri) == "sip:a%20b%40c%3Ad:p%40ss@example.com;k=v%20w?h=x%26y"
    assert SipURI.parse(str(uri)) == uri


@pytest.mark.parametrize("text", [
    "sip:", "sip:@example.com", "sip:alice@", "sip:alice@example.com:", "sip:alice@example.com:70000",
    "sip:alice@example.com;", "sip:alice@example.com;;lr", "sip:alice@example.com;=x", "sip:al ice@example.com",
    "sip:alice@exa mple.com", "sip:%zz@example.com", "sip:a@b?x", "sip:a@b?=x", "<sip:alice@example.com>",
    "http://example.com", "sip:alice@example.com; lr", "sip:alice@[zz::1]", "tel:", "tel:12 34",
])
def test_invalid_sip_uris(text: str) -> None:
    with pytest.raises(ParseError):
        SipURI.parse(text)


def test_tel_uri() -> None:
    uri = SipURI.parse("tel:+1-201-555-0123;Phone-Context=example.com")
    assert (uri.scheme, uri.user, uri.host) == ("tel", "+1-201-555-0123", "")
    assert uri.params == {"phone-context": "example.com"}
    assert str(uri) == "tel:+1-201-555-0123;phone-context=example.com"


def test_copy_is_independent() -> None:
    uri = SipURI.parse("sip:a@b;lr?h=v")
    dup = uri.copy()
    dup.params["x"] = "y"
    dup.headers["h"] = "w"
    assert uri.params == {"lr": None} and uri.headers == {"h": "v"} and dup != uri


@pytest.mark.parametrize(("a", "b"), [
    ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
    ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;newparam=5"),
    ("sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
     "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"),
    ("sip:alice@atlanta.com?subject=project%20x&priority=urgent",
     "sip:alice@atlanta.com?priority=urgent&subject=project%20x"),
])
def test_rfc3261_equivalent_uris(a: str, b: str) -> None:
    assert SipURI.parse(a).matches(SipURI.parse(b)) and SipURI.parse(b).matches(SipURI.parse(a))


@pytest.mark.parametrize(("a", "b"), [
    ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
    ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
    ("sip:bob@biloxi.com", "sips:bob@biloxi.com"),
    ("sip:carol@chicago.com;maddr=1.2.3.4", "sip:carol@chicago.com"),
])
def test_rfc3261_different_uris(a: str, b: str) -> None:
    assert not SipURI.parse(a).matches(SipURI.parse(b))


def test_matches_other_uri_kinds() -> None:
    assert not SipURI.parse("sip:a@b").matches(AbsoluteURI("http", "//b"))


# ------------------------------------------------------------------ AbsoluteURI / parse_uri

def test_parse_uri_dispatch() -> None:
    assert isinstance(parse_uri("sip:a@b"), SipURI) and isinstance(parse_uri("TEL:+1234"), SipURI)
    assert parse_uri("sipx:whatever") == AbsoluteURI("sipx", "whatever")
    uri = parse_uri("URN:service:sos")
    assert uri == AbsoluteURI("urn", "service:sos") and str(uri) == "urn:service:sos"
    assert uri.copy() == uri


@pytest.mark.parametrize("text", ["", "noscheme", "1abc:x", "http:", "http:a b", "http:<x>", ":x"])
def test_invalid_absolute_uris(text: str) -> None:
    with pytest.raises(ParseError):
        parse_uri(text)


# ------------------------------------------------------------------ NameAddr

def test_name_addr_quoted_display_with_escapes() -> None:
    addr = NameAddr.parse(' "Alice \\"the\\" \\\\ one" <sip:alice@atlanta.example.com;transport=tcp> ; tag = 1928 ;x')
    assert addr.display == 'Alice "the" \\ one'
    assert isinstance(addr.uri, SipURI) and addr.uri.params == {"transport": "tcp"}
    assert addr.params == {"tag": "1928", "x": None} and addr.tag == "1928"
    assert str(addr) == '"Alice \\"the\\" \\\\ one" <sip:alice@atlanta.example.com;transport=tcp>;tag=1928;x'
    assert NameAddr.parse(str(addr)) == addr


def test_name_addr_token_display_and_no_display() -> None:
    assert NameAddr.parse("Bob Smith <sip:bob@b.example.com>").display == "Bob Smith"
    assert NameAddr.parse("<sip:bob@b.example.com>").display is None
    assert NameAddr.parse('"" <sip:bob@b.example.com>').display is None
    assert str(NameAddr.parse("Bob  Smith<sip:bob@b.example.com>")) == "Bob  Smith <sip:bob@b.example.com>"


def test_addr_spec_parameters_belong_to_the_header() -> None:
    addr = NameAddr.parse("sip:alice@atlanta.example.com;tag=88sja8x;lr")
    assert addr.display is None and isinstance(addr.uri, SipURI) and addr.uri.params == {}
    assert addr.params == {"tag": "88sja8x", "lr": None}
    assert str(addr) == "<sip:alice@atlanta.example.com>;tag=88sja8x;lr"  # always name-addr form


def test_quoted_parameter_values_are_kept_and_round_trip() -> None:
    addr = NameAddr.parse('<sip:a@b>;+sip.instance="<urn:uuid:f81d4fae>";expires=60;note="a;b,c"')
    assert addr.params == {"+sip.instance": '"<urn:uuid:f81d4fae>"', "expires": "60", "note": '"a;b,c"'}
    assert unquote_string(addr.params["+sip.instance"] or "") == "<urn:uuid:f81d4fae>"
    assert NameAddr.parse(str(addr)) == addr


def test_display_quoted_only_when_needed() -> None:
    uri = SipURI(user="a", host="b")
    assert str(NameAddr("Alice", uri)) == "Alice <sip:a@b>"
    assert str(NameAddr("Alice, Bob", uri)) == '"Alice, Bob" <sip:a@b>'
    assert str(NameAddr('Q"\x07', uri)) == '"Q\\"\\\x07" <sip:a@b>'
    assert str(NameAddr("Ünïcode", uri)) == '"Ünïcode" <sip:a@b>'
    assert str(NameAddr("line\r\nbreak", uri)) == '"line  break" <sip:a@b>'
    assert str(NameAddr(None, uri, {"v": "needs quoting"})) == '<sip:a@b>;v="needs quoting"'


def test_tag_setter_and_copy() -> None:
    addr = NameAddr.parse("<sip:a@b>")
    dup = addr.copy()
    dup.tag = "xyz"
    assert addr.tag is None and dup.tag == "xyz" and str(dup) == "<sip:a@b>;tag=xyz"
    dup.uri.params["lr"] = None
    assert addr.uri.params == {}
    dup.tag = None
    assert dup.params == {}


def test_non_sip_uri_in_name_addr() -> None:
    addr = NameAddr.parse('"Web" <http://www.example.com/a?b=c>;tag=1')
    assert addr.uri == AbsoluteURI("http", "//www.example.com/a?b=c") and addr.tag == "1"


@pytest.mark.parametrize("text", [
    '"unterminated <sip:a@b>', "<sip:a@b", "Bell, Alexander <sip:a@b>", "< sip:a@b >", "sip:a@b?x=y",
    "sip:a@b, sip:c@d", '"Joe" <sip:joe@example.org>;;', "<sip:a@b>;=x", "", '"x" sip:a@b', "<sip:a@b> junk",
    "Bob <Alice <sip:a@b>>",
])
def test_invalid_name_addrs(text: str) -> None:
    with pytest.raises(ParseError):
        NameAddr.parse(text)


# ------------------------------------------------------------------ Via

def test_via_fields() -> None:
    via = Via.parse("SIP/2.0/udp pc33.Atlanta.com:5066;branch=z9hG4bK776asdhds;received=192.0.2.1;rport=5066;ttl=16")
    assert (via.protocol, via.transport, via.host, via.port) == ("SIP/2.0", "UDP", "pc33.atlanta.com", 5066)
    assert (via.branch, via.received, via.rport) == ("z9hG4bK776asdhds", "192.0.2.1", "5066")
    assert via.params["ttl"] == "16" and via.host_port == "pc33.atlanta.com:5066"
    assert str(via) == "SIP/2.0/UDP pc33.atlanta.com:5066;branch=z9hG4bK776asdhds;received=192.0.2.1;rport=5066;ttl=16"


def test_via_lws_ipv6_and_rport_states() -> None:
    via = Via.parse(" SIP / 2.0 / TLS   [2001:db8::9] : 5061 ; rport ; received = 2001:db8::1 ")
    assert (via.transport, via.host, via.port) == ("TLS", "2001:db8::9", 5061)
    assert via.rport == "" and via.received == "2001:db8::1"
    assert str(via) == "SIP/2.0/TLS [2001:db8::9]:5061;rport;received=2001:db8::1"
    assert Via.parse("SIP/2.0/TCP h").rport is None and Via.parse("SIP/2.0/TCP h").branch is None


def test_via_setters_and_copy() -> None:
    via = Via.parse("SIP/2.0/UDP h;branch=z9hG4bKx;rport")
    dup = via.copy()
    dup.received, dup.rport = "10.0.0.1", "5062"
    assert str(dup) == "SIP/2.0/UDP h;branch=z9hG4bKx;rport=5062;received=10.0.0.1"
    assert via.params == {"branch": "z9hG4bKx", "rport": None}
    dup.received, dup.rport = None, None
    assert dup.params == {"branch": "z9hG4bKx"}
    dup.rport = ""
    assert dup.rport == "" and str(dup).endswith(";rport")
    assert str(Via("TCP", "::1", 5060)) == "SIP/2.0/TCP [::1]:5060"


@pytest.mark.parametrize("text", [
    "", "SIP/2.0 host", "SIP/2.0/UDP", "SIP/2.0/UDP host:99999", "SIP/2.0/UDP host;;", "SIP/2.0/UDP 192.0.2.15;;,;,,",
    "SIP/2.0/UDP host;branch=", "SIP/2.0/UDP host junk", "SIP/2.0/UDP host:", "SIP/2.0/UDP [::1",
])
def test_invalid_vias(text: str) -> None:
    with pytest.raises(ParseError):
        Via.parse(text)


# ------------------------------------------------------------------ helpers

def test_parse_params() -> None:
    assert parse_params("") == {} and parse_params("  ") == {}
    assert parse_params(' ; A = 1 ;b; c="x;y, \\"z\\"" ') == {"a": "1", "b": None, "c": '"x;y, \\"z\\""'}
    for bad in (";", ";;a", "a=b", ";a=", ";a b", ';a="open'):
        with pytest.raises(ParseError):
            parse_params(bad)


def test_split_header_list() -> None:
    assert split_header_list("a, b ,c") == ["a", "b", "c"]
    items = split_header_list('"Doe, J" <sip:a@b;x=1,2>;q=0.5, <sip:c@d>')
    assert items == ['"Doe, J" <sip:a@b;x=1,2>;q=0.5', "<sip:c@d>"]
    assert split_header_list('"a \\", b" <sip:x@y>, z') == ['"a \\", b" <sip:x@y>', "z"]
    assert split_header_list(" , a,, ") == ["a"] and split_header_list("  ") == []


def test_quote_unquote_string() -> None:
    for text in ("plain", 'a "b" \\ c', "\x00\x7f", ""):
        assert unquote_string(quote_string(text)) == text
    assert unquote_string("token") == "token"

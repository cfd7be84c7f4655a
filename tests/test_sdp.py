"""SDP parse/serialise, anchoring for the relay, origin versioning and the echo answer."""

from __future__ import annotations

import pytest

from softswitch.sdp import Codec, Origin, OriginKeeper, SdpError, SessionDescription, anchor, answer_for


def crlf(text: str) -> bytes:
    return text.strip().replace("\n", "\r\n").encode() + b"\r\n"


# SIPp 3.6 built-in uac scenario, as rendered on loopback.
SIPP = crlf("""
v=0
o=user1 53655765 2353687637 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
""")

BARESIP = crlf("""
v=0
o=- 1683287377 2410219447 IN IP4 192.168.1.10
s=-
c=IN IP4 192.168.1.10
t=0 0
a=tool:baresip 1.0.0
m=audio 20000 RTP/AVP 96 9 0 8 101
b=AS:80
a=rtpmap:96 opus/48000/2
a=fmtp:96 stereo=1;sprop-stereo=1
a=rtpmap:9 G722/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=rtcp-rsize
a=sendrecv
a=label:1
a=ptime:20
""")

IPV6 = crlf("""
v=0
o=- 3 3 IN IP6 2001:db8::1
s=-
c=IN IP6 2001:db8::1
t=0 0
m=audio 5004 RTP/AVP 8
a=rtpmap:8 PCMA/8000
""")

# ICE-capable phone behind NAT: media-level c=, explicit a=rtcp, candidates, a disabled video stream.
ICE = crlf("""
v=0
o=alice 2890844526 2890844527 IN IP4 192.0.2.10
s=call
c=IN IP4 198.51.100.7
t=0 0
a=ice-ufrag:8hhY
a=ice-pwd:asd88fgpdd777uzjYhagZg
m=audio 45664 RTP/AVP 0 101
c=IN IP4 203.0.113.141
a=rtcp:53020 IN IP4 203.0.113.141
a=candidate:1 1 UDP 2130706431 10.0.1.1 8998 typ host
a=candidate:2 1 UDP 1694498815 203.0.113.141 45664 typ srflx raddr 10.0.1.1 rport 8998
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
m=video 0 RTP/AVP 96
a=rtpmap:96 H264/90000
""")

# RFC 4566 §5 example: the lines we do not interpret must come back in place.
RFC4566 = crlf("""
v=0
o=jdoe 2890844526 2890842807 IN IP4 10.47.16.5
s=SDP Seminar
i=A Seminar on the session description protocol
u=http://www.example.com/seminars/sdp.pdf
e=j.doe@example.com (Jane Doe)
c=IN IP4 224.2.17.12/127
t=2873397496 2873404696
a=recvonly
m=audio 49170 RTP/AVP 0
m=video 51372 RTP/AVP 99
a=rtpmap:99 h263-1998/90000
""")

US = Origin("-", "42", 7, "IN", "IP4", "10.0.0.1")


@pytest.mark.parametrize("raw", [SIPP, BARESIP, IPV6, ICE, RFC4566])
def test_round_trip_is_byte_exact(raw: bytes) -> None:
    assert SessionDescription.parse(raw).to_bytes() == raw


def test_sipp_default_sdp() -> None:
    sdp = SessionDescription.parse(SIPP)
    assert sdp.origin == Origin("user1", "53655765", 2353687637, "IN", "IP4", "127.0.0.1")
    assert sdp.media_address(0) == ("127.0.0.1", 6000)
    m = sdp.media[0]
    assert (m.kind, m.proto, m.fmts, m.rtcp_port, m.direction, m.ptime) == (
        "audio", "RTP/AVP", ["0"], 6001, "sendrecv", None)
    assert m.codecs == [Codec(0, "PCMU", 8000)]
    assert not sdp.is_hold(0)


def test_baresip_offer_codecs_and_telephone_event() -> None:
    sdp = SessionDescription.parse(BARESIP)
    m = sdp.media[0]
    assert m.codecs == [
        Codec(96, "opus", 48000, 2, "stereo=1;sprop-stereo=1"),
        Codec(9, "G722", 8000),
        Codec(0, "PCMU", 8000),
        Codec(8, "PCMA", 8000),
        Codec(101, "telephone-event", 8000, 1, "0-15"),
    ]
    assert m.ptime == 20
    assert m.other == [("b", "AS:80")]
    assert sdp.attributes == [("tool", "baresip 1.0.0")]
    assert ("rtcp-rsize", None) in m.attributes


def test_static_payload_types_without_rtpmap() -> None:
    sdp = SessionDescription.parse(SIPP.replace(b"RTP/AVP 0\r\na=rtpmap:0 PCMU/8000", b"RTP/AVP 8 18 9 0 97"))
    assert [(c.pt, c.name, c.rate) for c in sdp.media[0].codecs] == [
        (8, "PCMA", 8000), (18, "G729", 8000), (9, "G722", 8000), (0, "PCMU", 8000)]  # 97: no rtpmap


def test_lf_line_ends_are_accepted_and_written_as_crlf() -> None:
    sdp = SessionDescription.parse(BARESIP.replace(b"\r\n", b"\n").decode())
    assert sdp.to_bytes() == BARESIP


def test_ipv6() -> None:
    sdp = SessionDescription.parse(IPV6)
    assert sdp.media_address(0) == ("2001:db8::1", 5004)
    assert b"c=IN IP4 10.0.0.1\r\n" in anchor(sdp, "10.0.0.1", [30000]).to_bytes()
    assert b"c=IN IP6 2001:db8::2\r\n" in anchor(SessionDescription.parse(SIPP), "2001:db8::2", [30000]).to_bytes()


def test_media_level_connection_and_rtcp_attribute() -> None:
    sdp = SessionDescription.parse(ICE)
    assert sdp.connection_ip == "198.51.100.7"
    assert sdp.media_address(0) == ("203.0.113.141", 45664)
    assert sdp.media[0].rtcp_port == 53020
    assert sdp.media_address(1) == ("198.51.100.7", 0)
    assert SessionDescription.parse(RFC4566).media_address(0) == ("224.2.17.12", 49170)


def test_anchor_rewrites_addresses_and_strips_ice() -> None:
    offer = SessionDescription.parse(ICE)
    out = anchor(offer, "10.0.0.1", [30000, 30002], US)
    assert out.to_bytes() == crlf("""
v=0
o=- 42 7 IN IP4 10.0.0.1
s=call
c=IN IP4 10.0.0.1
t=0 0
m=audio 30000 RTP/AVP 0 101
c=IN IP4 10.0.0.1
a=rtcp:30001
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
m=video 0 RTP/AVP 96
a=rtpmap:96 H264/90000
""")
    assert offer.to_bytes() == ICE  # the input is untouched
    assert anchor(offer, "10.0.0.1", [30000, 30002]).origin == offer.origin
    with pytest.raises(ValueError):
        anchor(offer, "10.0.0.1", [30000])


def test_anchor_keeps_old_style_hold_and_adds_missing_connection() -> None:
    held = SessionDescription.parse(SIPP.replace(b"c=IN IP4 127.0.0.1", b"c=IN IP4 0.0.0.0"))
    out = anchor(held, "10.0.0.1", [30000])
    assert out.connection_ip == "0.0.0.0" and out.is_hold(0)
    no_session_c = SessionDescription.parse(SIPP.replace(b"c=IN IP4 127.0.0.1\r\n", b""))
    assert anchor(no_session_c, "10.0.0.1", [30000]).media_address(0) == ("10.0.0.1", 30000)


def test_origin_keeper_bumps_version_only_on_change() -> None:
    keeper = OriginKeeper(Origin("-", "42", 1, "IN", "IP4", "10.0.0.1"))
    offer = SessionDescription.parse(SIPP)
    first = keeper.stamp(anchor(offer, "10.0.0.1", [30000]))
    assert first.origin.sess_version == 1 and first.origin.sess_id == "42"
    assert keeper.stamp(anchor(offer, "10.0.0.1", [30000])).origin.sess_version == 1  # session refresh
    held = anchor(offer, "10.0.0.1", [30000])
    held.media[0].direction = "sendonly"
    assert keeper.stamp(held).origin.sess_version == 2
    assert keeper.stamp(held).origin.sess_version == 2
    assert keeper.stamp(anchor(offer, "10.0.0.1", [30000])).origin.sess_version == 3  # resumed
    assert held.origin == offer.origin  # stamping copies


def test_fresh_origin() -> None:
    a, b = Origin.fresh("10.0.0.1"), Origin.fresh("2001:db8::1")
    assert a.sess_id != b.sess_id and (a.addrtype, b.addrtype) == ("IP4", "IP6")


def test_answer_for_echo() -> None:
    answer = answer_for(SessionDescription.parse(BARESIP), "10.0.0.1", 40000, origin=US)
    assert answer.to_bytes() == crlf("""
v=0
o=- 42 7 IN IP4 10.0.0.1
s=-
c=IN IP4 10.0.0.1
t=0 0
m=audio 40000 RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
a=sendrecv
""")
    no_dtmf = answer_for(SessionDescription.parse(BARESIP), "10.0.0.1", 40000, supported=["pcma"],
                         telephone_event=False)
    assert no_dtmf.media[0].fmts == ["8"]


def test_answer_keeps_offered_payload_type_and_rejects_other_streams() -> None:
    offer = SessionDescription.parse(ICE.replace(b"101", b"96").replace(b"m=video 0", b"m=video 5000"))
    offer.media.append(offer.media[0].copy())  # a second audio stream
    answer = answer_for(offer, "10.0.0.1", 40000)
    assert [(m.kind, m.port, m.fmts) for m in answer.media] == [
        ("audio", 40000, ["0", "96"]), ("video", 0, ["96"]), ("audio", 0, ["0", "96"])]
    assert answer.media[0].codecs[1] == Codec(96, "telephone-event", 8000, 1, "0-16")


@pytest.mark.parametrize(("offered", "answered"), [
    ("sendonly", "recvonly"), ("recvonly", "sendonly"), ("inactive", "inactive"), ("sendrecv", "sendrecv")])
def test_answer_mirrors_direction(offered: str, answered: str) -> None:
    offer = SessionDescription.parse(SIPP)
    offer.media[0].direction = offered
    assert answer_for(offer, "10.0.0.1", 40000).media[0].direction == answered
    session_level = SessionDescription.parse(SIPP.replace(b"t=0 0\r\n", f"t=0 0\r\na={offered}\r\n".encode()))
    assert answer_for(session_level, "10.0.0.1", 40000).media[0].direction == answered


def test_answer_without_common_codec_raises() -> None:
    with pytest.raises(SdpError):
        answer_for(SessionDescription.parse(SIPP), "10.0.0.1", 40000, supported=("PCMA",))
    with pytest.raises(SdpError):  # SRTP: no keys to terminate it with
        answer_for(SessionDescription.parse(SIPP.replace(b"RTP/AVP", b"RTP/SAVP")), "10.0.0.1", 40000)
    with pytest.raises(SdpError):  # the only audio stream is disabled
        answer_for(SessionDescription.parse(SIPP.replace(b"audio 6000", b"audio 0")), "10.0.0.1", 40000)


@pytest.mark.parametrize(("change", "hold"), [
    (b"a=sendonly", True), (b"a=inactive", True), (b"a=recvonly", False), (b"a=sendrecv", False)])
def test_hold_detection(change: bytes, hold: bool) -> None:
    assert SessionDescription.parse(SIPP + change + b"\r\n").is_hold(0) is hold


def test_hold_detection_by_address_and_session_attribute() -> None:
    assert SessionDescription.parse(SIPP.replace(b"IN IP4 127.0.0.1\r\nt", b"IN IP4 0.0.0.0\r\nt")).is_hold(0)
    session_level = SessionDescription.parse(SIPP.replace(b"t=0 0\r\n", b"t=0 0\r\na=inactive\r\n"))
    assert session_level.is_hold(0)
    session_level.media[0].direction = "sendrecv"  # media level wins
    assert not session_level.is_hold(0)


def test_direction_setter_replaces() -> None:
    m = SessionDescription.parse(BARESIP).media[0]
    m.direction = "inactive"
    assert m.direction == "inactive" and [n for n, _ in m.attributes].count("sendrecv") == 0
    with pytest.raises(ValueError):
        m.direction = "onhold"


def test_copy_is_deep_enough() -> None:
    sdp = SessionDescription.parse(BARESIP)
    clone = sdp.copy()
    clone.origin.sess_version += 1
    clone.media[0].attributes.clear()
    clone.media[0].fmts.append("13")
    assert sdp.to_bytes() == BARESIP


@pytest.mark.parametrize("garbage", [
    b"", b"hello world", b"\xff\xfe\x00v=0", b"v=1\r\no=- 1 1 IN IP4 1.2.3.4\r\n",
    b"v=0\r\nthis is not sdp\r\n", b"v=0\r\ns=-\r\nt=0 0\r\n", b"v=0\r\no=- 1 x IN IP4 1.2.3.4\r\n",
    b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio port RTP/AVP 0\r\n",
    b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 70000 RTP/AVP 0\r\n",
    b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4\r\n", b"v=0\r\nv=0\r\no=- 1 1 IN IP4 1.2.3.4\r\n",
    b"<html><body>v=0</body></html>",
])
def test_garbage_is_rejected(garbage: bytes) -> None:
    with pytest.raises(SdpError):
        SessionDescription.parse(garbage)

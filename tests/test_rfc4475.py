"""RFC 4475 SIP torture tests against the sans-IO parser.

The messages are reproduced from the RFC (CRLF line ends; written here with LF and converted by
`crlf()`, with non-printable octets as escapes). Decisions where RFC 4475 allows a choice:

* lwsstart, trws: accepted (the RFC allows ignoring extra SP in the start line; we never re-emit it).
* baddate: accepted; Date is opaque to this layer and the RFC says not to reject unless it matters.
* regbadct: the message parses (Contact is parsed on access); reading `.contacts` raises ParseError
  (400), so the registrar answers 400 rather than inferring the angle brackets.
* mismatch02: 400 (the RFC prefers 501 but allows 400; the parser does not know which methods the
  application implements).
* badbranch: syntactically valid, accepted; the transaction layer decides what a bare magic cookie means.
* badinv01: 400; the top Via's parameters are garbage, so the stateless answer uses its salvaged
  sent-protocol/sent-by.
* insuf: 400, answered through its Via with what it has (RFC 4475: "Ideally, it will respond with a
  400 Bad Request"); the client matches the answer by branch.
* scalarlg, bigcode: invalid responses are dropped (error_response() gives None).
"""

from __future__ import annotations

import contextlib
import random

import pytest

from softswitch.sip.framing import StreamFramer
from softswitch.sip.message import ParseError, Request, Response, error_response, parse_message
from softswitch.sip.uri import AbsoluteURI, SipURI, unquote_string


def crlf(text: bytes) -> bytes:
    return text.replace(b"\n", b"\r\n")


SDP_150 = b"""v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.1
s=-
c=IN IP4 192.0.2.1
t=0 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
"""


def sdp(ip: str, t: str = "0 0") -> bytes:
    return SDP_150.replace(b"192.0.2.1", ip.encode()).replace(b"t=0 0", b"t=" + t.encode())


# ---------------------------------------------------------------- 3.1.1 valid messages

WSINV = crlf(rb'''INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0
TO :
 sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n
from   : "J Rosenberg \\\""       <sip:jdrosen@example.com>
  ;
  tag = 98asjd8
MaX-fOrWaRdS: 0068
Call-ID: wsinv.ndaksdj@192.0.2.1
Content-Length   : 150
cseq: 0009
  INVITE
Via  : SIP  /   2.0
 /UDP
    192.0.2.2;branch=390skdjuw
s :
NewFangledHeader:   newfangled value
 continued newfangled value
UnknownHeaderWithUnusualValue: ;;,,;;,;
Content-Type: application/sdp
Route:
 <sip:services.example.com;lr;unknownwith=value;unknown-no-value>
v:  SIP  / 2.0  / TCP     spindle.example.com   ;
  branch  =   z9hG4bK9ikj8  ,
 SIP  /    2.0   / UDP  192.168.255.111   ; branch=
 z9hG4bK30239
m:"Quoted string \"\"" <sip:jdrosen@example.com> ; newparam =
      newvalue ;
  secondparam ; q = 0.33

''' + sdp("192.0.2.3").replace(b"c=IN IP4 192.0.2.3", b"c=IN IP4 192.0.2.4"))

INTMETH = crlf(
    b"!interesting-Method0123456789_*+`.%indeed'~ sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:"
    b"&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com SIP/2.0\n"
    b"Via: SIP/2.0/TCP host1.example.com;branch=z9hG4bK-.!%66*_+`'~\n"
    b'To: "BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f" <sip:1_unusual.URI~(to-be!sure)&isn\'t+it$/crazy?,/;;*@example.com>\n'
    b"From: token1~` token2'+_ token3*%!.- <sip:mundane@example.com>;fromParam''~+*_!.-%="
    b'"\xd1\x80\xd0\xb0\xd0\xb1\xd0\xbe\xd1\x82\xd0\xb0\xd1\x8e\xd1\x89\xd0\xb8\xd0\xb9";tag=_token~1\'+`*%!-.\n'
    b"Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{\n"
    b"CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~\n"
    b"Max-Forwards: 255\n"
    b"extensionHeader-!.%*+_`'~:\xef\xbb\xbf\xe5\xa4\xa7\xe5\x81\x9c\xe9\x9b\xbb\n"
    b"Content-Length: 0\n"
    b"\n"
)

ESC01 = crlf(b"""INVITE sip:sips%3Auser%40example.com@example.net SIP/2.0
To: sip:%75se%72@example.com
From: <sip:I%20have%20spaces@example.net>;tag=938
Max-Forwards: 87
i: esc01.239409asdfakjkn23onasd0-3234
CSeq: 234234 INVITE
Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bKkdjuw
C: application/sdp
Contact:
  <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>
Content-Length: 150

""" + SDP_150)

ESCNULL = crlf(b"""REGISTER sip:example.com SIP/2.0
To: sip:null-%00-null@example.com
From: sip:null-%00-null@example.com;tag=839923423
Max-Forwards: 70
Call-ID: escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd
CSeq: 14398234 REGISTER
Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw
Contact: <sip:%00@host5.example.com>
Contact: <sip:%00%00@host5.example.com>
L:0

""")

ESC02 = crlf(b"""RE%47IST%45R sip:registrar.example.com SIP/2.0
To: "%Z%45" <sip:resource@example.com>
From: "%Z%45" <sip:resource@example.com>;tag=f232jadfj23
Call-ID: esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf
Via: SIP/2.0/TCP host.example.com;branch=z9hG4bK209%fzsnel234
CSeq: 29344 RE%47IST%45R
Max-Forwards: 70
Contact: <sip:alias1@host1.example.com>
C%6Fntact: <sip:alias2@host2.example.com>
Contact: <sip:alias3@host3.example.com>
l: 0

""")

LWSDISP = crlf(b"""OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: caller<sip:caller@example.com>;tag=323
Max-Forwards: 70
Call-ID: lwsdisp.1234abcd@funky.example.com
CSeq: 60 OPTIONS
Via: SIP/2.0/UDP funky.example.com;branch=z9hG4bKkdjuw
l: 0

""")

_LONG_TO = (
    b'"I have a user name of ' + b"extreme" * 10 + b' proportion"<sip:user@example.com:6000;unknownparam1=very'
    + b"long" * 20 + b"value;longparam" + b"name" * 25 + b"=shortvalue;very" + b"long" * 25
    + b"ParameterNameWithNoValue>"
)
_LONG_FROM = (
    b"sip:" + b"amazinglylongcallername" * 5 + b"@example.net;tag=12" + b"982" * 50 + b"424;unknownheaderparam"
    + b"name" * 20 + b"=unknowheaderparam" + b"value" * 15 + b";unknownValueless" + b"paramname" * 10
)
LONGREQ = crlf(
    b"INVITE sip:user@example.com SIP/2.0\nTo: " + _LONG_TO + b"\nF: " + _LONG_FROM + b"\n"
    b"Call-ID: longreq.one" + b"really" * 20 + b"longcallid\nCSeq: 3882340 INVITE\n"
    b"Unknown-" + b"Long" * 20 + b"-Name: unknown-" + b"long" * 20 + b"-value; unknown-" + b"long" * 20
    + b"-parameter-name = unknown-" + b"long" * 20 + b"-parameter-value\n"
    + b"""Via: SIP/2.0/TCP sip33.example.com
v: SIP/2.0/TCP sip32.example.com
V: SIP/2.0/TCP sip31.example.com
Via: SIP/2.0/TCP sip30.example.com
ViA: SIP/2.0/TCP sip29.example.com
VIa: SIP/2.0/TCP sip28.example.com
VIA: SIP/2.0/TCP sip27.example.com
via: SIP/2.0/TCP sip26.example.com
viA: SIP/2.0/TCP sip25.example.com
vIa: SIP/2.0/TCP sip24.example.com
vIA: SIP/2.0/TCP sip23.example.com
V :  SIP/2.0/TCP sip22.example.com
v :  SIP/2.0/TCP sip21.example.com
V  : SIP/2.0/TCP sip20.example.com
v  : SIP/2.0/TCP sip19.example.com
Via : SIP/2.0/TCP sip18.example.com
Via  : SIP/2.0/TCP sip17.example.com
"""
    + b"".join(b"Via: SIP/2.0/TCP sip%d.example.com\n" % n for n in range(16, 0, -1))
    + b"Via: SIP/2.0/TCP host.example.com;received=192.0.2.5;branch=very" + b"long" * 50 + b"branchvalue\n"
    b"Max-Forwards: 70\nContact: <sip:" + b"amazinglylongcallername" * 5 + b"@host5.example.net>\n"
    b"Content-Type: application/sdp\nl: 150\n\n" + SDP_150
)

DBLREQ = crlf(b"""REGISTER sip:example.com SIP/2.0
To: sip:j.user@example.com
From: sip:j.user@example.com;tag=43251j3j324
Max-Forwards: 8
I: dblreq.0ha0isndaksdj99sdfafnl3lk233412
Contact: sip:j.user@host.example.com
CSeq: 8 REGISTER
Via: SIP/2.0/UDP 192.0.2.125;branch=z9hG4bKkdjuw23492
Content-Length: 0

INVITE sip:joe@example.com SIP/2.0
t: sip:joe@example.com
From: sip:caller@example.net;tag=141334
Max-Forwards: 8
Call-ID: dblreq.0ha0isnda977644900765@192.0.2.15
CSeq: 8 INVITE
Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw380234
Content-Type: application/sdp
Content-Length: 150

""" + sdp("192.0.2.15").replace(b"m=video", b"m =video"))

SEMIURI = crlf(b"""OPTIONS sip:user;par=u%40example.net@example.com SIP/2.0
To: sip:j_user@example.com
From: sip:caller@example.org;tag=33242
Max-Forwards: 3
Call-ID: semiuri.0ha0isndaksdj
CSeq: 8 OPTIONS
Accept: application/sdp, application/pkcs7-mime,
        multipart/mixed, multipart/signed,
        message/sip, message/sipfrag
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw
l: 0

""")

TRANSPORTS = crlf(b"""OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: <sip:caller@example.com>;tag=323
Max-Forwards: 70
Call-ID:  transports.kijh4akdnaqjkwendsasfdj
Accept: application/sdp
CSeq: 60 OPTIONS
Via: SIP/2.0/UDP t1.example.com;branch=z9hG4bKkdjuw
Via: SIP/2.0/SCTP t2.example.com;branch=z9hG4bKklasjdhf
Via: SIP/2.0/TLS t3.example.com;branch=z9hG4bK2980unddj
Via: SIP/2.0/UNKNOWN t4.example.com;branch=z9hG4bKasd0f3en
Via: SIP/2.0/TCP t5.example.com;branch=z9hG4bK0a9idfnee
l: 0

""")

# The second body part is a DER-encoded PKCS#7 signature (binary, contains NUL, CR and LF).
MPART01_DER = bytes.fromhex(
    "3082015206092a864886f70d010702a08201433082013f0201013109300706052b0e03021a300b06092a864886f70d010701"
    "318201203082011c020101307c3070310b3009060355040613025553311330110603550408130a43616c69666f726e6961"
    "3111300f0603550407130853616e204a6f7365310e300c060355040a1305736970697431293027060355040b1320536970"
    "6974205465737420436572746966696361746520417574686f7269747902080195007102330113300706052b0e03021a30"
    "0d06092a864886f70d01010105000481808ef466f948f0522dd2e5978e9d95aae9f2fe15a06659716292e8da2aa8d8350a"
    "68ceffae3cbd2bff1675ddd5648e593dd64728f26220f7e941749e330d9a15edabdb93d10c42102e7b7289d29cc0c9ae2e"
    "fbc7c0cff9172f3b027e4fc027e1546de4b6aa3abb3e66cccb5dd6c64b8383149cb8e6ff182d944fe57b65bc99d005"
)
MPART01_BODY = (
    crlf(b"""--7a9cbec02ceef655
Content-Type: text/plain
Content-Transfer-Encoding: binary

Hello
--7a9cbec02ceef655
Content-Type: application/octet-stream
Content-Transfer-Encoding: binary

""")
    + MPART01_DER
    + b"\r\n--7a9cbec02ceef655--\r\n"
)
MPART01_IDENTITY = (
    b"Identity: r5mwreLuyDRYBi/0TiPwEsY3rEVsk/G2WxhgTV1PF7hHuLIK0YWVKZhKv9Mj8UeXqkMVbnVq37CD+813gvYjcBUaZn"
    b"gQmXc9WNZSDNGCzA+fWl9MEUHWIZo1CeJebdY/XlgKeTa0Olvq0rt70Q5jiSfbqMJmQFteeivUhkMWYUA="
)
MPART01 = crlf(b"""MESSAGE sip:kumiko@example.org SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-;rport
Max-Forwards: 70
Route: <sip:127.0.0.1:5080>
""" + MPART01_IDENTITY + b"""
Contact: <sip:fluffy@127.0.0.1:5070>
To: <sip:kumiko@example.org>
From: <sip:fluffy@example.com>;tag=2fb0dcc9
Call-ID: 3d9485ad0c49859b@Zmx1ZmZ5LW1hYy0xNi5sb2NhbA..
CSeq: 1 MESSAGE
Content-Transfer-Encoding: binary
Content-Type: multipart/mixed;boundary=7a9cbec02ceef655
Date: Sat, 15 Oct 2005 04:44:56 GMT
User-Agent: SIPimp.org/0.2.5 (curses)
Content-Length: 553

""") + MPART01_BODY

UNREASON_PHRASE = "= 2**3 * 5**2 но сто девяносто девять - простое"
UNREASON = crlf(b"SIP/2.0 200 " + UNREASON_PHRASE.encode() + b"""
Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923
Call-ID: unreason.1234ksdfak3j2erwedfsASdf
CSeq: 35 INVITE
From: sip:user@example.com;tag=11141343
To: sip:user@example.edu;tag=2229
Content-Length: 154
Content-Type: application/sdp
Contact: <sip:user@host198.example.com>

""" + sdp("192.0.2.198"))

NOREASON = crlf(b"SIP/2.0 100 \n" + b"""Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe
Call-ID: noreason.asndj203insdf99223ndf
CSeq: 35 INVITE
From: <sip:user@example.com>;tag=39ansfi3
To: <sip:user@example.edu>;tag=902jndnke3
Content-Length: 0
Contact: <sip:user@host105.example.com>

""")


def test_wsinv() -> None:
    msg = parse_message(WSINV)
    assert isinstance(msg, Request) and msg.method == "INVITE"
    assert isinstance(msg.uri, SipURI) and msg.uri.params == {"unknownparam": None}
    assert (msg.uri.user, msg.uri.host) == ("vivekg", "chair-dnrc.example.com")
    assert msg.to.tag == "1918181833n" and msg.to.display is None
    assert msg.from_.display == 'J Rosenberg \\"' and msg.from_.tag == "98asjd8"
    assert msg.max_forwards == 68 and msg.cseq == (9, "INVITE")
    assert msg.call_id == "wsinv.ndaksdj@192.0.2.1"
    assert [(v.transport, v.host, v.branch) for v in msg.vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert msg.headers.get("Subject") == ""
    assert msg.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert msg.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert msg.headers.get_all("UnknownHeaderWithUnusualValue") == [";;,,;;,;"]
    route = msg.headers.get_all("Route")
    assert route == ["<sip:services.example.com;lr;unknownwith=value;unknown-no-value>"]
    (contact,) = msg.contacts
    assert contact.display == 'Quoted string ""' and contact.uri.user == "jdrosen"
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert msg.content_type == "application/sdp" and len(msg.body) == 150


def test_intmeth() -> None:
    msg = parse_message(INTMETH)
    method = "!interesting-Method0123456789_*+`.%indeed'~"
    assert isinstance(msg, Request) and msg.method == method and msg.cseq == (139122385, method)
    assert isinstance(msg.uri, SipURI)
    assert msg.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert msg.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert msg.uri.host == "example.com"
    assert msg.top_via.branch == "z9hG4bK-.!%66*_+`'~"
    assert msg.to.display == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert msg.to.uri.user == msg.uri.user and msg.to.uri.password is None
    frm = msg.from_
    assert frm.display == "token1~` token2'+_ token3*%!.-" and frm.tag == "_token~1'+`*%!-."
    assert unquote_string(frm.params["fromparam''~+*_!.-%"] or "") == "работающий"
    assert msg.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert msg.max_forwards == 255
    assert msg.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"


def test_esc01() -> None:
    msg = parse_message(ESC01)
    assert isinstance(msg, Request) and isinstance(msg.uri, SipURI)
    assert msg.uri.user == "sips:user@example.com" and msg.uri.host == "example.net"
    assert msg.to.uri.user == "user"
    assert msg.from_.uri.user == "I have spaces" and msg.from_.tag == "938"
    assert msg.call_id == "esc01.239409asdfakjkn23onasd0-3234" and msg.content_type == "application/sdp"
    (contact,) = msg.contacts
    assert contact.uri.user == "caller"
    # %-decoding is never recursive: n%61me=v%61lue%25%34%31 is name=value%41, not valueA.
    assert contact.uri.params == {"lr": None, "name": "value%41"}
    assert str(contact.uri) == "sip:caller@host5.example.net;lr;name=value%2541"


def test_escnull() -> None:
    msg = parse_message(ESCNULL)
    assert msg.to.uri.user == "null-\x00-null" and msg.from_.tag == "839923423"
    assert [c.uri.user for c in msg.contacts] == ["\x00", "\x00\x00"]
    assert [str(c.uri) for c in msg.contacts] == ["sip:%00@host5.example.com", "sip:%00%00@host5.example.com"]
    assert msg.body == b""


def test_esc02() -> None:
    msg = parse_message(ESC02)
    assert isinstance(msg, Request) and msg.method == "RE%47IST%45R" and msg.cseq == (29344, "RE%47IST%45R")
    assert msg.to.display == "%Z%45" and msg.from_.display == "%Z%45"
    assert msg.top_via.branch == "z9hG4bK209%fzsnel234"
    assert [c.uri.user for c in msg.contacts] == ["alias1", "alias3"]  # C%6Fntact is another header
    assert msg.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def test_lwsdisp() -> None:
    msg = parse_message(LWSDISP)
    assert msg.from_.display == "caller" and msg.from_.uri.user == "caller" and msg.from_.tag == "323"


def test_longreq() -> None:
    msg = parse_message(LONGREQ)
    to = msg.to
    assert to.display == "I have a user name of " + "extreme" * 10 + " proportion"
    assert isinstance(to.uri, SipURI) and to.uri.port == 6000 and to.tag is None
    assert to.uri.params["unknownparam1"] == "very" + "long" * 20 + "value"
    assert to.uri.params["longparam" + "name" * 25] == "shortvalue"
    assert to.uri.params[("very" + "long" * 25 + "ParameterNameWithNoValue").lower()] is None
    assert msg.from_.tag == "12" + "982" * 50 + "424"
    assert msg.from_.params["unknownvaluelessparamname" + "paramname" * 9] is None
    vias = msg.vias
    assert len(vias) == 34 and [v.host for v in vias[:33]] == [f"sip{n}.example.com" for n in range(33, 0, -1)]
    assert vias[33].received == "192.0.2.5" and vias[33].branch == "very" + "long" * 50 + "branchvalue"
    assert msg.call_id == "longreq.one" + "really" * 20 + "longcallid"
    assert len(msg.body) == 150


def test_dblreq_ignores_octets_after_content_length() -> None:
    msg = parse_message(DBLREQ)
    assert isinstance(msg, Request) and msg.method == "REGISTER" and msg.body == b""
    assert msg.call_id == "dblreq.0ha0isndaksdj99sdfafnl3lk233412"
    assert [c.uri.host for c in msg.contacts] == ["host.example.com"]
    assert b"INVITE" not in msg.to_bytes()


def test_semiuri() -> None:
    msg = parse_message(SEMIURI)
    assert isinstance(msg.uri, SipURI) and msg.uri.user == "user;par=u@example.net" and msg.uri.params == {}
    assert msg.headers.get_all("Accept") == [
        "application/sdp", "application/pkcs7-mime", "multipart/mixed", "multipart/signed",
        "message/sip", "message/sipfrag",
    ]


def test_transports() -> None:
    msg = parse_message(TRANSPORTS)
    assert [v.transport for v in msg.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    assert msg.call_id == "transports.kijh4akdnaqjkwendsasfdj"


def test_mpart01_binary_body_framed_by_content_length() -> None:
    msg = parse_message(MPART01)
    assert msg.body == MPART01_BODY and len(msg.body) == 553 and b"\x00" in msg.body
    via = msg.top_via
    assert (via.host, via.port, via.rport) == ("127.0.0.1", 5070, "")
    assert msg.headers.get("Date") == "Sat, 15 Oct 2005 04:44:56 GMT"
    assert msg.headers.get_all("Date") == ["Sat, 15 Oct 2005 04:44:56 GMT"]
    assert msg.headers.get("Identity", "").endswith("UA=")
    assert msg.content_type == "multipart/mixed;boundary=7a9cbec02ceef655"
    assert parse_message(msg.to_bytes()).body == MPART01_BODY


def test_unreason() -> None:
    msg = parse_message(UNREASON)
    assert isinstance(msg, Response) and msg.status == 200 and msg.reason == UNREASON_PHRASE
    assert msg.cseq == (35, "INVITE") and msg.to.tag == "2229" and len(msg.body) == 154


def test_noreason() -> None:
    msg = parse_message(NOREASON)
    assert isinstance(msg, Response) and (msg.status, msg.reason) == (100, "")
    assert msg.to.tag == "902jndnke3"


VALID = [
    WSINV, INTMETH, ESC01, ESCNULL, ESC02, LWSDISP, LONGREQ, DBLREQ, SEMIURI, TRANSPORTS, MPART01, UNREASON, NOREASON,
]


@pytest.mark.parametrize("data", VALID)
def test_valid_messages_round_trip(data: bytes) -> None:
    msg = parse_message(data)
    again = parse_message(msg.to_bytes())
    assert again.to_bytes() == msg.to_bytes()
    assert (again.call_id, again.cseq, again.body) == (msg.call_id, msg.cseq, msg.body)
    assert [str(v) for v in again.vias] == [str(v) for v in msg.vias]
    assert (again.to, again.from_, again.contacts) == (msg.to, msg.from_, msg.contacts)
    if isinstance(msg, Request):
        assert isinstance(again, Request) and (again.method, again.uri) == (msg.method, msg.uri)


# ---------------------------------------------------------------- 3.1.2 invalid messages

BADINV01 = crlf(b"""INVITE sip:user@example.com SIP/2.0
To: sip:j.user@example.com
From: sip:caller@example.net;tag=134161461246
Max-Forwards: 7
Call-ID: badinv01.0ha0isndaksdjasdf3234nas
CSeq: 8 INVITE
Via: SIP/2.0/UDP 192.0.2.15;;,;,,
Contact: "Joe" <sip:joe@example.org>;;;;
Content-Length: 152
Content-Type: application/sdp

""" + sdp("192.0.2.15"))

CLERR = crlf(b"""INVITE sip:user@example.com SIP/2.0
Max-Forwards: 80
To: sip:j.user@example.com
From: sip:caller@example.net;tag=93942939o2
Contact: <sip:caller@hungry.example.net>
Call-ID: clerr.0ha0isndaksdjweiafasdk3
CSeq: 8 INVITE
Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bK-39234-23523
Content-Type: application/sdp
Content-Length: 9999

""" + sdp("192.0.2.155"))

NCL = crlf(b"""INVITE sip:user@example.com SIP/2.0
Max-Forwards: 254
To: sip:j.user@example.com
From: sip:caller@example.net;tag=32394234
Call-ID: ncl.0ha0isndaksdj2193423r542w35
CSeq: 0 INVITE
Via: SIP/2.0/UDP 192.0.2.53;branch=z9hG4bKkdjuw
Contact: <sip:caller@example53.example.net>
Content-Type: application/sdp
Content-Length: -999

""" + sdp("192.0.2.53"))

SCALAR02 = crlf(b"""REGISTER sip:example.com SIP/2.0
Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bK342sdfoi3
To: <sip:user@example.com>
From: <sip:user@example.com>;tag=239232jh3
CSeq: 36893488147419103232 REGISTER
Call-ID: scalar02.23o0pd9vanlq3wnrlnewofjas9ui32
Max-Forwards: 300
Expires: 1""" + b"0" * 100 + b"""
Contact: <sip:user@host129.example.com>
  ;expires=280297596632815
Content-Length: 0

""")

SCALARLG = crlf(b"""SIP/2.0 503 Service Unavailable
Via: SIP/2.0/TCP host129.example.com;branch=z9hG4bKzzxdiwo34sw;received=192.0.2.129
To: <sip:user@example.com>
From: <sip:other@example.net>;tag=2easdjfejw
CSeq: 9292394834772304023312 OPTIONS
Call-ID: scalarlg.noase0of0234hn2qofoaf0232aewf2394r
Retry-After: 949302838503028349304023988
Warning: 1812 overture "In Progress"
Content-Length: 0

""")

QUOTBAL = crlf(b"""INVITE sip:user@example.com SIP/2.0
To: "Mr. J. User <sip:j.user@example.com>
From: sip:caller@example.net;tag=93334
Max-Forwards: 10
Call-ID: quotbal.aksdj
Contact: <sip:caller@host59.example.net>
CSeq: 8 INVITE
Via: SIP/2.0/UDP 192.0.2.59:5050;branch=z9hG4bKkdjuw39234
Content-Type: application/sdp
Content-Length: 152

""" + sdp("192.0.2.15"))

LTGTRURI = crlf(b"""INVITE <sip:user@example.com> SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=39291
Max-Forwards: 23
Call-ID: ltgtruri.1@192.0.2.5
CSeq: 1 INVITE
Via: SIP/2.0/UDP 192.0.2.5
Contact: <sip:caller@host5.example.net>
Content-Type: application/sdp
Content-Length: 159

""" + sdp("192.0.2.5", "3149328700 0"))

LWSRURI = crlf(b"""INVITE sip:user@example.com; lr SIP/2.0
To: sip:user@example.com;tag=3xfe-9921883-z9f
From: sip:caller@example.net;tag=231413434
Max-Forwards: 5
Call-ID: lwsruri.asdfasdoeoi2323-asdfwrn23-asd834rk423
CSeq: 2130706432 INVITE
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKkdjuw2395
Contact: <sip:caller@host1.example.net>
Content-Type: application/sdp
Content-Length: 159

""" + sdp("192.0.2.1", "3149328700 0"))

LWSSTART = crlf(b"""INVITE  sip:user@example.com  SIP/2.0
Max-Forwards: 8
To: sip:user@example.com
From: sip:caller@example.net;tag=8814
Call-ID: lwsstart.dfknq234oi243099adsdfnawe3@example.com
CSeq: 1893884 INVITE
Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw3923
Contact: <sip:caller@host1.example.net>
Content-Type: application/sdp
Content-Length: 150

""" + SDP_150)

TRWS = crlf(b"OPTIONS sip:remote-target@example.com SIP/2.0  \n" + b"""\
Via: SIP/2.0/TCP host1.examle.com;branch=z9hG4bK299342093
To: <sip:remote-target@example.com>
From: <sip:local-resource@example.com>;tag=329429089
Call-ID: trws.oicu34958239neffasdhr2345r
Accept: application/sdp
CSeq: 238923 OPTIONS
Max-Forwards: 70
Content-Length: 0

""")

ESCRURI = crlf(b"""INVITE sip:user@example.com?Route=%3Csip:example.com%3E SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=341518
Max-Forwards: 7
Contact: <sip:caller@host39923.example.net>
Call-ID: escruri.23940-asdfhj-aje3br-234q098w-fawerh2q-h4n5
CSeq: 149209342 INVITE
Via: SIP/2.0/UDP host-of-the-hour.example.com;branch=z9hG4bKkdjuw
Content-Type: application/sdp
Content-Length: 150

""" + SDP_150)

BADDATE = crlf(b"""INVITE sip:user@example.com SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=2234923
Max-Forwards: 70
Call-ID: baddate.239423mnsadf3j23lj42--sedfnm234
CSeq: 1392934 INVITE
Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw
Date: Fri, 01 Jan 2010 16:00:00 EST
Contact: <sip:caller@host5.example.net>
Content-Type: application/sdp
Content-Length: 150

""" + sdp("192.0.2.5"))

REGBADCT = crlf(b"""REGISTER sip:example.com SIP/2.0
To: sip:user@example.com
From: sip:user@example.com;tag=998332
Max-Forwards: 70
Call-ID: regbadct.k345asrl3fdbv@10.0.0.1
CSeq: 1 REGISTER
Via: SIP/2.0/UDP 135.180.130.133:5060;branch=z9hG4bKkdjuw
Contact: sip:user@example.com?Route=%3Csip:sip.example.com%3E
l: 0

""")

BADASPEC = crlf(b"""OPTIONS sip:user@example.org SIP/2.0
Via: SIP/2.0/UDP host4.example.com:5060;branch=z9hG4bKkdju43234
Max-Forwards: 70
From: "Bell, Alexander" <sip:a.g.bell@example.com>;tag=433423
To: "Watson, Thomas" < sip:t.watson@example.org >
Call-ID: badaspec.sdf0234n2nds0a099u23h3hnnw009cdkne3
Accept: application/sdp
CSeq: 3923239 OPTIONS
l: 0

""")

BADDN = crlf(b"""OPTIONS sip:t.watson@example.org SIP/2.0
Via:     SIP/2.0/UDP c.example.com:5060;branch=z9hG4bKkdjuw
Max-Forwards:      70
From:    Bell, Alexander <sip:a.g.bell@example.com>;tag=43
To:      Watson, Thomas <sip:t.watson@example.org>
Call-ID: baddn.31415@c.example.com
Accept: application/sdp
CSeq:    3923239 OPTIONS
l: 0

""")

BADVERS = crlf(b"""OPTIONS sip:t.watson@example.org SIP/7.0
Via:     SIP/7.0/UDP c.example.com;branch=z9hG4bKkdjuw
Max-Forwards:     70
From:    A. Bell <sip:a.g.bell@example.com>;tag=qweoiqpe
To:      T. Watson <sip:t.watson@example.org>
Call-ID: badvers.31417@c.example.com
CSeq:    1 OPTIONS
l: 0

""")

MISMATCH01 = crlf(b"""OPTIONS sip:user@example.com SIP/2.0
To: sip:j.user@example.com
From: sip:caller@example.net;tag=34525
Max-Forwards: 6
Call-ID: mismatch01.dj0234sxdfl3
CSeq: 8 INVITE
Via: SIP/2.0/UDP host.example.com;branch=z9hG4bKkdjuw
l: 0

""")

MISMATCH02 = crlf(b"""NEWMETHOD sip:user@example.com SIP/2.0
To: sip:j.user@example.com
From: sip:caller@example.net;tag=34525
Max-Forwards: 6
Call-ID: mismatch02.dj0234sxdfl3
CSeq: 8 INVITE
Contact: <sip:caller@host.example.net>
Via: SIP/2.0/UDP host.example.net;branch=z9hG4bKkdjuw
Content-Type: application/sdp
l: 138

""" + SDP_150.replace(b"s=-\n", b"").replace(b"t=0 0\n", b""))

BIGCODE = crlf(b"""SIP/2.0 4294967301 better not break the receiver
Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe
Call-ID: bigcode.asdof3uj203asdnf3429uasdhfas3ehjasdfas9i
CSeq: 353494 INVITE
From: <sip:user@example.com>;tag=39ansfi3
To: <sip:user@example.edu>;tag=902jndnke3
Content-Length: 0
Contact: <sip:user@host105.example.com>

""")

# (name, message, status, reason fragment, answered statelessly?)
INVALID = [
    ("badinv01", BADINV01, 400, "Bad Via", True),
    ("clerr", CLERR, 400, "Content-Length", True),
    ("ncl", NCL, 400, "Content-Length", True),
    ("scalar02", SCALAR02, 400, "CSeq", True),
    ("scalarlg", SCALARLG, 400, "CSeq", False),
    ("quotbal", QUOTBAL, 400, "Bad To", True),
    ("ltgtruri", LTGTRURI, 400, "URI", True),
    ("lwsruri", LWSRURI, 400, "Request-Line", True),
    ("escruri", ESCRURI, 400, "Request-URI", True),
    ("badaspec", BADASPEC, 400, "Bad To", True),
    ("baddn", BADDN, 400, "Bad From", True),
    ("badvers", BADVERS, 505, "Version Not Supported", True),
    ("mismatch01", MISMATCH01, 400, "CSeq method", True),
    ("mismatch02", MISMATCH02, 400, "CSeq method", True),
    ("bigcode", BIGCODE, 400, "Status", False),
]


@pytest.mark.parametrize(("name", "data", "status", "reason", "answered"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_messages(name: str, data: bytes, status: int, reason: str, answered: bool) -> None:
    with pytest.raises(ParseError) as info:
        parse_message(data)
    err = info.value
    assert err.status == status and reason in err.reason
    response = error_response(err)
    if not answered:
        assert response is None
        return
    assert response is not None and (response.status, response.reason) == (status, err.reason)
    raw = err.headers
    assert raw is not None
    for header in ("From", "Call-ID", "CSeq"):  # copied verbatim, even when it is the broken one
        assert response.headers.get(header) == raw.get(header)
    assert response.to_bytes().startswith(f"SIP/2.0 {status} {err.reason}\r\n".encode())
    salvaged = ["SIP/2.0/UDP 192.0.2.15"]  # badinv01: sent-by kept, garbage parameters dropped
    assert response.headers.get_all("Via") == (salvaged if name == "badinv01" else raw.get_all("Via"))
    assert response.top_via.host  # routable back to the sender


def test_badvers_answer_adds_stateless_to_tag() -> None:
    answers = []
    for _ in range(2):
        with pytest.raises(ParseError) as info:
            parse_message(BADVERS)
        answers.append(error_response(info.value))
    first, second = answers
    assert first is not None and second is not None
    assert first.to.tag is not None and first.to.tag == second.to.tag  # retransmission -> same tag
    assert first.to.uri == SipURI(user="t.watson", host="example.org")


def test_quotbal_answer_copies_the_broken_to_verbatim() -> None:
    with pytest.raises(ParseError) as info:
        parse_message(QUOTBAL)
    response = error_response(info.value)
    assert response is not None and response.headers.get("To") == '"Mr. J. User <sip:j.user@example.com>'


def test_lwsstart_and_trws_are_accepted_and_normalised() -> None:
    start = parse_message(LWSSTART)
    assert isinstance(start, Request) and str(start.uri) == "sip:user@example.com"
    assert start.to_bytes().startswith(b"INVITE sip:user@example.com SIP/2.0\r\n")
    trws = parse_message(TRWS)
    assert isinstance(trws, Request)
    assert trws.to_bytes().startswith(b"OPTIONS sip:remote-target@example.com SIP/2.0\r\n")


def test_baddate_is_accepted() -> None:
    msg = parse_message(BADDATE)
    assert msg.headers.get("Date") == "Fri, 01 Jan 2010 16:00:00 EST"


def test_regbadct_contact_is_rejected_on_access() -> None:
    msg = parse_message(REGBADCT)
    with pytest.raises(ParseError) as info:
        _ = msg.contacts
    assert info.value.status == 400


def test_scalar02_out_of_range_values() -> None:
    with pytest.raises(ParseError) as info:
        parse_message(SCALAR02)
    err = info.value
    assert "CSeq" in err.reason
    # Once CSeq is fixed the other aberrant values are the application's to clamp.
    fixed = parse_message(SCALAR02.replace(b"36893488147419103232", b"1"))
    assert fixed.max_forwards == 300 and fixed.expires == 10**100
    assert fixed.contacts[0].params["expires"] == "280297596632815"


def test_clerr_on_a_stream_waits_instead() -> None:
    framer = StreamFramer()
    assert framer.feed(CLERR) == []  # a stream peer may still send the rest


# ---------------------------------------------------------------- 3.2 / 3.3 semantics a parser sees

BADBRANCH = crlf(b"""OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: sip:caller@example.org;tag=33242
Max-Forwards: 3
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK
Accept: application/sdp
Call-ID: badbranch.sadonfo23i420jv0as0derf3j3n
CSeq: 8 OPTIONS
l: 0

""")

INSUF = crlf(b"""INVITE sip:user@example.com SIP/2.0
CSeq: 193942 INVITE
Via: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf
Content-Type: application/sdp
l: 152

""" + sdp("192.0.2.95"))

UNKSCM = crlf(b"""OPTIONS nobodyKnowsThisScheme:totallyopaquecontent SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=384
Max-Forwards: 3
Call-ID: unkscm.nasdfasser0q239nwsdfasdkl34
CSeq: 3923423 OPTIONS
Via: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw39234
Content-Length: 0

""")

NOVELSC = crlf(b"""OPTIONS soap.beep://192.0.2.103:3002 SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=384
Max-Forwards: 3
Call-ID: novelsc.asdfasser0q239nwsdfasdkl34
CSeq: 3923423 OPTIONS
Via: SIP/2.0/TCP host9.example.com;branch=z9hG4bKkdjuw39234
Content-Length: 0

""")

UNKSM2 = crlf(b"""REGISTER sip:example.com SIP/2.0
To: isbn:2983792873
From: <http://www.example.com>;tag=3234233
Call-ID: unksm2.daksdj@hyphenated-host.example.com
CSeq: 234902 REGISTER
Max-Forwards: 70
Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKkdjuw
Contact: <name:John_Smith>
l: 0

""")

BEXT01 = crlf(b"""OPTIONS sip:user@example.com SIP/2.0
To: sip:j_user@example.com
From: sip:caller@example.net;tag=242etr
Max-Forwards: 6
Call-ID: bext01.0ha0isndaksdj
Require: nothingSupportsThis, nothingSupportsThisEither
Proxy-Require: noProxiesSupportThis, norDoAnyProxiesSupportThis
CSeq: 8 OPTIONS
Via: SIP/2.0/TLS fold-and-staple.example.com;branch=z9hG4bKkdjuw
Content-Length: 0

""")

INVUT = crlf(b"""INVITE sip:user@example.com SIP/2.0
Contact: <sip:caller@host5.example.net>
To: sip:j.user@example.com
From: sip:caller@example.net;tag=8392034
Max-Forwards: 70
Call-ID: invut.0ha0isndaksdjadsfij34n23d
CSeq: 235448 INVITE
Via: SIP/2.0/UDP somehost.example.com;branch=z9hG4bKkdjuw
Content-Type: application/unknownformat
Content-Length: 40

<audio>
 <pcmu port="443"/>
</audio>
""")

REGAUT01 = crlf(b"""REGISTER sip:example.com SIP/2.0
To: sip:j.user@example.com
From: sip:j.user@example.com;tag=87321hj23128
Max-Forwards: 8
Call-ID: regaut01.0ha0isndaksdj
CSeq: 9338 REGISTER
Via: SIP/2.0/TCP 192.0.2.253;branch=z9hG4bKkdjuw
Authorization: NoOneKnowsThisScheme opaque-data=here
Content-Length:0

""")

MULTI01 = crlf(b"""INVITE sip:user@company.com SIP/2.0
Contact: <sip:caller@host25.example.net>
Via: SIP/2.0/UDP 192.0.2.25;branch=z9hG4bKkdjuw
Max-Forwards: 70
CSeq: 5 INVITE
Call-ID: multi01.98asdh@192.0.2.1
CSeq: 59 INVITE
Call-ID: multi01.98asdh@192.0.2.2
From: sip:caller@example.com;tag=3413415
To: sip:user@example.com
To: sip:other@example.net
From: sip:caller@example.net;tag=2923420123
Content-Type: application/sdp
l: 154
Contact: <sip:caller@host36.example.net>
Max-Forwards: 5

""" + sdp("192.0.2.25") + b"\n")

MCL01 = crlf(b"""OPTIONS sip:user@example.com SIP/2.0
Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bK293423
To: sip:user@example.com
From: sip:other@example.net;tag=3923942
Call-ID: mcl01.fhn2323orihawfdoa3o4r52o3irsdf
CSeq: 15932 OPTIONS
Content-Length: 13
Max-Forwards: 60
Content-Length: 5
Content-Type: text/plain

There's no way to know how many octets are supposed to be here.
""")

BCAST = crlf(b"""SIP/2.0 200 OK
Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923
Via: SIP/2.0/UDP 255.255.255.255;branch=z9hG4bK1saber23
Call-ID: bcast.0384840201234ksdfak3j2erwedfsASdf
CSeq: 35 INVITE
From: sip:user@example.com;tag=11141343
To: sip:user@example.edu;tag=2229
Content-Length: 154
Content-Type: application/sdp
Contact: <sip:user@host28.example.com>

""" + sdp("192.0.2.198"))

ZEROMF = crlf(b"""OPTIONS sip:user@example.com SIP/2.0
To: sip:user@example.com
From: sip:caller@example.net;tag=3ghsd41
Call-ID: zeromf.jfasdlfnm2o2l43r5u0asdfas
CSeq: 39234321 OPTIONS
Via: SIP/2.0/UDP host1.example.com;branch=z9hG4bKkdjuw2349i
Max-Forwards: 0
Content-Length: 0

""")

CPARAM01 = crlf(b"""REGISTER sip:example.com SIP/2.0
Via: SIP/2.0/UDP saturn.example.com:5060;branch=z9hG4bKkdjuw
Max-Forwards: 70
From: sip:watson@example.com;tag=DkfVgjkrtMwaerKKpe
To: sip:watson@example.com
Call-ID: cparam01.70710@saturn.example.com
CSeq: 2 REGISTER
Contact: sip:+19725552222@gw1.example.net;unknownparam
l: 0

""")

CPARAM02 = CPARAM01.replace(b"cparam01", b"cparam02").replace(
    b"Contact: sip:+19725552222@gw1.example.net;unknownparam",
    b"Contact: <sip:+19725552222@gw1.example.net;unknownparam>",
)

REGESCRT = crlf(b"""REGISTER sip:example.com SIP/2.0
To: sip:user@example.com
From: sip:user@example.com;tag=8
Max-Forwards: 70
Call-ID: regescrt.k345asrl3fdbv@192.0.2.1
CSeq: 14398234 REGISTER
Via: SIP/2.0/UDP host5.example.com;branch=z9hG4bKkdjuw
M: <sip:user@example.com?Route=%3Csip:sip.example.com%3E>
L:0

""")

SDP01 = crlf(b"""INVITE sip:user@example.com SIP/2.0
To: sip:j_user@example.com
Contact: <sip:caller@host15.example.net>
From: sip:caller@example.net;tag=234
Max-Forwards: 5
Call-ID: sdp01.ndaksdj9342dasdd
Accept: text/nobodyKnowsThis
CSeq: 8 INVITE
Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw
Content-Length: 150
Content-Type: application/sdp

""" + sdp("192.0.2.5"))

INV2543 = crlf(b"""INVITE sip:UserB@example.com SIP/2.0
Via: SIP/2.0/UDP iftgw.example.com
From: <sip:+13035551111@ift.client.example.net;user=phone>
Record-Route: <sip:UserB@example.com;maddr=ss1.example.com>
To: sip:+16505552222@ss1.example.net;user=phone
Call-ID: inv2543.1717@ift.client.example.com
CSeq: 56 INVITE
Content-Type: application/sdp

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.5
s=-
c=IN IP4 192.0.2.5
t=0 0
m=audio 49217 RTP/AVP 0
""")


def test_badbranch_parses() -> None:
    assert parse_message(BADBRANCH).top_via.branch == "z9hG4bK"


def test_insuf_is_answered_400_through_its_via() -> None:
    with pytest.raises(ParseError) as info:
        parse_message(INSUF)
    err = info.value
    assert err.status == 400 and "Missing" in err.reason and err.method == "INVITE"
    answer = error_response(err)
    assert answer is not None and answer.status == 400
    assert answer.top_via.branch == "z9hG4bKkdj.insuf" and "Call-ID" not in answer.headers


@pytest.mark.parametrize(("data", "scheme", "opaque"), [
    (UNKSCM, "nobodyknowsthisscheme", "totallyopaquecontent"),
    (NOVELSC, "soap.beep", "//192.0.2.103:3002"),
])
def test_unknown_request_uri_scheme_is_left_to_the_application(data: bytes, scheme: str, opaque: str) -> None:
    msg = parse_message(data)
    assert isinstance(msg, Request) and msg.uri == AbsoluteURI(scheme, opaque)
    assert f" {msg.uri} SIP/2.0".encode() in msg.to_bytes()


def test_unksm2_non_sip_uris_in_name_addrs() -> None:
    msg = parse_message(UNKSM2)
    assert msg.to.uri == AbsoluteURI("isbn", "2983792873")
    assert msg.from_.uri == AbsoluteURI("http", "//www.example.com") and msg.from_.tag == "3234233"
    assert msg.contacts[0].uri == AbsoluteURI("name", "John_Smith")


def test_application_level_cases_parse() -> None:
    proxy_require = parse_message(BEXT01).headers.get_all("Proxy-Require")
    assert proxy_require == ["noProxiesSupportThis", "norDoAnyProxiesSupportThis"]
    invut = parse_message(INVUT)
    assert invut.content_type == "application/unknownformat" and len(invut.body) == 40
    assert parse_message(REGAUT01).headers.get("Authorization") == "NoOneKnowsThisScheme opaque-data=here"
    assert parse_message(ZEROMF).max_forwards == 0
    bcast = parse_message(BCAST)
    assert isinstance(bcast, Response) and bcast.vias[1].host == "255.255.255.255"
    assert parse_message(SDP01).headers.get("Accept") == "text/nobodyKnowsThis"


def test_cparam_contact_parameters() -> None:
    (addr_spec,) = parse_message(CPARAM01).contacts
    assert addr_spec.params == {"unknownparam": None} and addr_spec.uri.params == {}
    (name_addr,) = parse_message(CPARAM02).contacts
    assert name_addr.params == {} and name_addr.uri.params == {"unknownparam": None}
    assert isinstance(addr_spec.uri, SipURI) and addr_spec.uri.user == "+19725552222"


def test_regescrt_uri_headers_are_decoded() -> None:
    (contact,) = parse_message(REGESCRT).contacts
    assert contact.uri.headers == {"Route": "<sip:sip.example.com>"}
    assert str(contact.uri) == "sip:user@example.com?Route=%3Csip:sip.example.com%3E"


def test_inv2543_without_content_length_takes_the_rest() -> None:
    msg = parse_message(INV2543)
    assert msg.top_via.branch is None and msg.to.tag is None and msg.max_forwards is None
    assert msg.body.endswith(b"m=audio 49217 RTP/AVP 0\r\n")
    assert msg.from_.uri.params == {"user": "phone"}


def test_multi01_repeated_single_value_headers() -> None:
    with pytest.raises(ParseError) as info:
        parse_message(MULTI01)
    err = info.value
    assert err.status == 400 and err.reason == "Multiple CSeq"
    response = error_response(err)
    assert response is not None and response.cseq == (5, "INVITE")
    assert response.call_id == "multi01.98asdh@192.0.2.1"


def test_mcl01_multiple_content_length() -> None:
    with pytest.raises(ParseError) as info:
        parse_message(MCL01)
    err = info.value
    assert err.reason == "Multiple Content-Length"
    assert error_response(err) is not None


# ---------------------------------------------------------------- robustness

_SPECIALS = (b"\r\n", b"\n ", b";", b",", b":", b'"', b"<", b">", b"%", b"@", b"[", b"]", b" ", b"=")


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        op = rng.randrange(5)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            del buf[pos:pos + rng.randint(1, 8)]
        elif op == 1:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        elif op == 2:
            buf[pos:pos] = rng.choice(_SPECIALS)
        elif op == 3 and buf:
            start = rng.randrange(len(buf))
            buf[pos:pos] = buf[start:start + rng.randint(1, 40)]
        elif buf:
            buf[min(pos, len(buf) - 1)] = rng.randrange(256)
    return bytes(buf)


def test_fuzz_only_parse_error_escapes() -> None:
    """Random bytes and mutated torture messages: parse_message may only raise ParseError."""
    rng = random.Random(4475)
    seeds = [*VALID, *(case[1] for case in INVALID), BADBRANCH, INSUF, UNKSM2, MULTI01, INV2543]
    for _ in range(3000):
        samples = [bytes(rng.randrange(256) for _ in range(rng.randint(0, 64))), _mutate(rng, rng.choice(seeds))]
        for data in samples:
            try:
                msg = parse_message(data)
            except ParseError as err:
                error_response(err)
                continue
            out = msg.to_bytes()
            assert parse_message(out).to_bytes() == out  # what we accept, we re-emit parseably
            for accessor in ("vias", "from_", "to", "contacts", "cseq", "max_forwards", "expires"):
                with contextlib.suppress(ParseError):
                    getattr(msg, accessor)

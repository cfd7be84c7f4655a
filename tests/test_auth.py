"""Digest auth: RFC vectors, parser edge cases, server <-> client round trips and attacks."""

from __future__ import annotations

import base64
import struct

import pytest

from softswitch.sip.auth import (
    AuthError,
    AuthResult,
    DigestClient,
    DigestServer,
    answer_challenge,
    choose_challenge,
    digest_response,
    parse_digest,
)

USERS = {"alice": "wonderland", "bob": "b0b"}
REALM = "sip.example.org"
URI = "sip:bob@sip.example.org"
T0 = 1_700_000_000.0


def server(**kw) -> DigestServer:
    return DigestServer(REALM, b"test-secret", **kw)


def counter_cnonce():
    n = iter(range(1, 10_000))
    return lambda: f"cn{next(n)}"


# --------------------------------------------------------------------------- RFC vectors

RFC2617 = dict(
    username="Mufasa", realm="testrealm@host.com", password="Circle Of Life", method="GET",
    uri="/dir/index.html", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", qop="auth", nc="00000001",
    cnonce="0a4f113b",
)
RFC7616 = dict(
    username="Mufasa", realm="http-auth@example.org", password="Circle of Life", method="GET",
    uri="/dir/index.html", nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", qop="auth",
    nc="00000001", cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
)
RFC7616_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"


def test_rfc2617_md5_vector():
    assert digest_response(algorithm=None, **RFC2617) == "6629fae49393a05397450978507c4ef1"


@pytest.mark.parametrize(
    "algorithm, expected",
    [
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
    ],
)
def test_rfc7616_vectors(algorithm, expected):
    assert digest_response(algorithm=algorithm, **RFC7616) == expected


def test_rfc2617_client_header():
    challenge = (
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    value = answer_challenge(challenge, "GET", "/dir/index.html", "Mufasa", "Circle Of Life", "0a4f113b")
    p = parse_digest(value)
    assert p["response"] == "6629fae49393a05397450978507c4ef1"
    assert p["qop"] == "auth" and p["nc"] == "00000001" and p["cnonce"] == "0a4f113b"
    assert p["opaque"] == "5ccc069c403ebaf9f0171e9517f40e41"
    assert p["algorithm"] == "MD5"


@pytest.mark.parametrize(
    "algorithm, expected",
    [
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
    ],
)
def test_rfc7616_client_header(algorithm, expected):
    challenge = (
        f'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={algorithm}, '
        f'nonce="{RFC7616["nonce"]}", opaque="{RFC7616_OPAQUE}"'
    )
    value = answer_challenge(
        challenge, "GET", "/dir/index.html", "Mufasa", "Circle of Life", RFC7616["cnonce"]
    )
    p = parse_digest(value)
    assert p["response"] == expected
    assert p["algorithm"] == algorithm and p["opaque"] == RFC7616_OPAQUE


# --------------------------------------------------------------------------- parser


def test_parse_basic_and_case():
    p = parse_digest('digest REALM="a b", Nonce=xyz,qop="auth,auth-int" , algorithm=SHA-256')
    assert p == {"realm": "a b", "nonce": "xyz", "qop": "auth,auth-int", "algorithm": "SHA-256"}


def test_parse_escapes_commas_and_equals_inside_quotes():
    p = parse_digest(r'Digest realm="a\"b\\c, d=e", nonce="n=="')
    assert p == {"realm": 'a"b\\c, d=e', "nonce": "n=="}


def test_parse_tolerates_whitespace_and_empty_elements():
    p = parse_digest('  Digest   realm = "r" ,, nonce="n",\r\n\t opaque="o" ,')
    assert p == {"realm": "r", "nonce": "n", "opaque": "o"}


def test_parse_unquoted_base64_nonce():
    assert parse_digest("Digest nonce=ab/cd+e==, realm=x")["nonce"] == "ab/cd+e=="


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "Digest",
        "Digest   ",
        "Basic dXNlcjpwYXNz",
        'Digestrealm="x"',
        'Digest realm="unterminated',
        'Digest realm="x" nonce="y"',
        "Digest realm",
        "Digest =x",
        'Digest realm="x", realm="y"',
        'Digest realm="x", , nonce',
        "Digest realm=a b",
        '"Digest" realm="x"',
        "\x00\xff\ud800",
    ],
)
def test_parse_garbage_raises_auth_error(garbage):
    with pytest.raises(AuthError):
        parse_digest(garbage)


def test_parse_non_string_raises_auth_error():
    with pytest.raises(AuthError):
        parse_digest(None)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- server challenges


def test_challenges_one_per_algorithm_in_preference_order():
    values = server(opaque="op").challenges(T0)
    parsed = [parse_digest(v) for v in values]
    assert [p["algorithm"] for p in parsed] == ["SHA-256", "MD5"]
    for p in parsed:
        assert p["realm"] == REALM and p["qop"] == "auth" and p["opaque"] == "op"
        assert "stale" not in p
    assert parsed[0]["nonce"] == parsed[1]["nonce"]


def test_challenge_stale_flag_and_no_opaque():
    (value,) = server(algorithms=("MD5",)).challenges(T0, stale=True)
    p = parse_digest(value)
    assert p["stale"] == "true" and "opaque" not in p


def test_nonce_is_stateless_across_instances_with_same_secret():
    nonce = parse_digest(server().challenges(T0)[0])["nonce"]
    assert server().nonce_time(nonce) == T0
    assert DigestServer(REALM, b"other").nonce_time(nonce) is None
    assert DigestServer("other.realm", b"test-secret").nonce_time(nonce) is None


def test_server_rejects_bad_config():
    with pytest.raises(ValueError):
        DigestServer(REALM, b"")
    with pytest.raises(ValueError):
        DigestServer(REALM, b"k", algorithms=("SHA-512",))
    with pytest.raises(ValueError):
        DigestServer(REALM, b"k", algorithms=())


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5", "SHA-256-sess", "MD5-sess"])
def test_round_trip_each_algorithm(algorithm):
    srv = server(algorithms=(algorithm,), opaque="xyz")
    (challenge,) = srv.challenges(T0)
    value = answer_challenge(challenge, "INVITE", URI, "alice", "wonderland", "c1")
    result = srv.verify("INVITE", value, T0 + 1, USERS.get)
    assert result == AuthResult(True, "alice", False, "ok", URI)


def test_sess_variant_accepted_when_base_offered():
    srv = server(algorithms=("MD5",))
    challenge = srv.challenges(T0)[0].replace("algorithm=MD5", "algorithm=MD5-sess")
    value = answer_challenge(challenge, "REGISTER", "sip:sip.example.org", "bob", "b0b", "zz")
    assert srv.verify("REGISTER", value, T0, USERS.get).ok


def test_client_prefers_sha256_and_counts_nc():
    srv = server(algorithms=("MD5", "SHA-256"))  # server prefers MD5; client still picks SHA-256
    client = DigestClient("alice", "wonderland", cnonce_factory=counter_cnonce())
    challenges = srv.challenges(T0)
    results, ncs = [], []
    for i in range(3):
        value = client.authorize(challenges, "INVITE", URI)
        p = parse_digest(value)
        ncs.append(p["nc"])
        assert p["algorithm"] == "SHA-256" and p["cnonce"] == "cn1"
        results.append(srv.verify("INVITE", value, T0 + i, USERS.get))
    assert ncs == ["00000001", "00000002", "00000003"]
    assert all(r.ok for r in results)


def test_client_restarts_nc_on_new_nonce():
    srv = server()
    client = DigestClient("alice", "wonderland", cnonce_factory=counter_cnonce())
    client.authorize(srv.challenges(T0), "INVITE", URI)
    value = client.authorize(srv.challenges(T0 + 10), "INVITE", URI)
    p = parse_digest(value)
    assert p["nc"] == "00000001" and p["cnonce"] == "cn2"
    assert srv.verify("INVITE", value, T0 + 11, USERS.get).ok


def test_client_nonce_memory_is_bounded():
    srv = server()
    client = DigestClient("alice", "wonderland", max_nonces=4)
    for i in range(20):
        client.authorize(srv.challenges(T0 + i), "INVITE", URI)
    assert len(client._nonces) == 4


def test_client_default_cnonce_is_random_hex():
    srv = server()
    a = parse_digest(DigestClient("alice", "wonderland").authorize(srv.challenges(T0), "INVITE", URI))
    b = parse_digest(DigestClient("alice", "wonderland").authorize(srv.challenges(T0), "INVITE", URI))
    assert a["cnonce"] != b["cnonce"] and len(a["cnonce"]) == 16
    int(a["cnonce"], 16)


def test_special_characters_in_username_and_realm_round_trip():
    srv = DigestServer('odd "realm" \\ x', b"k")
    users = {'we"ird\\user': "pässwörd"}
    value = answer_challenge(srv.challenges(T0)[0], "INVITE", URI, 'we"ird\\user', "pässwörd", "c")
    result = srv.verify("INVITE", value, T0, users.get)
    assert result.ok and result.username == 'we"ird\\user'


def test_auth_int_with_body():
    body = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n"
    srv = server()
    challenge = srv.challenges(T0)[0].replace('qop="auth"', 'qop="auth-int"')
    value = answer_challenge(challenge, "INVITE", URI, "alice", "wonderland", "c", body=body)
    assert parse_digest(value)["qop"] == "auth-int"
    assert srv.verify("INVITE", value, T0, USERS.get, body=body).ok
    assert not srv.verify("INVITE", value, T0, USERS.get, body=body + b"x").ok
    unchecked = srv.verify("INVITE", value, T0, USERS.get)  # no body given: cannot check auth-int
    assert not unchecked.ok and "qop" in unchecked.reason


def test_legacy_rfc2069_no_qop():
    srv = server(algorithms=("MD5",))
    challenge = srv.challenges(T0)[0].replace(', qop="auth"', "")
    value = answer_challenge(challenge, "INVITE", URI, "alice", "wonderland", "unused")
    p = parse_digest(value)
    assert "qop" not in p and "nc" not in p and "cnonce" not in p
    assert srv.verify("INVITE", value, T0, USERS.get).ok
    strict = server(algorithms=("MD5",), allow_no_qop=False)
    assert strict.verify("INVITE", value, T0, USERS.get).reason == "qop required"


def test_userhash_client_side():
    challenge = f'Digest realm="{REALM}", nonce="n", qop="auth", algorithm=SHA-256, userhash=true'
    p = parse_digest(answer_challenge(challenge, "INVITE", URI, "alice", "pw", "c"))
    assert p["userhash"] == "true" and len(p["username"]) == 64 and p["username"] != "alice"


# --------------------------------------------------------------------------- failures


def _answer(srv: DigestServer, now: float = T0, password: str = "wonderland", **kw) -> str:
    return answer_challenge(srv.challenges(now)[0], "INVITE", URI, "alice", password, "c1", **kw)


def test_wrong_password():
    srv = server()
    r = srv.verify("INVITE", _answer(srv, password="nope"), T0, USERS.get)
    assert (r.ok, r.stale, r.username, r.reason) == (False, False, "alice", "wrong response")


def test_wrong_method_fails():
    srv = server()
    assert not srv.verify("BYE", _answer(srv), T0, USERS.get).ok


def test_unknown_user():
    srv = server()
    r = srv.verify("INVITE", _answer(srv), T0, {}.get)
    assert not r.ok and r.reason == "unknown user" and not r.stale


def test_wrong_realm():
    other = DigestServer("evil.example", b"test-secret")
    r = server().verify("INVITE", _answer(other), T0, USERS.get)
    assert not r.ok and r.reason == "wrong realm"


def test_stale_nonce_with_right_password_sets_stale():
    srv = server(nonce_ttl=30)
    value = _answer(srv, now=T0)
    assert srv.verify("INVITE", value, T0 + 30, USERS.get).ok
    r = srv.verify("INVITE", _answer(srv, now=T0), T0 + 31, USERS.get)
    assert (r.ok, r.stale, r.reason) == (False, True, "stale nonce")
    assert "stale=true" in srv.challenges(T0 + 31, stale=r.stale)[0]


def test_stale_nonce_with_wrong_password_is_not_stale():
    srv = server(nonce_ttl=30)
    r = srv.verify("INVITE", _answer(srv, now=T0, password="x"), T0 + 100, USERS.get)
    assert not r.ok and not r.stale


def test_nonce_from_the_future_rejected():
    srv = server()
    r = srv.verify("INVITE", _answer(srv, now=T0 + 100), T0, USERS.get)
    assert not r.ok and r.reason == "invalid nonce"


def test_tampered_nonce():
    srv = server()
    value = _answer(srv)
    nonce = parse_digest(value)["nonce"]
    raw = bytearray(base64.urlsafe_b64decode(nonce))
    raw[:8] = struct.pack(">d", T0 + 1000)  # try to extend its lifetime
    forged = base64.urlsafe_b64encode(bytes(raw)).decode()
    challenge = srv.challenges(T0)[0].replace(nonce, forged)
    value = answer_challenge(challenge, "INVITE", URI, "alice", "wonderland", "c1")
    r = srv.verify("INVITE", value, T0 + 2000, USERS.get)
    assert not r.ok and r.reason == "invalid nonce" and not r.stale


@pytest.mark.parametrize("nonce", ["", "short", "!" * 32, "A" * 32, "A" * 31 + "="])
def test_garbled_nonces(nonce):
    srv = server()
    challenge = f'Digest realm="{REALM}", nonce="{nonce}", qop="auth"'
    value = answer_challenge(challenge, "INVITE", URI, "alice", "wonderland", "c1")
    r = srv.verify("INVITE", value, T0, USERS.get)
    assert not r.ok and r.reason == "invalid nonce"


def test_replayed_nc_rejected_and_higher_nc_accepted():
    srv = server()
    challenge = srv.challenges(T0)[0]
    first = answer_challenge(challenge, "INVITE", URI, "alice", "wonderland", "c1", nc=5)
    assert srv.verify("INVITE", first, T0, USERS.get).ok
    assert srv.verify("INVITE", first, T0, USERS.get).reason == "replayed nonce count"
    lower = answer_challenge(challenge, "INVITE", URI, "alice", "wonderland", "c1", nc=4)
    assert srv.verify("INVITE", lower, T0, USERS.get).reason == "replayed nonce count"
    higher = answer_challenge(challenge, "INVITE", URI, "alice", "wonderland", "c1", nc=6)
    assert srv.verify("INVITE", higher, T0, USERS.get).ok
    # a different client sharing the nonce (same-millisecond challenge) has its own counter
    other = answer_challenge(challenge, "INVITE", URI, "bob", "b0b", "c2", nc=1)
    assert srv.verify("INVITE", other, T0, USERS.get).ok


def test_failed_attempts_do_not_burn_nonce_counts():
    srv = server()
    challenge = srv.challenges(T0)[0]
    bad = answer_challenge(challenge, "INVITE", URI, "alice", "guess", "c1", nc=99)
    assert not srv.verify("INVITE", bad, T0, USERS.get).ok
    good = answer_challenge(challenge, "INVITE", URI, "alice", "wonderland", "c1", nc=1)
    assert srv.verify("INVITE", good, T0, USERS.get).ok


def test_replay_memory_is_bounded_lru():
    srv = server(replay_cache=3)
    for i in range(10):
        assert srv.verify("INVITE", _answer(srv, now=T0 + i), T0 + i, USERS.get).ok
    assert len(srv._nc) == 3


def test_replay_protection_can_be_disabled():
    srv = server(replay_cache=0)
    value = _answer(srv)
    assert srv.verify("INVITE", value, T0, USERS.get).ok
    assert srv.verify("INVITE", value, T0, USERS.get).ok


def test_opaque_must_be_echoed():
    srv = server(opaque="secret-opaque")
    value = _answer(srv)
    assert srv.verify("INVITE", value, T0, USERS.get).ok
    stripped = value.replace(', opaque="secret-opaque"', "")
    assert srv.verify("INVITE", stripped, T0, USERS.get).reason == "opaque mismatch"


def test_algorithm_not_offered_is_rejected():
    srv = server(algorithms=("SHA-256",))  # no MD5 downgrade
    challenge = srv.challenges(T0)[0].replace("algorithm=SHA-256", "algorithm=MD5")
    value = answer_challenge(challenge, "INVITE", URI, "alice", "wonderland", "c1")
    assert srv.verify("INVITE", value, T0, USERS.get).reason == "algorithm MD5 not offered"
    no_alg = value.replace(", algorithm=MD5", "")  # absent algorithm means MD5
    assert not srv.verify("INVITE", no_alg, T0, USERS.get).ok


def test_uri_exposed_for_caller_check():
    srv = server()
    value = answer_challenge(srv.challenges(T0)[0], "INVITE", "sip:carol@x", "alice", "wonderland", "c")
    r = srv.verify("INVITE", value, T0, USERS.get)
    assert r.ok and r.uri == "sip:carol@x"


def test_response_case_insensitive_hex():
    srv = server()
    value = _answer(srv)
    resp = parse_digest(value)["response"]
    assert srv.verify("INVITE", value.replace(resp, resp.upper()), T0, USERS.get).ok


def _mutations(value: str) -> list[str]:
    p = parse_digest(value)
    out = [value[:n] for n in range(0, len(value), 7)]
    for key in p:
        out.append(value.replace(f"{key}=", f"{key}x=", 1))  # drops a required field
    out += [
        value.replace('response="', 'response="zz'),
        value.replace('response="', 'response="\u00e9'),
        value.replace("nc=00000001", "nc=1"),
        value.replace("nc=00000001", "nc=0000000g"),
        value.replace("qop=auth", "qop=auth-conf"),
        value.replace("algorithm=SHA-256", "algorithm=SHA-512-256"),
        value.replace('cnonce="c1"', 'cnonce=""'),
        value + ", userhash=true",
        value.replace("Digest", "Basic"),
        value.replace('nonce="', 'nonce="\ud800'),
        value.replace("username=", "username=username=", 1),
        "Digest \x00",
        "Digest realm=" + "a" * 100_000,
    ]
    return out


def test_garbage_and_mutated_credentials_never_raise():
    srv = server()
    value = _answer(srv)
    for bad in _mutations(value):
        r = srv.verify("INVITE", bad, T0, USERS.get)
        assert isinstance(r, AuthResult) and not r.ok, bad


# --------------------------------------------------------------------------- client choices


def test_choose_challenge_prefers_sha256_and_skips_unusable():
    md5 = 'Digest realm="r", nonce="n1", algorithm=MD5, qop="auth"'
    sha = 'Digest realm="r", nonce="n2", algorithm=SHA-256, qop="auth"'
    sha_sess = 'Digest realm="r", nonce="n3", algorithm=SHA-256-sess, qop="auth"'
    weird = 'Digest realm="r", nonce="n4", algorithm=SHA-512-256, qop="auth"'
    assert choose_challenge([md5, sha]) == sha
    assert choose_challenge([weird, "Basic realm=x", "junk", md5]) == md5
    assert choose_challenge([sha_sess, sha]) == sha_sess  # tie: server order wins
    assert choose_challenge(['Digest realm="r", nonce="n"', md5]) == md5  # qop beats legacy
    with pytest.raises(AuthError):
        choose_challenge([weird, "Basic realm=x"])
    with pytest.raises(AuthError):
        choose_challenge([])


@pytest.mark.parametrize(
    "challenge",
    [
        'Digest realm="r", nonce="n", qop="auth-conf"',
        'Digest realm="r", nonce="n", algorithm=SHA-512',
        'Digest nonce="n"',
        'Digest realm="r"',
        "Basic realm=r",
    ],
)
def test_answer_unusable_challenge_raises_auth_error(challenge):
    with pytest.raises(AuthError):
        answer_challenge(challenge, "INVITE", URI, "a", "b", "c")


def test_answer_prefers_auth_over_auth_int_and_uses_nc():
    value = answer_challenge(
        'Digest realm="r", nonce="n", qop="auth-int, auth"', "INVITE", URI, "a", "b", "c", nc=0x1F
    )
    p = parse_digest(value)
    assert p["qop"] == "auth" and p["nc"] == "0000001f"
    assert p["algorithm"] == "MD5" and p["uri"] == URI

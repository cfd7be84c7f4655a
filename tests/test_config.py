from pathlib import Path

import pytest

from softswitch.config import (
    Config, ConfigError, ListenAddr, format_loc, load_config, parse_config, parse_listen, parse_target,
)

ROOT = Path(__file__).resolve().parent.parent


def _error(text: str, name: str = "x.toml") -> str:
    with pytest.raises(ConfigError) as exc:
        parse_config(text, name)
    return str(exc.value)


def test_default_file_equals_embedded_default():
    loaded = load_config(ROOT / "config/default.toml")
    assert loaded == Config()
    assert loaded.model_dump() == Config().model_dump()
    assert loaded.source_path == ROOT / "config/default.toml"
    assert load_config(None) == Config() and Config().source_path is None


def test_embedded_default_values():
    c = Config()
    assert c.sip.listen_addrs == [ListenAddr("udp", "127.0.0.1", 5060), ListenAddr("tcp", "127.0.0.1", 5060)]
    assert c.sip.digest_realm == "127.0.0.1"
    assert [(u.name, u.password, u.display) for u in c.users] == [
        ("1001", "1001pass", "Alice"), ("1002", "1002pass", "Bob"), ("1003", "1003pass", "Carol")]
    assert c.trunks == []
    assert [(r.name, r.to) for r in c.routes] == [("echo", "service:echo"), ("playback", "service:playback"),
                                                  ("dtmf", "service:dtmf"), ("ivr", "flow:bank"), ("queue", "queue:support"),
                                                  ("extensions", "user")]
    assert c.routes[-1].regex == r"^(1\d{3})$"


def test_store_path_resolution(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert Config().store_path() == tmp_path / "data/softswitch.db"
    cfg_file = tmp_path / "etc" / "s.toml"
    cfg_file.parent.mkdir()
    cfg_file.write_text('[store]\npath = "db/x.db"\n')
    assert load_config(cfg_file).store_path() == tmp_path / "etc/db/x.db"
    cfg_file.write_text(f'[store]\npath = "{tmp_path}/abs.db"\n')
    assert load_config(cfg_file).store_path() == tmp_path / "abs.db"


def test_loopback_example_contract():
    c = load_config(ROOT / "config/examples/loopback-trunk.toml")
    assert set(c.sip.listen_addrs) == {ListenAddr("udp", "127.0.0.1", 5060), ListenAddr("tcp", "127.0.0.1", 5060)}
    (trunk,) = c.trunks
    assert trunk.name == "loopback" and trunk.inbound_ips == ["127.0.0.1"]
    assert [(g.host, g.port, g.transport) for g in trunk.gateways] == [("127.0.0.1", 5090, "udp")]
    assert trunk.matches_source("127.0.0.1") and not trunk.matches_source("10.0.0.1")
    routes = {r.name: r for r in c.routes}
    assert (routes["echo"].exact, routes["echo"].to) == ("echo", "service:echo")
    out = routes["outbound"]
    assert (out.prefix, out.strip, out.to, out.target) == ("9", 1, "trunk:loopback", ("trunk", "loopback"))
    assert routes["extensions"] == Config().routes[-1]
    assert c.users == Config().users
    assert c.store_path() == ROOT / "config/examples/data/loopback.db"


def test_parse_listen():
    assert parse_listen("udp:[::1]:5060") == ListenAddr("udp", "::1", 5060)
    assert str(parse_listen("TCP:[::1]:0")) == "tcp:[::1]:0"
    for bad in ("udp:1.2.3.4", "sctp:1.2.3.4:5060", "udp:1.2.3.4:70000", "udp:[nope]:5060", "1.2.3.4:5060"):
        with pytest.raises(ValueError):
            parse_listen(bad)


def test_parse_target_and_format_loc():
    assert parse_target("user") == ("user", None)
    assert parse_target("queue:sales") == ("queue", "sales")
    with pytest.raises(ValueError):
        parse_target("trunk")
    assert format_loc(("trunks", 0, "gateways", 1, "port")) == "trunks[0].gateways[1].port"


def test_unknown_key_names_key_line_and_suggestion():
    msg = _error('[sip]\ndomain = "x"\nlisten_on = ["udp:1.2.3.4:5060"]\n')
    assert msg == "x.toml:3: sip.listen_on: unknown key 'listen_on' (did you mean 'listen'?)"
    assert "x.toml:1: colour: unknown key" in _error("colour = 1\n")


def test_wrong_type_inside_inline_table():
    text = '''
[[trunks]]
name = "a"
gateways = [
  {host = "h1", port = 5060},
  {host = "h2", port = "abc"},
]
'''
    assert _error(text) == ("x.toml:6: trunks[0].gateways[1].port: Input should be a valid integer, "
                            "got 'abc'")


def test_second_array_table_entry_is_located():
    text = '[[users]]\nname = "a"\npassword = "p"\n\n[[users]]\nname = "b"\npassword = "p"\nmax_contacts = 0\n'
    assert _error(text).startswith("x.toml:8: users[1].max_contacts: Input should be greater than or equal to 1")


def test_bad_listen_string():
    msg = _error('[sip]\nlisten = ["udp:127.0.0.1"]\n')
    assert msg.startswith("x.toml:2: sip.listen[0]: 'udp:127.0.0.1' is not 'transport:host:port'")


def test_route_to_unknown_trunk():
    text = '[[routes]]\nname = "out"\nprefix = "9"\nto = "trunk:nope"\n'
    assert _error(text) == "x.toml:4: routes[0].to: unknown trunk 'nope' (none defined)"


def test_route_with_two_matchers_and_bad_regex():
    msg = _error('[[routes]]\nname = "r"\nexact = "1"\nprefix = "2"\nto = "user"\n')
    assert msg == "x.toml:1: routes[0]: a route needs exactly one of exact, prefix, regex (found: exact, prefix)"
    msg = _error('[[routes]]\nname = "r"\nregex = "(("\nto = "user"\n')
    assert msg.startswith("x.toml:3: routes[0].regex: invalid regular expression '(('")


def test_unknown_service_and_duplicate_names():
    assert "unknown service 'fax' (known: echo, playback, dtmf, moh)" in _error('[[routes]]\nname = "r"\nexact = "1"\nto = "service:fax"\n')
    text = '[[users]]\nname = "a"\npassword = "p"\n[[users]]\nname = "a"\npassword = "q"\n'
    assert _error(text) == "x.toml:5: users[1].name: duplicate name 'a'"


def test_toml_syntax_error_has_line_and_column():
    msg = _error('[sip]\ndomain = "x"\nt1_ms = = 3\n')
    assert msg.startswith("x.toml:3:") and "TOML syntax error" in msg


def test_several_errors_listed_in_file_order():
    text = '''[sip]
t1_ms = "fast"

[media]
port_min = 20001
port_max = 10

[log]
level = "LOUD"
'''
    with pytest.raises(ConfigError) as exc:
        parse_config(text, "x.toml")
    lines = str(exc.value).splitlines()
    assert [line.split(":")[1] for line in lines] == ["2", "5", "9"]
    assert lines[0].startswith("x.toml:2: sip.t1_ms: ")
    assert lines[1].startswith("x.toml:5: media.port_min: must be even")
    assert lines[2].startswith("x.toml:9: log.level: Input should be")
    assert exc.value.problems == lines


def test_cross_field_checks():
    assert "media.port_max: must be greater than port_min" in _error("[media]\nport_min = 3000\nport_max = 2000\n")
    assert "registrar.default_expires: must be between" in _error("[registrar]\ndefault_expires = 5\n")
    msg = _error('[[trunks]]\nname = "t"\ngateways = [{host = "h"}]\nregister = true\n')
    assert msg == "x.toml:4: trunks[0].register: register = true needs username and password"
    msg = _error('[[routes]]\nname = "r"\nregex = "^9(\\\\d+)$"\nreplace = "\\\\2"\nto = "user"\n')
    assert "routes[0].replace: refers to group \\2 but regex has 1 group(s)" in msg


def test_unreadable_file(tmp_path):
    with pytest.raises(ConfigError, match=r"missing\.toml: cannot read config file"):
        load_config(tmp_path / "missing.toml")


def test_log_level_case_insensitive():
    assert parse_config('[log]\nlevel = "debug"\n').log.level == "DEBUG"


def test_media_settings_are_checked_with_their_key():
    assert "x.toml:2: media.tone_country: unknown tone country 'xx' (known: au, br" in _error(
        '[media]\ntone_country = "xx"\n')
    err = _error('[media]\ntones = { ringback = "440*480/2000" }\n')
    assert "x.toml:2: media.tones" in err and "ringback" in err and "not supported" in err
    assert "media.jitter_max_ms: must not be below jitter_min_ms (100)" in _error(
        "[media]\njitter_min_ms = 100\njitter_max_ms = 50\n")
    assert "services.dtmf_timeout_s" in _error("[services]\ndtmf_timeout_s = 0\n")

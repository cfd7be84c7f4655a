"""Flows in the config: a route to a missing flow is a config error naming the route; a broken flow stops
the start with file, line and node; the embedded default routes 100 to the shipped bank flow."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import _children
from softswitch.config import SHIPPED_FLOWS, Config, ConfigError, parse_config

BAD_FLOW = """\
name: bad
start: a
nodes:
  a:
    type: say
    text: hi
    next: nowhere
"""


def _config(flows_dir: str, flow: str) -> str:
    return (f'[sip]\nlisten = ["udp:127.0.0.1:0"]\n[ivr]\nflows_dir = "{flows_dir}"\n'
            f'[[routes]]\nname = "x"\nexact = "5"\nto = "flow:{flow}"\n')


def test_embedded_default_routes_100_to_the_bank_flow():
    config = Config()
    route = next(r for r in config.routes if r.exact == "100")
    assert route.to == "flow:bank" and config.flow_path("bank") == SHIPPED_FLOWS / "bank.yaml"


def test_route_to_a_missing_flow_names_the_route(tmp_path):
    (tmp_path / "flows").mkdir()
    path = tmp_path / "c.toml"
    with pytest.raises(ConfigError) as e:
        parse_config(_config("flows", "nope"), path)
    assert f"{path}:8: routes[0].to: no flow 'nope'" in str(e.value) and str(tmp_path / "flows") in str(e.value)


def test_flows_dir_is_relative_to_the_config_file(tmp_path):
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "menu.json").write_text("{}")
    config = parse_config(_config("flows", "menu"), tmp_path / "c.toml")
    assert config.flow_path("menu") == tmp_path / "flows" / "menu.json"


@pytest.mark.timeout(60)
def test_a_broken_flow_stops_the_start_naming_file_line_and_node(tmp_path):
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "bad.yaml").write_text(BAD_FLOW)
    (tmp_path / "c.toml").write_text(_config("flows", "bad"))
    out = subprocess.run([sys.executable, "-m", "softswitch", "run", "--config", "c.toml"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1, out
    assert f"{tmp_path / 'flows' / 'bad.yaml'}:7: node a: next: goes to unknown node 'nowhere'" in out.stderr


def test_vosk_needs_an_existing_model_directory(tmp_path):
    text = '[ivr]\nasr_engine = "vosk"\nvosk_model = "models/vosk-en"\n'
    with pytest.raises(ConfigError) as e:
        parse_config(text, tmp_path / "c.toml")
    assert f"{tmp_path / 'c.toml'}:3: ivr.vosk_model: {tmp_path / 'models/vosk-en'} is not a directory" in str(e.value)
    with pytest.raises(ConfigError) as e:
        parse_config('[ivr]\nasr_engine = "vosk"\n', tmp_path / "c.toml")
    assert "ivr.vosk_model: asr_engine = \"vosk\" needs the path of a Vosk model directory" in str(e.value)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_decoder_processes_do_not_outlive_the_switch(tmp_path, how):
    """PocketSphinx decodes in worker processes; they end with the switch, even after kill -9."""
    import os
    import signal
    import time
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "bank.yaml").write_text((SHIPPED_FLOWS / "bank.yaml").read_text())
    (tmp_path / "c.toml").write_text(_config("flows", "bank") + '[store]\npath = "db.sqlite"\n')
    log = open(tmp_path / "switch.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "softswitch", "run", "--config", "c.toml"], cwd=tmp_path,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while b"softswitch up" not in (tmp_path / "switch.log").read_bytes():
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "switch.log").read_text()
            time.sleep(0.1)
        workers = [k for k in _children(proc.pid)
                   if b"multiprocessing" in open(f"/proc/{k}/cmdline", "rb").read()]
        assert len(workers) >= 2, workers  # asr_workers = 2 decoders (and the resource tracker)
        proc.send_signal(getattr(signal, how))
        proc.wait(20)
        deadline = time.monotonic() + 10
        while [w for w in workers if os.path.exists(f"/proc/{w}")] and time.monotonic() < deadline:
            time.sleep(0.1)
        left = [w for w in workers if os.path.exists(f"/proc/{w}")
                and open(f"/proc/{w}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"]
        assert not left, f"decoder processes left after {how}: {left}"
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

from softswitch.cdr import CDR, CDR_COLUMNS
from softswitch.cli import main
from softswitch.store import SqliteStore

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-m", "softswitch", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60, env=env)  # this checkout, even from another cwd


def test_config_check_ok():
    r = cli("config", "check", "config/examples/loopback-trunk.toml")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "config/examples/loopback-trunk.toml: OK (3 users, 1 trunks, 5 routes)"


def test_config_check_bad(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[sip]\ndomain = "x"\n\n[[trunks]]\nname = "t"\ngateways = [{host = "h", port = "abc"}]\n')
    r = cli("config", "check", str(bad))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip() == f"{bad}:6: trunks[0].gateways[0].port: Input should be a valid integer, got 'abc'"
    assert "Traceback" not in r.stderr


def test_config_check_syntax_error_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[sip\n")
    r = cli("config", "check", str(bad))
    assert r.returncode == 2 and f"{bad}:1:" in r.stderr and "Traceback" not in r.stderr
    r = cli("config", "check", str(tmp_path / "none.toml"))
    assert r.returncode == 2 and "none.toml: cannot read config file" in r.stderr


def test_run_with_bad_config_exits_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[sip]\nlisten = ['udp:nowhere']\n")
    r = cli("run", "--config", str(bad))
    assert r.returncode == 2 and "sip.listen[0]" in r.stderr and "Traceback" not in r.stderr


def test_cdr_empty_store(tmp_path):
    r = cli("cdr", cwd=tmp_path)  # embedded default: data/softswitch.db under the cwd
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == []
    assert not (tmp_path / "data").exists()  # reading does not create the store


def _config_with_two_cdrs(tmp_path: Path) -> tuple[Path, list[CDR]]:
    cfg = tmp_path / "s.toml"
    cfg.write_text('[store]\npath = "cdr.db"\n')
    cdrs = [CDR(call_id="a", from_="1001", to="echo", direction="local", source="user:1001",
                destination="service:echo", start=1000.0, answer=1000.5, legs=[{"role": "a", "codec": "PCMU"}]
                ).finish(1010.0, 200, hangup_by="caller"),
            CDR(call_id="b", from_="1002", to="1001", start=2000.0, extra={"why": "busy"}).finish(2001.0, 486)]
    store = SqliteStore(tmp_path / "cdr.db")
    for cdr in cdrs:
        store.save_cdr(cdr)
    store.close()
    return cfg, cdrs


def test_cdr_json_and_last(tmp_path):
    cfg, cdrs = _config_with_two_cdrs(tmp_path)
    r = cli("cdr", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [c.to_json_dict() for c in cdrs]
    r = cli("cdr", "--config", str(cfg), "--last", "1")
    assert [d["call_id"] for d in json.loads(r.stdout)] == ["b"]


def test_cdr_csv(tmp_path):
    cfg, cdrs = _config_with_two_cdrs(tmp_path)
    r = cli("cdr", "--config", str(cfg), "--format", "csv")
    assert r.returncode == 0, r.stderr
    rows = list(csv.reader(io.StringIO(r.stdout)))
    assert tuple(rows[0]) == CDR_COLUMNS and len(rows) == 3
    first = dict(zip(rows[0], rows[1]))
    assert (first["call_id"], first["from"], first["disposition"], first["answer"]) == (
        "a", "1001", "ANSWERED", "1970-01-01T00:16:40.500Z")
    assert json.loads(first["legs"]) == [{"role": "a", "codec": "PCMU"}]
    second = dict(zip(rows[0], rows[2]))
    assert (second["answer"], second["disposition"], json.loads(second["extra"])) == ("", "BUSY", {"why": "busy"})


def test_main_in_process(capsys, tmp_path):
    assert main(["config", "check", str(ROOT / "config/default.toml")]) == 0
    assert "OK (3 users, 0 trunks, 6 routes)" in capsys.readouterr().out
    (tmp_path / "bad.toml").write_text("nope = 1\n")
    assert main(["config", "check", str(tmp_path / "bad.toml")]) == 2
    assert "nope: unknown key" in capsys.readouterr().err


def test_ivr_validate(tmp_path, capsys):
    assert main(["ivr", "validate", str(ROOT / "config/flows/bank.yaml")]) == 0
    assert capsys.readouterr().out.strip().endswith("bank.yaml: ok")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nstart: a\nnodes:\n  a:\n    type: goto\n    target: b\n")
    assert main(["ivr", "validate", str(bad)]) == 1
    assert f"{bad}:6: node a: target: goes to unknown node 'b'" in capsys.readouterr().out


def test_acd_simulate_through_the_cli(capsys):
    assert main(["acd", "simulate", "--agents", "3", "--arrival-rate", "60", "--handle-time", "120",
                 "--duration", "2", "--seed", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["offered"] == out["answered"] + out["abandoned"] + out["timed_out"] + out["overflowed"] \
        + out["left_empty"] and out["offered"] > 60
    assert main(["acd", "simulate", "--strategy", "nope"]) == 2
    assert "softswitch acd simulate:" in capsys.readouterr().err

"""Every class of bad input: exit code 2, the file and field or row named, no traceback, and no
output file written or overwritten."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from planner.cli import main
from planner.scenario.defaults import default_scenario_dir


@pytest.fixture()
def sdir(tmp_path) -> Path:
    d = tmp_path / "sc"
    shutil.copytree(default_scenario_dir(), d, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    return d


def run(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out
    return code, out, err


def edit_yaml(d: Path, fn):
    p = d / "scenario.yaml"
    doc = yaml.safe_load(p.read_text())
    fn(doc)
    p.write_text(yaml.safe_dump(doc, sort_keys=False))


def edit_csv(d: Path, name: str, fn):
    p = d / name
    lines = p.read_text().splitlines()
    p.write_text("\n".join(fn(lines)) + "\n")


def set_key(doc, path, value):
    cur = doc
    for k in path[:-1]:
        cur = cur[k]
    cur[path[-1]] = value


CASES = {
    # name: (mutation, expected fragments in the message)
    "wrong type": (lambda d: edit_yaml(d, lambda doc: set_key(doc, ["regions", 0, "pue"], "high")),
                   ["scenario.yaml", "regions[0].pue"]),
    "unknown key": (lambda d: edit_yaml(d, lambda doc: set_key(doc, ["options", "colour"], "blue")),
                    ["options.colour", "unknown field"]),
    "missing field": (lambda d: edit_yaml(d, lambda doc: doc["horizon"].pop("start")),
                      ["horizon.start", "Field required"]),
    "unknown reference": (lambda d: edit_yaml(d, lambda doc: set_key(doc, ["classes", 0, "model"], "gpt-9")),
                          ["classes[0].model", "unknown model 'gpt-9'"]),
    "unknown gpu in region": (lambda d: edit_yaml(d, lambda doc: set_key(doc, ["regions", 0, "vms", 0, "gpu"], "TPU")),
                              ["regions[0].vms[0].gpu", "unknown GPU type 'TPU'"]),
    "negative value": (lambda d: edit_yaml(d, lambda doc: set_key(doc, ["regions", 0, "vms", 0, "count"], -3)),
                       ["regions[0].vms[0].count", "greater than or equal to 0"]),
    "nan in yaml": (lambda d: edit_yaml(d, lambda doc: set_key(doc, ["classes", 0, "slo", "ttft_ms"], float("nan"))),
                    ["classes[0].slo.ttft_ms"]),
    "naive start": (lambda d: edit_yaml(d, lambda doc: set_key(doc, ["horizon", "start"], "2023-06-15T00:00:00")),
                    ["horizon.start", "UTC offset"]),
    "csv missing column": (lambda d: edit_csv(d, "carbon.csv", lambda ls: [",".join(l.split(",")[:2]) for l in ls]),
                           ["carbon.csv", "missing column(s): gco2_per_kwh"]),
    "csv negative value": (lambda d: edit_csv(d, "demand.csv", lambda ls: [ls[0], ls[1].replace(",", ",-", 3).replace(",-", ",", 2)] + ls[2:]),
                           ["demand.csv", "line 2", "rate_rps: negative value"]),
    "csv nan value": (lambda d: edit_csv(d, "profiles.csv", lambda ls: [ls[0]] + [_set_col(ls[0], ls[1], "max_rps", "nan")] + ls[2:]),
                      ["profiles.csv", "line 2", "max_rps: not a finite number"]),
    "csv not a number": (lambda d: edit_csv(d, "profiles.csv", lambda ls: [ls[0]] + [_set_col(ls[0], ls[1], "tp", "two")] + ls[2:]),
                         ["profiles.csv", "line 2", "tp: not a finite number"]),
    "csv unknown reference": (lambda d: edit_csv(d, "carbon.csv", lambda ls: [ls[0], ls[1].replace(ls[1].split(",")[1], "mars", 1)] + ls[2:]),
                              ["carbon.csv", "line 2", "unknown region 'mars'"]),
    "bad timestamp": (lambda d: edit_csv(d, "carbon.csv", lambda ls: [ls[0], "yesterday" + ls[1][ls[1].index(","):]] + ls[2:]),
                      ["carbon.csv", "line 2", "not an ISO 8601 timestamp"]),
    "series does not cover horizon": (lambda d: edit_csv(d, "carbon.csv", lambda ls: [l for l in ls if "T23:00" not in l]),
                                      ["carbon.csv", "series covers", "horizon is"]),
    "gap in series": (lambda d: edit_csv(d, "carbon.csv", lambda ls: [l for l in ls if "T12:00" not in l]),
                      ["carbon.csv", "gap in the series"]),
    "duplicate timestamp": (lambda d: edit_csv(d, "carbon.csv", lambda ls: ls + [ls[1]]),
                            ["carbon.csv", "appears more than once"]),
    "duplicate profile row": (lambda d: edit_csv(d, "profiles.csv", lambda ls: ls + [ls[1]]),
                              ["profiles.csv", "duplicate profile row"]),
    "empty csv": (lambda d: (d / "demand.csv").write_text(""), ["demand.csv", "file is empty"]),
    "missing csv": (lambda d: (d / "demand.csv").unlink(), ["demand", "table file not found"]),
    "non-utf8 csv": (lambda d: (d / "carbon.csv").write_bytes(b"timestamp,region,gco2_per_kwh\n\xff\xfe,a,1\n"),
                     ["carbon.csv", "not UTF-8"]),
    "empty yaml": (lambda d: (d / "scenario.yaml").write_text(""), ["scenario.yaml", "file is empty"]),
    "non-utf8 yaml": (lambda d: (d / "scenario.yaml").write_bytes(b"name: \xff\xfe\n"), ["scenario.yaml", "not UTF-8"]),
    "malformed yaml": (lambda d: (d / "scenario.yaml").write_text("name: [unclosed\nhorizon: {\n"),
                       ["scenario.yaml", "malformed YAML"]),
    "yaml not a mapping": (lambda d: (d / "scenario.yaml").write_text("- a\n- b\n"), ["scenario.yaml", "mapping"]),
    "busy below idle": (lambda d: edit_csv(d, "profiles.csv", lambda ls: [ls[0]] + [_set_col(ls[0], ls[1], "busy_power_w", "1")] + ls[2:]),
                        ["profiles.csv", "line 2", "busy_power_w is below idle_power_w"]),
    "active below idle": (lambda d: edit_csv(d, "profiles.csv", lambda ls: [ls[0], ls[1]] + [_set_col(ls[0], ls[2], "active_power_w", "1")] + ls[3:]),
                          ["profiles.csv", "line 3", "active_power_w is below idle_power_w"]),
    "active above busy": (lambda d: edit_csv(d, "profiles.csv", lambda ls: [ls[0]] + [_set_col(ls[0], ls[1], "active_power_w", "99999")] + ls[2:]),
                          ["profiles.csv", "line 2", "active_power_w is above busy_power_w"]),
    "residency to region without rtt": (lambda d: edit_yaml(d, lambda doc: doc["origins"][0].update(
        {"rtt_ms": {doc["regions"][0]["name"]: 10}, "allowed_regions": [doc["regions"][1]["name"]]})),
        ["origins[0].allowed_regions", "has no rtt_ms entry"]),
}


def _set_col(header: str, line: str, col: str, value: str) -> str:
    cols = header.split(",")
    parts = line.split(",")
    parts[cols.index(col)] = value
    return ",".join(parts)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_scenario_is_rejected(case, sdir, tmp_path, capsys):
    mutate, fragments = CASES[case]
    mutate(sdir)
    out_file = tmp_path / "plan.json"
    out_file.write_text("GOOD OLD PLAN")
    code, out, err = run(["solve", sdir / "scenario.yaml", "-o", out_file, "-q"], capsys)
    assert code == 2, err
    msg = " ".join(err.split())
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"
    assert out_file.read_text() == "GOOD OLD PLAN"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".plan")], "temporary file left behind"
    # validate reports the same problem with the same exit code
    code2, _, err2 = run(["validate", sdir / "scenario.yaml"], capsys)
    assert code2 == 2 and fragments[-1] in " ".join(err2.split())


def test_every_problem_is_reported_at_once(sdir, capsys):
    """Two independent schema problems: both are listed."""
    edit_yaml(sdir, lambda doc: set_key(doc, ["regions", 0, "pue"], 0.5))
    edit_yaml(sdir, lambda doc: set_key(doc, ["horizon", "slot_minutes"], 0))
    code, _, err = run(["validate", sdir], capsys)
    msg = " ".join(err.split())
    assert code == 2
    assert "regions[0].pue" in msg and "horizon.slot_minutes" in msg and "2 problems" in msg


def test_reference_problems_across_files_listed_together(sdir, capsys):
    edit_yaml(sdir, lambda doc: set_key(doc, ["classes", 1, "shape"], "nope"))
    edit_csv(sdir, "carbon.csv", lambda ls: [ls[0], ls[1].replace(ls[1].split(",")[1], "mars", 1)] + ls[2:])
    code, _, err = run(["validate", sdir], capsys)
    msg = " ".join(err.split())
    assert code == 2
    assert "classes[1].shape" in msg and "unknown region 'mars'" in msg


@pytest.mark.parametrize("args,fragment", [
    (["solve", "--objective", "speed"], "--objective"),
    (["solve", "--backend", "gurobi"], "--backend"),
    (["solve", "--mip-gap", "1.5"], "--mip-gap"),
    (["solve", "--time-limit", "-1"], "--time-limit"),
    (["solve", "--budget", "-5"], "--budget"),
    (["solve", "--threads", "0"], "--threads"),
    (["solve", "--write-model", "model.txt"], ".mps or .lp"),
    (["solve", "no/such/scenario.yaml"], "file not found"),
    (["solve", "-o", "no/such/dir/plan.json"], "does not exist"),
    (["show", "missing.json"], "missing.json"),
    (["schema", "wizard"], "wizard"),
    (["frobnicate"], "frobnicate"),
])
def test_bad_usage(args, fragment, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(args, capsys)
    assert code == 2, err
    assert fragment in err
    assert list(tmp_path.iterdir()) == []


def test_bad_plan_file(tmp_path, capsys):
    p = tmp_path / "plan.json"
    p.write_text("{not json")
    code, _, err = run(["check", p], capsys)
    assert code == 2 and "plan.json" in err
    p.write_text('{"schema_version": "1.0"}')
    code, _, err = run(["show", p], capsys)
    assert code == 2 and "plan.json" in err


@pytest.mark.parametrize("stamp, ok", [
    ("2024-01-01T00:00:00Z", True), ("2024-01-01 00:00:00+00:00", True), ("2024-01-01T05:30:00+05:30", True),
    ("2023-12-31T19:00:00-0500", True), ("2024-01-01T00:00:00", False), ("2024-01-01", False),
])
def test_table_timestamps_need_an_explicit_offset(stamp, ok):
    """Naive times (and dates alone) are refused with the row named; any explicit offset is converted."""
    from builders import scenario

    import planner

    doc = scenario()
    doc["carbon_intensity"][0]["timestamp"] = stamp
    if ok:
        sc = planner.scenario_from_dict(doc)
        assert sc.carbon[0, 0] == 100.0
    else:
        with pytest.raises(planner.ScenarioError) as e:
            planner.scenario_from_dict(doc)
        assert "carbon_intensity[0]" in str(e.value) and "no UTC offset" in str(e.value)

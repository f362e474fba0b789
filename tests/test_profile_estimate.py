"""`plan profile estimate` and the importers' performance-model estimates (--estimate-missing)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from builders import scenario
from helpers import solve_checked

import planner
from planner.cli import main
from planner.perf import model as perfmodel
from planner.perf.estimate import estimate_profiles, shape_targets
from planner.perf.rows import profile_rows
from planner.scenario.loading import PROFILE_KEY
from planner.scenario.schema import ScenarioSpec

FIX = Path(__file__).parent / "fixtures" / "profile_import"


def _doc(**kw):
    """One region with H100-80GB and L4, model llama-3.1-8b, shape 409/94, class SLO 1000/100 ms."""
    kw.setdefault("regions", {"A": {"pue": 1.0, "gpus": [
        {"type": "H100-80GB", "count": 8, "price_usd_per_gpu_hour": 10.0},
        {"type": "L4", "count": 8, "price_usd_per_gpu_hour": 1.0}]}})
    kw.setdefault("gpus", ["H100-80GB", "L4"])
    kw.setdefault("models", ["llama-3.1-8b"])
    kw.setdefault("shapes", [{"name": "s", "input_tokens": 409, "output_tokens": 94}])
    kw.setdefault("classes", [{"name": "k", "model": "llama-3.1-8b", "shape": "s",
                               "slo": {"ttft_ms": 1000, "tbt_ms": 100}}])
    kw.setdefault("origins", {"o": {"rtt_ms": {"A": 30.0}}})
    measured = dict(model="llama-3.1-8b", gpu="H100-80GB", tp=1, pp=1, freq_mhz=1980, shape="s", max_rps=33.0,
                    ttft_ms=200.0, tbt_ms=60.0, busy_power_w=500.0, idle_power_w=90.0, source="measured by hand")
    kw.setdefault("profiles", [measured])
    return scenario(**kw)


def _spec(doc) -> ScenarioSpec:
    return ScenarioSpec.model_validate(doc)


def test_shape_targets_take_the_tightest_slo_less_the_nearest_rtt():
    """Classes k1 (TTFT 1000, TBT 100) and k2 (TTFT 800, TBT 150, e2e 3000) share (m, s); the nearest
    route has RTT 20 ms (origin o2 may not use the 5 ms region). Targets: TTFT min(1000, 800) - 20 = 780,
    TBT min(100, 150) = 100, e2e 3000 - 20 = 2980."""
    doc = scenario(
        regions={"A": {"pue": 1.0, "gpus": [{"type": "G", "count": 1, "price_usd_per_gpu_hour": 1.0}]},
                 "B": {"pue": 1.0, "gpus": [{"type": "G", "count": 1, "price_usd_per_gpu_hour": 1.0}]}},
        origins={"o1": {"rtt_ms": {"A": 20.0, "B": 50.0}},
                 "o2": {"rtt_ms": {"A": 5.0, "B": 40.0}, "allowed_regions": ["B"]}},
        classes=[{"name": "k1", "model": "m", "shape": "s", "slo": {"ttft_ms": 1000, "tbt_ms": 100}},
                 {"name": "k2", "model": "m", "shape": "s", "slo": {"ttft_ms": 800, "tbt_ms": 150, "e2e_ms": 3000}}],
        demand={("k1", "o1"): [1.0], ("k2", "o1"): [1.0]},
    )
    assert shape_targets(_spec(doc)) == {"m": {"s": (780.0, 100.0, 2980.0, None, None)}}


def test_estimate_keeps_measured_rows_and_adds_exactly_the_missing_model_rows():
    doc = _doc()
    table, rep = estimate_profiles(_spec(doc), pd.DataFrame(doc["profiles"]))
    # the hand-measured row is unchanged
    mine = table[table["source"] == "measured by hand"]
    assert len(mine) == 1 and float(mine["max_rps"].iloc[0]) == 33.0
    # the added rows are exactly the model's rows for both GPUs at TTFT 1000 - 30 = 970, minus the measured key
    expect = pd.concat([profile_rows("llama-3.1-8b", g, {"s": (409.0, 94.0)}, {"s": (970.0, 100.0, None)})
                        for g in ("H100-80GB", "L4")], ignore_index=True)
    keys = {tuple(r) for r in expect[PROFILE_KEY].itertuples(index=False)} - {("llama-3.1-8b", "H100-80GB", 1, 1, 1980, "s")}
    added = table[table["source"] != "measured by hand"]
    assert {(m, g, int(tp), int(pp), int(f), s) for m, g, tp, pp, f, s in added[PROFILE_KEY].itertuples(index=False)} == keys
    assert rep.added == len(keys) == len(added) and rep.kept == 1
    assert not table.duplicated(PROFILE_KEY).any()
    # estimated GPUs say so and carry a larger expected error than calibrated ones
    l4 = added[added["gpu"] == "L4"]
    h100 = added[added["gpu"] == "H100-80GB"]
    assert (l4["source"] == perfmodel.SOURCE_ESTIMATED).all() and (h100["source"] == perfmodel.SOURCE_MEASURED).all()
    assert l4["expected_error"].min() > h100["expected_error"].min() > 0
    # every added row meets the targets it was computed for
    assert (added["tbt_ms"] <= 100 + 1e-9).all() and (added["ttft_ms"] <= 970 + 1e-9).all()


def test_estimated_table_loads_and_solves_with_the_checker(tmp_path):
    """The filled table is a valid profile table: the scenario loads and a plan passes the checker."""
    doc = _doc(demand={("k", "o"): [20.0]})
    table, _ = estimate_profiles(_spec(doc), pd.DataFrame(doc["profiles"]))
    doc["profiles"] = json.loads(table.to_json(orient="records"))
    for r in doc["profiles"]:
        if r["expected_error"] is None:
            r["expected_error"] = ""
    sc = planner.scenario_from_dict(doc)
    assert len(sc.profiles) == len(table)
    plan, _ = solve_checked(sc, objective="energy")
    assert plan.totals.unserved_requests == 0


def _write_scenario(tmp_path: Path, doc: dict) -> Path:
    d = tmp_path / "sc"
    d.mkdir()
    pd.DataFrame(doc.pop("profiles")).to_csv(d / "profiles.csv", index=False)
    doc["profiles"] = "profiles.csv"
    (d / "scenario.yaml").write_text(yaml.safe_dump(doc))
    return d


def test_cli_estimate_writes_the_filled_table(tmp_path, capsys):
    d = _write_scenario(tmp_path, _doc())
    out = tmp_path / "filled.csv"
    assert main(["profile", "estimate", str(d), "--gpu", "L4", "-o", str(out)]) == 0
    df = pd.read_csv(out)
    assert set(df["gpu"]) == {"H100-80GB", "L4"}
    assert (df[df["gpu"] == "H100-80GB"]["source"] == "measured by hand").all()  # --gpu L4: H100 left alone
    assert "1 existing row kept" in capsys.readouterr().err


def test_cli_estimate_unknown_model_fails_cleanly_and_model_map_fixes_it(tmp_path, capsys):
    doc = _doc(models=["my-llama"], classes=[{"name": "k", "model": "my-llama", "shape": "s",
                                               "slo": {"ttft_ms": 1000, "tbt_ms": 100}}])
    doc["profiles"][0]["model"] = "my-llama"
    d = _write_scenario(tmp_path, doc)
    out = tmp_path / "filled.csv"
    out.write_text("keep me\n")
    assert main(["profile", "estimate", str(d), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "my-llama" in err and "--model-map" in err and "llama-3.1-8b" in err
    assert out.read_text() == "keep me\n"  # a good file is never clobbered on failure
    assert main(["profile", "estimate", str(d), "--model-map", "my-llama=llama-3.1-8b", "-o", str(out)]) == 0
    df = pd.read_csv(out)
    assert set(df["model"]) == {"my-llama"} and len(df) > 1


def test_cli_estimate_rejects_names_not_in_the_scenario(tmp_path, capsys):
    d = _write_scenario(tmp_path, _doc())
    assert main(["profile", "estimate", str(d), "--gpu", "B200", "-o", str(tmp_path / "x.csv")]) == 2
    assert "'B200' is not in the scenario" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


def test_import_estimate_missing_fills_from_the_performance_model(tmp_path, capsys):
    """ML.ENERGY v2 fixture on H100 (TP 1): idle power = the model's idle power of one H100 at max clock;
    TTFT = stand-alone prefill of 409 tokens + the measured TBT at the chosen batch; active power = the
    model's single-sequence power for 409 prompt tokens and the files' 200 output tokens (431 W),
    capped at the measured busy power of the chosen batch-128 run (400 W: the fixture's tiny model)."""
    files = [str(p) for p in sorted(FIX.glob("mlenergy_v2_*.json"))]
    base = ["profile", "import", *files, "--tbt-ms", "60", "--model", "llama-3.1-8b", "--gpu", "H100-80GB",
            "--shape", "s"]
    out = tmp_path / "p.csv"
    assert main([*base, "-o", str(out)]) == 2  # without estimates: idle power and TTFT are missing
    assert not out.exists()
    capsys.readouterr()
    assert main([*base, "--estimate-missing", "--input-tokens", "409", "-o", str(out)]) == 0
    row = pd.read_csv(out).iloc[0]
    rm = perfmodel.replica_model("llama-3.1-8b", "H100-80GB", 1, 1, None)
    assert row["idle_power_w"] == pytest.approx(rm.idle_power_w, rel=1e-5)
    assert row["ttft_ms"] == pytest.approx(rm.prefill_ms(409.0) + row["tbt_ms"], rel=1e-5)
    assert "from the performance model" in row["source"]
    assert rm.active_power_w(409.0, 200.0) > row["busy_power_w"] == pytest.approx(400.0)
    assert row["active_power_w"] == row["busy_power_w"]
    assert "active power from the performance model (capped at busy power)" in row["source"]
    assert main([*base, "--input-tokens", "409", "-o", str(out)]) == 2  # only with --estimate-missing


def test_cli_estimate_keeps_inline_profile_rows(tmp_path, capsys):
    """A scenario whose profile rows are inline: the measured row (max_rps 33) is kept, not replaced
    by the model's estimate for the same key."""
    doc = _doc()
    d = tmp_path / "inline"
    d.mkdir()
    (d / "scenario.yaml").write_text(yaml.safe_dump(doc))
    out = tmp_path / "filled.csv"
    assert main(["profile", "estimate", str(d), "-o", str(out)]) == 0
    df = pd.read_csv(out)
    row = df[(df["gpu"] == "H100-80GB") & (df["tp"] == 1) & (df["pp"] == 1) & (df["freq_mhz"] == 1980)]
    assert len(row) == 1 and row["max_rps"].iloc[0] == 33.0 and row["source"].iloc[0] == "measured by hand"
    assert "1 existing row kept" in capsys.readouterr().err


def test_a_folder_given_as_a_profile_table_is_a_clear_input_error(tmp_path, capsys):
    """`--merge DIR` and `--profiles DIR` went through a CSV reader without the folder check and
    ended as an internal error (exit 1); both now share the checked reader: exit 2, nothing written."""
    folder = tmp_path / "folder"
    folder.mkdir()
    out = tmp_path / "out.csv"
    code = main(["profile", "import", str(FIX / "runs.csv"), "--ttft-ms", "500", "--tbt-ms", "50",
                 "--merge", str(folder), "-o", str(out)])
    assert code == 2 and "is a directory, not a CSV file" in capsys.readouterr().err
    assert main(["profile", "estimate", "--profiles", str(folder), "-o", str(out)]) == 2
    assert "is a directory, not a CSV file" in capsys.readouterr().err
    assert not out.exists()

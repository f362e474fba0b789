"""The `plan` command line: every command, exit codes, atomic writes, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from builders import profile, scenario

import planner
from planner.cli import main
from planner.optimize.backends import FEASIBLE, NO_SOLUTION, SolveResult
from planner.optimize.backends.highs import HighsBackend


def run(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def two_region_doc(**kw):
    d = dict(
        regions={"A": {"gpus": [{"type": "G", "count": 10, "price_usd_per_gpu_hour": 2.0}]},
                 "B": {"gpus": [{"type": "G", "count": 10, "price_usd_per_gpu_hour": 1.0}]}},
        carbon={"A": [100.0, 300.0, 200.0], "B": [400.0, 100.0, 250.0]},
        demand={("k", "o"): [8.0, 25.0, 14.0]},
        profiles=[profile(freq=1000), profile(freq=700, max_rps=7, busy=200, idle=90)],
        slots=3,
    )
    d.update(kw)
    return scenario(**d)


@pytest.fixture()
def scen(tmp_path) -> Path:
    p = tmp_path / "scenario.yaml"
    p.write_text(yaml.safe_dump(two_region_doc(), sort_keys=False))
    return p


def test_solve_writes_plan_and_summary(scen, tmp_path, capsys):
    out = tmp_path / "plan.json"
    code, stdout, err = run(["solve", scen, "--objective", "carbon", "-o", out], capsys)
    assert code == 0, err
    assert stdout == ""
    assert "objective" in err and "carbon" in err and "plan written to" in err
    plan = planner.Plan.from_json(out.read_text())
    assert plan.objective.name == "carbon" and plan.status == "optimal"
    code, _, _ = run(["check", out, "--scenario", scen], capsys)
    assert code == 0


def test_solve_to_stdout_is_pure_json(scen, capsys):
    code, stdout, err = run(["solve", scen, "--objective", "cost"], capsys)
    assert code == 0
    plan = json.loads(stdout)
    assert plan["objective"]["name"] == "cost"
    assert "objective" in err


def test_quiet_suppresses_summary(scen, tmp_path, capsys):
    code, _, err = run(["solve", scen, "-q", "-o", tmp_path / "p.json"], capsys)
    assert code == 0 and err == ""


def test_options_override_scenario(scen, tmp_path, capsys):
    out = tmp_path / "p.json"
    code, _, _ = run(["solve", scen, "--objective", "energy", "--budget", "1000", "--carbon-cap", "50",
                      "--tie-break", "none", "--mip-gap", "0", "--threads", "1", "--seed", "7", "-q", "-o", out],
                     capsys)
    assert code == 0
    p = json.loads(out.read_text())
    assert p["options"]["objective"] == "energy"
    assert p["options"]["budget_usd"] == 1000 and p["options"]["carbon_cap_kg"] == 50
    assert p["solver"]["seed"] == 7 and p["solver"]["threads"] == 1 and p["solver"]["mip_gap"] == 0
    assert p["objective"]["secondary"] is None


@pytest.mark.parametrize("backend", ["highs", "pyomo", "pulp"])
@pytest.mark.parametrize("suffix", [".mps", ".lp"])
def test_write_model(scen, tmp_path, capsys, backend, suffix):
    """The written model is what HiGHS gets: re-solving it with HiGHS alone gives the plan's
    primary objective (tie-break off, exact gap)."""
    import highspy

    model = tmp_path / f"m{suffix}"
    out = tmp_path / "p.json"
    code, _, err = run(["solve", scen, "--backend", backend, "--write-model", model, "--mip-gap", "0",
                        "--tie-break", "none", "-q", "-o", out], capsys)
    assert code == 0, err
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.readModel(str(model))
    h.setOptionValue("mip_rel_gap", 0.0)
    h.run()
    plan = json.loads(out.read_text())
    assert h.getInfo().objective_function_value == pytest.approx(plan["objective"]["value"], rel=1e-6)
    assert h.getNumCol() == plan["solver"]["variables"]


def test_show(scen, tmp_path, capsys):
    out = tmp_path / "p.json"
    run(["solve", scen, "-q", "-o", out], capsys)
    code, stdout, _ = run(["show", out, "--slot", "1"], capsys)
    assert code == 0
    assert "slot 1" in stdout and "routing" in stdout and "GPU" in stdout
    assert "(optimal)" in stdout
    code, _, err = run(["show", out, "--slot", "9"], capsys)
    assert code == 2 and "--slot" in err


def test_check_detects_tampering(scen, tmp_path, capsys):
    out = tmp_path / "p.json"
    run(["solve", scen, "-q", "-o", out], capsys)
    p = json.loads(out.read_text())
    p["slots"][1]["deployments"][0]["replicas"] -= 1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(p))
    code, stdout, _ = run(["check", bad, "--scenario", scen], capsys)
    assert code == 1 and "replica_capacity" in stdout
    code, stdout, _ = run(["check", bad, "--scenario", scen, "--json"], capsys)
    rep = json.loads(stdout)
    assert code == 1 and rep["ok"] is False
    assert "replica_capacity" in {v["family"] for v in rep["violations"]}


def test_validate_and_schema(scen, capsys):
    code, out, _ = run(["validate", scen], capsys)
    assert code == 0 and "valid" in out and "2 regions" in out
    for kind, key in (("scenario", "horizon"), ("plan", "slots")):
        code, out, _ = run(["schema", kind], capsys)
        assert code == 0 and key in json.loads(out)["properties"]


def test_init_writes_default_and_refuses_overwrite(tmp_path, capsys):
    d = tmp_path / "mine"
    code, _, _ = run(["init", d], capsys)
    assert code == 0
    assert (d / "scenario.yaml").exists() and (d / "profiles.csv").exists()
    sc = planner.load_scenario(d)
    assert sc.fingerprint == planner.load_scenario().fingerprint
    (d / "carbon.csv").write_text("edited")
    code, _, err = run(["init", d], capsys)
    assert code == 2 and "already exists" in err
    assert (d / "carbon.csv").read_text() == "edited"
    code, _, _ = run(["init", d, "--force"], capsys)
    assert code == 0 and (d / "carbon.csv").read_text() != "edited"


def test_init_and_solve_name_the_week_example(tmp_path, capsys):
    """``plan init --example week`` writes the shared folder and points at week.yaml, which loads with its
    VM offers and 168 slots; unknown examples are refused by name (exit 2, nothing written)."""
    d = tmp_path / "wk"
    code, _, err = run(["init", d, "--example", "week"], capsys)
    assert code == 0 and "week.yaml" in err
    sc = planner.load_scenario(d / "week.yaml")
    assert sc.n_slots == 168 and sc.vm_offers is not None and (sc.vm_offers["market"] == "spot").any()
    assert sc.options.scaling is not None
    code, _, err = run(["init", tmp_path / "x", "--example", "month"], capsys)
    assert code == 2 and "month" in err and "week" in err and not (tmp_path / "x").exists()
    code, _, err = run(["solve", "--example", "month"], capsys)
    assert code == 2 and "unknown example" in err
    code, _, err = run(["solve", d / "week.yaml", "--example", "week"], capsys)
    assert code == 2 and "not both" in err


def test_infeasible_exit_3_with_explanation(tmp_path, capsys):
    doc = two_region_doc(demand={("k", "o"): [8.0, 500.0, 14.0]})
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(doc))
    out = tmp_path / "plan.json"
    out.write_text("previous good plan")
    code, stdout, err = run(["solve", p, "-o", out, "--explain"], capsys)
    assert code == 3
    msg = " ".join(err.split())
    assert "class k from o needs 500 req/s in slot 2024-01-01 01:00" in msg
    assert "serve at most 200 req/s" in msg
    ex = json.loads(stdout)
    f = ex["findings"][0]
    assert {"demand_served", "gpu_availability", "replica_capacity"} <= set(f["families"])
    assert f["data"]["servable_rps"] == pytest.approx(200.0)
    assert out.read_text() == "previous good plan"


def test_infeasible_budget_explained(scen, capsys):
    code, _, err = run(["solve", scen, "--budget", "3"], capsys)
    msg = " ".join(err.split())
    assert code == 3
    assert "budget" in msg and "costs at least" in msg and "3.00 USD" in msg


def test_infeasible_unroutable_explained(tmp_path, capsys):
    doc = two_region_doc(origins={"o": {"rtt_ms": {"A": 480.0, "B": 900.0}}})
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(doc))
    code, _, err = run(["solve", p], capsys)
    msg = " ".join(err.split())
    assert code == 3
    assert "A: RTT 480 ms + lowest TTFT 100 ms" in msg and "B: RTT 900 ms" in msg


def test_time_limit_without_solution_exit_4(scen, tmp_path, capsys, monkeypatch):
    def no_solution(self, opts, start=None):
        return SolveResult(NO_SOLUTION, None, 1.0, None, 0.1, None, "Time limit reached")

    monkeypatch.setattr(HighsBackend, "solve", no_solution)
    out = tmp_path / "plan.json"
    code, _, err = run(["solve", scen, "--time-limit", "1", "--threads", "1", "-o", out], capsys)
    assert code == 4 and "no feasible plan found within the time limit" in err
    assert not out.exists()


def test_time_limit_with_solution_writes_feasible_plan(scen, tmp_path, capsys, monkeypatch):
    real = HighsBackend.solve

    def stopped_early(self, opts, start=None):
        r = real(self, opts, start)
        return SolveResult(FEASIBLE, r.objective, r.objective * 0.9, 0.1, r.solve_seconds, r.x, "Time limit reached")

    monkeypatch.setattr(HighsBackend, "solve", stopped_early)
    out = tmp_path / "plan.json"
    code, _, err = run(["solve", scen, "--time-limit", "5", "--threads", "1", "-o", out], capsys)
    assert code == 0
    p = json.loads(out.read_text())
    assert p["status"] == "feasible" and p["solver"]["gap"] == pytest.approx(0.1, rel=1e-3)
    assert "stopped at a limit" in err


def test_internal_error_has_no_traceback(scen, capsys, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("kaput")

    monkeypatch.setattr("planner.optimize.prepare.build_sets", boom)
    code, _, err = run(["solve", scen], capsys)
    assert code == 1 and "internal error" in err and "kaput" in err


def test_plans_are_deterministic(scen, tmp_path, capsys):
    """Same inputs and options, same bytes apart from the timing fields."""
    texts = []
    for i in range(2):
        out = tmp_path / f"p{i}.json"
        assert run(["solve", scen, "-q", "-o", out], capsys)[0] == 0
        p = json.loads(out.read_text())
        for f in ("build_seconds", "solve_seconds"):
            p["solver"].pop(f)
        texts.append(json.dumps(p, sort_keys=True))
    assert texts[0] == texts[1]


def test_timing_fields_are_the_only_nondeterminism(scen):
    sc = planner.load_scenario(scen)
    a = planner.solve(sc).without_timings()
    b = planner.solve(sc, threads=1).without_timings()
    a["solver"].pop("threads"), b["solver"].pop("threads")
    assert a == b


def test_written_files_get_the_usual_mode(scen, tmp_path, capsys):
    """Atomic writes go through a private temporary file; the result has the umask's mode."""
    import os

    um = os.umask(0o022)
    try:
        out = tmp_path / "p.json"
        assert run(["solve", scen, "-q", "-o", out], capsys)[0] == 0
        assert out.stat().st_mode & 0o777 == 0o644
        out.chmod(0o600)
        assert run(["solve", scen, "-q", "-o", out], capsys)[0] == 0
        assert out.stat().st_mode & 0o777 == 0o600  # an existing file keeps its mode
    finally:
        os.umask(um)

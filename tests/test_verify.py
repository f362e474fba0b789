"""Capacity factors and the verification loop (``options.capacity_factors``, ``planner.verify``,
``plan solve --verify``)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from builders import profile, scenario
from hypothesis import given, settings
from hypothesis import strategies as st
from test_simulate import sim_doc

import planner

HERE = Path(__file__).resolve().parent


def factor(f, cls="k", **kw):
    return {"model": kw.get("model", "m"), "gpu": kw.get("gpu", "G"), "tp": 1, "pp": 1,
            "freq_mhz": kw.get("freq", 1000), "class": cls, "factor": f}


# --------------------------------------------------------------------------------- the model


@pytest.mark.parametrize("backend", ["highs", "pyomo", "pulp"])
def test_a_factor_shrinks_usable_capacity(backend):
    """One config (10 req/s per replica, 300 W busy, 100 W idle), demand 16 req/s, max_utilization 1.

    Without a factor: ceil(16 / 10) = 2 replicas at utilisation 0.8. With factor 0.5 the usable
    capacity is 5 req/s: ceil(16 / 5) = 4 replicas; the reported utilisation stays physical,
    16 / (10 x 4) = 0.4, and power is base x 4 + (300 - 100) x 16 / 10 = 400 + 320 = 720 W."""
    sc = planner.scenario_from_dict(scenario(demand={("k", "o"): [16.0]}, options={"max_utilization": 1.0}))
    p0 = planner.solve(sc, "carbon", backend=backend, mip_gap=0.0)
    assert [d.replicas for d in p0.slots[0].deployments] == [2]
    p1 = planner.solve(sc, "carbon", backend=backend, mip_gap=0.0, capacity_factors=[factor(0.5)])
    (d,) = p1.slots[0].deployments
    assert d.replicas == 4
    assert d.utilization == pytest.approx(0.4)
    assert d.power_w == pytest.approx(720.0)
    assert [f.factor for f in p1.options.capacity_factors] == [0.5]
    assert planner.check(p1, sc).ok


def test_a_factor_moves_load_to_the_other_config():
    """Two GPU types, same 10 req/s and power; H costs 1.5 USD/h, G 1.0. Cost-optimal: G. With G's
    factor 0.4 (4 req/s usable) 8 req/s needs 2 G replicas (2 USD/h) but 1 H replica (1.5 USD/h): H."""
    doc = scenario(gpus=["G", "H"], profiles=[profile(), profile(gpu="H")],
                   regions={"A": {"gpus": [{"type": "G", "count": 10, "price_usd_per_gpu_hour": 1.0},
                                           {"type": "H", "count": 10, "price_usd_per_gpu_hour": 1.5}]}},
                   options={"max_utilization": 1.0})
    sc = planner.scenario_from_dict(doc)
    assert [d.gpu for d in planner.solve(sc, "cost", mip_gap=0.0).slots[0].deployments] == ["G"]
    p = planner.solve(sc, "cost", mip_gap=0.0, capacity_factors=[factor(0.4)])
    assert [(d.gpu, d.replicas) for d in p.slots[0].deployments] == [("H", 1)]
    assert p.totals.cost_usd == pytest.approx(1.5)


@settings(max_examples=15, deadline=None)
@given(f=st.floats(0.05, 1.0), rate=st.floats(0.5, 60.0), util=st.sampled_from([0.5, 0.8, 1.0]))
def test_replicas_follow_the_factor(f, rate, util):
    """One config of 10 req/s: replicas = ceil(rate / (10 x f x U)) (whole replicas, the least that
    fit), and every plan passes the independent checker with the factor applied."""
    sc = planner.scenario_from_dict(scenario(demand={("k", "o"): [rate]}, options={"max_utilization": util},
                                             regions={"A": {"gpus": [{"type": "G", "count": 2000,
                                                                      "price_usd_per_gpu_hour": 1.0}]}}))
    p = planner.solve(sc, "gpu-hours", mip_gap=0.0, capacity_factors=[factor(f)])
    need = rate / (10.0 * f * util)
    reps = sum(d.replicas for d in p.slots[0].deployments)
    assert reps == math.ceil(need - 1e-9)
    assert planner.check(p, sc).ok


def test_bad_factors_are_named():
    sc = planner.scenario_from_dict(scenario())
    cases = [(factor(0.5, cls="zz"), "capacity_factors[0].class: unknown class 'zz'"),
             (factor(0.5, model="mm"), "capacity_factors[0].model: unknown model 'mm'"),
             (factor(0.5, gpu="GG"), "capacity_factors[0].gpu: unknown GPU type 'GG'"),
             (factor(1.5), "capacity_factors[0].factor: Input should be less than or equal to 1"),
             (factor(0.0), "capacity_factors[0].factor: Input should be greater than 0")]
    for f, msg in cases:
        with pytest.raises(planner.ScenarioError) as e:
            planner.solve(sc, "carbon", capacity_factors=[f])
        assert msg in str(e.value), (msg, str(e.value))
    with pytest.raises(planner.ScenarioError, match=r"capacity_factors\[1\]: repeats capacity_factors\[0\]"):
        planner.solve(sc, "carbon", capacity_factors=[factor(0.5), factor(0.7)])


def test_a_scenario_file_with_a_bad_factor_exits_2(tmp_path):
    doc = scenario(options={"capacity_factors": [factor(0.5, cls="nope")]})
    path = tmp_path / "s.json"
    path.write_text(json.dumps(doc))
    r = subprocess.run([sys.executable, "-m", "planner.cli", "validate", str(path)], capture_output=True, text=True)
    assert r.returncode == 2
    assert "options.capacity_factors[0].class: unknown class 'nope'" in r.stderr
    assert "Traceback" not in r.stderr


def test_the_checker_applies_the_plans_factors():
    """A plan sized without factors but claiming factor 0.5 carries 16 / (10 x 0.5) = 3.2 replicas'
    worth of load on 2 replicas: a replica_capacity violation. A factor above 1 is an options one."""
    sc = planner.scenario_from_dict(scenario(demand={("k", "o"): [16.0]}, options={"max_utilization": 1.0}))
    d = json.loads(planner.solve(sc, "carbon").to_json())
    d["options"]["capacity_factors"] = [factor(0.5)]
    rep = planner.check(json.dumps(d), sc)
    assert {v.family for v in rep.violations} == {"replica_capacity"}
    msgs = [v.message for v in rep.violations]
    assert any("3.2 replicas' worth of load with the plan's capacity factors on 2 replicas" in m for m in msgs)
    # the slot's stated surge margin was computed without the factor: 1 + (1 - 0.8) / 0.8, now 1 + (1 - 1.6) / 1.6
    assert any("headroom of k states surge 1.25" in m and "give 0.625" in m for m in msgs)
    d["options"]["capacity_factors"] = [factor(1.5)]
    assert [v.family for v in planner.check(json.dumps(d), sc).violations] == ["options"]


# --------------------------------------------------------------------------------- the loop


@pytest.fixture(scope="module")
def optimistic():
    """The 8B model on H100s (profile rows from the performance model the simulator runs) with every
    max_rps doubled: the plan provisions half the replicas the traffic needs."""
    doc = sim_doc(rate=60.0, max_util=1.0)
    for r in doc["profiles"]:
        r["max_rps"] *= 2.0
    sc = planner.scenario_from_dict(doc)
    return sc, planner.solve(sc, mip_gap=0.0)


def test_verification_derates_an_optimistic_profile_until_the_slos_hold(optimistic):
    sc, plan = optimistic
    first = planner.simulate(plan, sc, minutes=5.0)
    assert first.attainment.slo < 0.5  # overloaded: the doubled rate is far above what a replica sustains
    seen = []
    v = planner.verify(plan, sc, minutes=5.0, progress=seen.append)
    ver = v.verification
    assert ver.met and ver.rounds[-1].met and not ver.rounds[0].met
    assert [r["iteration"] for r in seen] == list(range(len(ver.rounds)))
    assert ver.rounds[0].attainment == pytest.approx(first.attainment.slo)
    assert all(g.attainment >= 0.99 and g.target == 0.99 for g in ver.groups)
    # derated by the rule: attained a < 0.5 -> step clip(1 - 2 (0.99 - a), 0.5, 0.95) = 0.5; the one
    # deployment could not keep up (work ratio > 1), so the factor is also at most planned / work ratio
    (d,) = first.deployments
    assert d.work_ratio > 1
    assert [f.factor for f in v.options.capacity_factors] == [pytest.approx(min(0.5, d.planned_utilization / d.work_ratio),
                                                                            rel=1e-5)]
    assert sum(d.replicas for d in v.slots[0].deployments) > sum(d.replicas for d in plan.slots[0].deployments)
    assert ver.rounds[-1].gpu_hours > ver.rounds[0].gpu_hours
    assert planner.check(v, sc).ok
    # the plan holds when simulated again on its own, and the loop's last round is that simulation
    again = planner.simulate(v, sc, minutes=5.0)
    assert again.attainment.slo == pytest.approx(ver.rounds[-1].attainment)
    assert again.attainment.slo >= 0.99


def test_verification_is_deterministic(optimistic):
    sc, plan = optimistic
    a = planner.verify(plan, sc, minutes=2.0)
    b = planner.verify(plan, sc, minutes=2.0)
    assert a.without_timings() == b.without_timings()
    assert a.to_json() == planner.Plan.from_json(a.to_json()).to_json()


def test_a_plan_that_already_holds_is_returned_unchanged(optimistic):
    sc, _ = optimistic
    plan = planner.solve(planner.scenario_from_dict(sim_doc(rate=60.0, max_util=0.7)), mip_gap=0.0)
    sc2 = planner.scenario_from_dict(sim_doc(rate=60.0, max_util=0.7))
    v = planner.verify(plan, sc2, minutes=2.0)
    assert len(v.verification.rounds) == 1 and v.verification.met
    assert v.options.capacity_factors == [] and v.slots == plan.slots


def test_the_iteration_limit_ends_the_loop_and_says_so(optimistic):
    sc, plan = optimistic
    v = planner.verify(plan, sc, minutes=2.0, max_iterations=0)
    assert len(v.verification.rounds) == 1 and not v.verification.met
    assert any(w.startswith("verification: after 0 re-solve(s), 1 (class, origin) group(s) still miss") and "iteration limit (0 re-solves)" in w for w in v.warnings)
    assert v.verification.stopped == "the iteration limit (0 re-solves) was reached"
    with pytest.raises(planner.InputError, match="max_iterations"):
        planner.verify(plan, sc, max_iterations=-1)


def test_an_attainment_target_per_class():
    """Profiles 1.2x optimistic at 100 req/s: the plan's 2 replicas run at 95 % of their stated rate, so
    over 100 % of what they sustain, and about 8 % of requests meet the SLOs. slo.attainment 0.05
    accepts that plan as it is; the default 0.99 makes the loop derate and re-solve."""
    doc = sim_doc(rate=100.0, max_util=1.0)
    for r in doc["profiles"]:
        r["max_rps"] *= 1.2
    sc = planner.scenario_from_dict(doc)
    plan = planner.solve(sc, mip_gap=0.0)
    got = planner.simulate(plan, sc, minutes=2.0).attainment.slo
    assert 0.05 <= got < 0.99, got
    strict = planner.verify(plan, sc, minutes=2.0)
    assert strict.verification.met and len(strict.verification.rounds) > 1
    doc["classes"][0]["slo"]["attainment"] = 0.05
    lenient = planner.scenario_from_dict(doc)  # another scenario (the SLO is part of it): solve it again
    v = planner.verify(planner.solve(lenient, mip_gap=0.0), lenient, minutes=2.0)
    assert v.verification.met and len(v.verification.rounds) == 1
    assert [g.target for g in v.verification.groups] == [0.05]


def test_simulated_counts_per_deployment_and_class_add_up(optimistic):
    sc, plan = optimistic
    rep = planner.simulate(plan, sc, minutes=2.0)
    routed = sum(c.requests for d in rep.deployments for c in d.classes)
    met = sum(c.met for d in rep.deployments for c in d.classes)
    assert routed == rep.requests.arrived - rep.requests.dropped_unrouted
    assert met == pytest.approx(rep.attainment.slo * rep.requests.arrived, abs=0.5)


# --------------------------------------------------------------------------------- the command line


def test_plan_solve_verify_writes_a_verified_plan(optimistic, tmp_path):
    doc = sim_doc(rate=60.0, max_util=1.0)
    for r in doc["profiles"]:
        r["max_rps"] *= 2.0
    src = tmp_path / "s.json"
    src.write_text(json.dumps(doc))
    out = tmp_path / "plan.json"
    r = subprocess.run([sys.executable, "-m", "planner.cli", "solve", str(src), "--verify", "--verify-minutes", "2",
                        "-o", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "verification round 0:" in r.stderr and "verification round 1:" in r.stderr
    d = json.loads(out.read_text())
    assert d["verification"]["met"] is True and 0.45 < d["options"]["capacity_factors"][0]["factor"] <= 0.5
    r = subprocess.run([sys.executable, "-m", "planner.cli", "check", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([sys.executable, "-m", "planner.cli", "show", str(out)], capture_output=True, text=True,
                       env={**__import__("os").environ, "COLUMNS": "200"})
    assert r.returncode == 0, r.stderr
    assert "targets met after 1 re-solve(s): 100.00 % of simulated requests within SLOs (poisson, fcfs, 2 min" in r.stdout
    assert "1 (config, class) capacity factor(s)" in r.stdout
    for args, msg in ((["--trace", "x.csv"], "--trace needs --verify"),
                      (["--verify-minutes", "3"], "--verify-minutes needs --verify"),
                      (["--verify", "--trace", str(tmp_path / "none.csv")], "none.csv: CSV file not found"),
                      (["--verify", "--verify-minutes", "0"], "--verify-minutes must be positive")):
        r = subprocess.run([sys.executable, "-m", "planner.cli", "solve", str(src), *args, "-o", str(tmp_path / "x.json")],
                           capture_output=True, text=True)
        assert r.returncode == 2 and msg in r.stderr, (args, r.stderr)
        assert not (tmp_path / "x.json").exists()


def test_a_derating_the_fleet_cannot_carry_is_softened_then_the_loop_stops():
    """The optimistic 8B profile with a single H100 available: halving the capacity needs 2 GPUs, so the
    re-solve is infeasible; the deratings are softened (geometrically halfway back) until a plan fits
    one GPU again; the loop ends with the targets missed, says why, and the plan still checks."""
    doc = sim_doc(rate=60.0, max_util=1.0, count=1)
    for r in doc["profiles"]:
        r["max_rps"] *= 2.0
    sc = planner.scenario_from_dict(doc)
    plan = planner.solve(sc, mip_gap=0.0)
    v = planner.verify(plan, sc, minutes=2.0, max_iterations=3)
    ver = v.verification
    assert not ver.met
    assert "infeasible" in ver.stopped or "iteration limit" in ver.stopped, ver.stopped
    assert sum(d.gpus for d in v.slots[0].deployments) == 1
    assert all(0.5 < f.factor < 1.0 for f in v.options.capacity_factors)
    assert planner.check(v, sc).ok
    assert any("stopped because" in w for w in v.warnings)


def test_a_latency_bound_config_is_excluded():
    """8B at 10 req/s, TTFT 800 ms, 30 % of prompts 8,000 tokens long: one A100 (1.5 USD/h) is the
    cheapest plan, but its prefill of the long prompts misses the TTFT target even at 10 % of the
    load (it is latency-bound, not short of capacity), while an H100 meets it. Verification excludes
    the A100 pair instead of buying idle A100s, and the re-solve moves the class to the H100."""
    classes = [{"name": "k", "model": "llama-3.1-8b", "shape": "s", "slo": {"ttft_ms": 800, "tbt_ms": 100}}]
    doc = sim_doc(rate=10.0, gpus=("H100-80GB", "A100-80GB"), classes=classes)
    doc["shapes"][0]["distribution"] = [{"input_tokens": 400, "output_tokens": 100, "weight": 7},
                                        {"input_tokens": 8000, "output_tokens": 100, "weight": 3}]
    sc = planner.scenario_from_dict(doc)
    plan = planner.solve(sc, "cost", mip_gap=0.0)
    assert {d.gpu for d in plan.slots[0].deployments} == {"A100-80GB"}
    low = planner.simulate(plan, sc, minutes=2.0, load_scale=0.1)
    assert low.attainment.slo < 0.9  # misses at a tenth of the load: latency, not capacity
    v = planner.verify(plan, sc, minutes=2.0)
    assert v.verification.met
    assert {d.gpu for d in v.slots[0].deployments} == {"H100-80GB"}
    a100 = [f for f in v.options.capacity_factors if f.gpu == "A100-80GB" and f.tp == plan.slots[0].deployments[0].tp]
    assert a100 and all(f.factor == pytest.approx(1e-3) for f in a100)
    assert planner.check(v, sc).ok


def test_explain_false_raises_without_the_diagnosis():
    """500 req/s against 10 GPUs of 10 req/s: infeasible. By default the error explains the capacity
    shortfall; explain=False (what the verification loop uses for its re-solves) only says so."""
    sc = planner.scenario_from_dict(scenario(demand={("k", "o"): [500.0]}))
    with pytest.raises(planner.InfeasibleError) as full:
        planner.solve(sc, "carbon")
    assert full.value.explanation.findings and "demand exceeds what the available GPUs can serve" in str(full.value)
    with pytest.raises(planner.InfeasibleError) as quick:
        planner.solve(sc, "carbon", explain=False)
    assert quick.value.explanation.findings == [] and quick.value.explanation.method == "unknown"
    assert "not explained: explain=False" in str(quick.value)

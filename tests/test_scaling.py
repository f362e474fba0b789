"""The fleet over time (``options.scaling``): hand-derived instances on every backend, each plan checked.

One region, one config (10 req/s per replica, 1 USD per GPU-hour, idle 100 W), cost objective, one
origin; slots of one hour. Costs below are GPU-hours x 1 USD (electricity unpriced)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from builders import profile, scenario

import planner

BACKENDS = ["highs", "pyomo", "pulp"]
DEP = "A/m|G|tp1|pp1"  # actions name the deployment base: clock and pool changes are free


def _sc(demand, **scaling):
    return planner.scenario_from_dict(scenario(slots=len(demand), demand={("k", "o"): demand},
                                               profiles=[profile(max_rps=10.0)],
                                               options={"objective": "cost", "scaling": scaling}))


def _replicas(plan):
    return [sum(d.replicas for d in s.deployments) for s in plan.slots]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("provision_s,replicas,cost,started", [
    (1800, [1, 0, 1], 3.0, 2),   # stop and restart: 3 replica-hours + 2 starts x 0.5 h
    (7200, [1, 1, 1], 5.0, 1),   # a start costs 2 h: keeping the replica through the idle hour is cheaper
])
def test_startup_cost_decides_between_keeping_and_restarting(backend, provision_s, replicas, cost, started):
    """Demand 8, 0, 8 req/s: one replica in the busy hours. Restarting for the third hour costs a
    start (provision_s of GPU time); keeping it costs the idle hour. By hand: with 0.5 h per start,
    stop (1 + 0 + 1 + 2 x 0.5 = 3 USD); with 2 h, keep (3 + 2 = 5 USD against 2 + 2 x 2 = 6)."""
    sc = _sc([8.0, 0.0, 8.0], provision_s=provision_s)
    plan = planner.solve(sc, backend=backend, mip_gap=0.0)
    assert _replicas(plan) == replicas
    assert plan.totals.cost_usd == pytest.approx(cost)
    assert plan.totals.replicas_started == started
    assert plan.totals.scaling_gpu_hours == pytest.approx(started * provision_s / 3600)
    assert planner.check(plan, sc).ok


@pytest.mark.parametrize("backend", BACKENDS)
def test_min_up_time_keeps_a_started_replica(backend):
    """Demand 8, 20, 0, 8 needs 1, 2, 0, 1 replicas (cost 4, no startup cost). With min_up_slots 2,
    a replica started for slot 1 must still run in slot 2 (replicas are interchangeable: the one
    started for slot 0 may stop after two slots): 1, 2, 1, 1, or both started for slot 0 and stopped
    after slot 1: 2, 2, 0, 1; either costs 5."""
    sc = _sc([8.0, 20.0, 0.0, 8.0], min_up_slots=2)
    plan = planner.solve(sc, backend=backend, mip_gap=0.0)
    assert _replicas(plan) in ([1, 2, 1, 1], [2, 2, 0, 1])
    assert plan.totals.cost_usd == pytest.approx(5.0)
    assert planner.check(plan, sc).ok
    free = planner.solve(_sc([8.0, 20.0, 0.0, 8.0]), backend=backend, mip_gap=0.0)
    assert _replicas(free) == [1, 2, 0, 1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_change_cap_and_initial_fleet(backend):
    """Three replicas run before the horizon; demand 8 req/s needs one. With max_change 1 the fleet
    can only shed one per slot: 2, 1, 1 (cost 4; every slot's action stops one, then none). Without
    the cap: 1, 1, 1 (cost 3, two stopped at once)."""
    init = [{"region": "A", "model": "m", "gpu": "G", "tp": 1, "pp": 1, "freq_mhz": 1000, "replicas": 3}]
    sc = _sc([8.0, 8.0, 8.0], max_change=1, initial=init)
    plan = planner.solve(sc, backend=backend, mip_gap=0.0)
    assert _replicas(plan) == [2, 1, 1]
    assert plan.totals.cost_usd == pytest.approx(4.0)
    assert [[(a.deployment, a.started, a.stopped) for a in s.actions] for s in plan.slots] == [
        [(DEP, 0, 1)], [(DEP, 0, 1)], []]
    assert planner.check(plan, sc).ok
    free = planner.solve(_sc([8.0, 8.0, 8.0], initial=init), backend=backend, mip_gap=0.0)
    assert _replicas(free) == [1, 1, 1] and free.totals.replicas_stopped == 2


def test_the_checker_recomputes_actions_and_startup_costs():
    sc = _sc([8.0, 0.0, 8.0], provision_s=1800)
    d = json.loads(planner.solve(sc, mip_gap=0.0).to_json())
    d["slots"][2]["actions"] = []                        # the restart left out
    rep = planner.check(json.dumps(d), sc)
    assert "replica_flow" in rep.families
    assert any("0 to 1 replicas, so 1 started and 0 stopped, but the plan states 0 and 0" in v.message
               for v in rep.violations)
    d = json.loads(planner.solve(sc, mip_gap=0.0).to_json())
    d["totals"]["scaling_gpu_hours"] = 0.0
    assert planner.check(json.dumps(d), sc).families == ["totals"]


def test_without_scaling_plans_carry_no_actions():
    sc = planner.scenario_from_dict(scenario(slots=2))
    plan = planner.solve(sc)
    d = json.loads(plan.to_json())
    assert all("actions" not in s for s in d["slots"])
    assert "scaling_gpu_hours" not in d["totals"] and "scaling" not in d["options"]


def test_bad_initial_rows_are_named():
    from planner.errors import ScenarioError

    init = [{"region": "nowhere", "model": "m", "gpu": "G", "tp": 1, "pp": 1, "freq_mhz": 1000, "replicas": 1}]
    with pytest.raises(ScenarioError, match=r"options\.scaling\.initial\[0\]\.region.*unknown region 'nowhere'"):
        _sc([8.0], initial=init)
    with pytest.raises(ScenarioError, match=r"models\[0\]\.params_billion"):
        _sc([8.0], load_gb_per_s=2.0)


@pytest.mark.parametrize("demand,provision_s", [
    ([8.0, 25.0, 3.0, 30.0, 0.0, 18.0, 25.0, 2.0, 40.0, 9.0, 0.0, 16.0], 1800),
    ([30.0, 0.0, 30.0, 0.0, 30.0, 0.0, 30.0, 0.0, 30.0, 0.0, 30.0, 0.0], 2400),
])
def test_rolling_horizon_against_the_whole_model(demand, provision_s):
    """12 slots solved by windows of 6 slots committing 3 (4 windows, overlapping) and as one model.
    The rolling plan holds every rule (the checker), costs at least the whole model's optimum, and its
    bound (the slots solved without coupling) is at most that optimum; the gap it reports is its cost
    against that bound. On these two instances the windows find the optimum (29.5 and 33 USD, against
    bounds of 21 and 18: the startup costs, half an hour or more per start, are what the bound leaves out)."""
    sc = _sc(demand, provision_s=provision_s, min_up_slots=2)
    whole = planner.solve(sc, mip_gap=0.0, decompose=False)
    roll = planner.solve(sc, mip_gap=0.0)
    assert "rolling horizon" in roll.solver.status
    assert planner.check(roll, sc).ok
    opt = whole.objective.value
    assert roll.objective.value >= opt - 1e-6
    assert roll.solver.bound <= opt + 1e-6
    assert roll.solver.gap == pytest.approx((roll.objective.value - roll.solver.bound) / roll.objective.value)
    assert roll.objective.value == pytest.approx(opt)


@pytest.mark.parametrize("backend", BACKENDS)
def test_changing_the_clock_restarts_nothing(backend):
    """Energy objective; one GPU type, idle 400 W, two clocks: 1000 MHz (10 req/s, 600 W busy: 20 W per
    req/s above idle) and 1500 MHz (20 req/s, 1000 W busy: 30 W per req/s). Demand 18 then 8 req/s.
    Slot 0: one replica at 1500 MHz (400 + 30 x 18 = 940 W) beats two at 1000 MHz (800 + 20 x 18 = 1160 W).
    Slot 1: at 1000 MHz (400 + 20 x 8 = 560 W) beats 1500 MHz (640 W). A start costs 1800 s at idle
    (0.2 kWh). The same replica changes its clock: one start, 0.94 + 0.56 + 0.2 = 1.70 kWh. (Were a
    clock change a restart, it would stay at 1500 MHz: 0.94 + 0.64 + 0.2 = 1.78 kWh.)"""
    profs = [profile(freq=1000, max_rps=10.0, busy=600.0, idle=400.0),
             profile(freq=1500, max_rps=20.0, busy=1000.0, idle=400.0)]
    sc = planner.scenario_from_dict(scenario(slots=2, demand={("k", "o"): [18.0, 8.0]}, profiles=profs,
                                             options={"objective": "energy", "scaling": {"provision_s": 1800}}))
    plan = planner.solve(sc, backend=backend, mip_gap=0.0)
    assert [[(d.freq_mhz, d.replicas) for d in s.deployments] for s in plan.slots] == [[(1500, 1)], [(1000, 1)]]
    assert plan.totals.energy_kwh == pytest.approx(1.70)
    assert plan.totals.replicas_started == 1 and plan.totals.replicas_stopped == 0
    assert [[(a.deployment, a.started, a.stopped) for a in s.actions] for s in plan.slots] == [[(DEP, 1, 0)], []]
    assert planner.check(plan, sc).ok


def test_the_per_slot_plan_repriced_pays_its_restarts():
    """Demand 8, 0, 8 with starts of 2 h (7200 s): slot by slot the fleet is 1, 0, 1 (2 USD of replicas);
    re-priced in the coupled model it pays two starts (2 + 2 x 2 = 6 USD), where the coupled plan keeps
    the replica through the idle hour (5 USD, test above)."""
    from planner.optimize.rolling import reprice

    sc = _sc([8.0, 0.0, 8.0], provision_s=7200)
    plain = planner.solve(sc.without_scaling(), mip_gap=0.0)
    assert _replicas(plain) == [1, 0, 1] and plain.totals.cost_usd == pytest.approx(2.0)
    priced = reprice(plain, sc)
    assert _replicas(priced) == [1, 0, 1]
    assert priced.totals.cost_usd == pytest.approx(6.0) and priced.totals.replicas_started == 2
    assert [[(a.deployment, a.started, a.stopped) for a in s.actions] for s in priced.slots] == [
        [(DEP, 1, 0)], [(DEP, 0, 1)], [(DEP, 1, 0)]]
    assert planner.check(priced, sc).ok
    coupled = planner.solve(sc, mip_gap=0.0)
    assert coupled.totals.cost_usd == pytest.approx(5.0)


def test_without_scaling_keeps_the_spot_restart_time():
    """A spot VM type without spot_restart_s: a reclaim keeps its replicas down for their startup time,
    here provision_s 720 s = 0.2 h; reclaimed 0.5 times per hour, a spot replica serves 90 % of the time
    (9 of its 10 req/s), so 28 req/s needs 4 spot replicas. The same scenario without scaling (the bound
    step of the rolling horizon) keeps that loss: still 4, not 3."""
    vm = {"name": "vm1", "gpu": "G", "gpus": 1, "price_usd_per_hour": 1.0, "count": 10,
          "spot_price_usd_per_hour": 0.3, "spot_count": 10, "spot_interruptions_per_hour": 0.5}
    cls = [{"name": "k", "model": "m", "shape": "s", "slo": {"ttft_ms": 500, "tbt_ms": 50}, "spot": True}]
    doc = scenario(regions={"A": {"pue": 1.0, "vms": [vm]}}, demand={("k", "o"): [28.0]}, classes=cls,
                   options={"objective": "cost", "scaling": {"provision_s": 720}})
    sc = planner.scenario_from_dict(doc)
    for s in (sc, sc.without_scaling()):
        plan = planner.solve(s, mip_gap=0.0)
        assert sum(d.replicas for d in plan.slots[0].deployments) == 4
        assert planner.check(plan, s).ok
    assert sc.without_scaling().options.scaling is None


@pytest.mark.parametrize("demand,provision_s", [
    ([8.0, 25.0, 3.0, 30.0, 0.0, 18.0, 25.0, 2.0, 40.0, 9.0, 0.0, 16.0], 1800),
    ([30.0, 0.0, 30.0, 0.0, 30.0, 0.0, 30.0, 0.0, 30.0, 0.0, 30.0, 0.0], 2400),
])
def test_rolling_from_the_per_slot_plan_against_the_whole_model(demand, provision_s):
    """Startup costs only: the per-slot plan is a plan of the coupled model, so the windows start from it
    over its configs. The rolling plan holds every rule, costs no more than the per-slot plan re-priced
    and at least the whole model's optimum. Second instance by hand: 30 req/s (3 replicas) every other
    hour; a start costs 2400 s (2/3 h): stopping and restarting 3 replicas costs 3 x 2/3 = 2 USD per
    restart, keeping them through the idle hour 3 USD, so restart: 6 x 3 + 6 x 2 = 30 USD, which the
    per-slot plan already is (the windows keep it)."""
    from planner.optimize.rolling import reprice

    sc = _sc(demand, provision_s=provision_s)
    roll = planner.solve(sc, mip_gap=0.0)
    assert "over the configs the per-slot plan runs nearby" in roll.solver.status
    assert planner.check(roll, sc).ok
    whole = planner.solve(sc, mip_gap=0.0, decompose=False)
    priced = reprice(planner.solve(sc.without_scaling(), mip_gap=0.0), sc)
    assert whole.objective.value - 1e-6 <= roll.objective.value <= priced.objective.value + 1e-6
    assert roll.solver.bound <= whole.objective.value + 1e-6
    if provision_s == 2400:
        assert roll.objective.value == pytest.approx(30.0) == whole.objective.value


def test_initial_fleet_from_the_plan_in_force(tmp_path):
    """Demand 25 req/s for two hours needs 3 replicas; starts cost 1800 s (0.5 USD each). From nothing the
    plan starts 3 (6 + 1.5 = 7.5 USD). Re-planned from that plan's last slot (3 running), nothing starts
    (6 USD), through the library and through ``plan solve --initial-fleet``; the new plan checks against
    the scenario it was made for. A scenario without scaling refuses an initial fleet (exit 2)."""
    from planner.cli.app import main
    from planner.plan.fleet import with_initial_fleet

    sc = _sc([25.0, 25.0], provision_s=1800)
    first = planner.solve(sc, mip_gap=0.0)
    assert first.totals.replicas_started == 3 and first.totals.cost_usd == pytest.approx(7.5)
    again = planner.solve(with_initial_fleet(sc, first), mip_gap=0.0)
    assert again.totals.replicas_started == 0 and again.totals.cost_usd == pytest.approx(6.0)
    assert again.slots[0].actions == []
    d = sc.save(tmp_path / "sc")
    (tmp_path / "first.json").write_text(first.to_json())
    out = tmp_path / "again.json"
    rc = main(["solve", str(d), "--initial-fleet", str(tmp_path / "first.json"), "--mip-gap", "0", "-q", "-o", str(out)])
    assert rc == 0
    plan = json.loads(out.read_text())
    assert plan["totals"]["replicas_started"] == 0 and plan["slots"][0]["actions"] == []
    assert main(["check", str(out)]) == 0
    plain = planner.scenario_from_dict(scenario(slots=2, demand={("k", "o"): [25.0, 25.0]}))
    d2 = plain.save(tmp_path / "plain")
    assert main(["solve", str(d2), "--initial-fleet", str(tmp_path / "first.json"), "-q", "-o",
                 str(tmp_path / "x.json")]) == 2
    assert not (tmp_path / "x.json").exists()


def _two_clocks(demand, **scaling):
    profs = [profile(freq=1000, max_rps=10.0, busy=600.0, idle=400.0),
             profile(freq=1500, max_rps=20.0, busy=1000.0, idle=400.0)]
    return planner.scenario_from_dict(scenario(slots=len(demand), demand={("k", "o"): demand}, profiles=profs,
                                               options={"objective": "energy", "scaling": scaling}))


@pytest.mark.parametrize("backend", BACKENDS)
def test_slot_bound_and_plan_by_hand(backend):
    """The rolling horizon's per-slot step (planner.optimize.slot_bounds) on one slot, energy objective,
    idle 400 W and two clocks: 1000 MHz (10 req/s, 20 W per req/s above idle) and 1500 MHz (20 req/s,
    30 W per req/s); demand 15 req/s.

    * Slot MILP: one replica at 1500 MHz (400 + 30 x 15 = 850 W) beats two at 1000 MHz (800 + 300 =
      1100 W) and one of each (800 + ...): 0.85 kWh.
    * LP relaxation: per req/s, 1000 MHz costs 400/10 + 20 = 60 W and 1500 MHz 400/20 + 30 = 50 W:
      0.75 replicas at 1500 MHz, 750 W: 0.75 kWh.
    * Base relaxation (whole replicas per base, clocks mixed): one replica, a share a at 1000 MHz;
      850 - 10 y1000 W with y1000 <= 10 a and 15 - y1000 <= 20 (1 - a), so a = 0.5, y1000 = 5: 800 W,
      0.80 kWh.

    The slot's plan is the MILP's optimum; its bound (root cuts) lies between the LP and the optimum."""
    from formulations import objective_vector
    from planner.optimize.backends import SolveOptions, get_backend
    from planner.optimize.prepare import prepare
    from planner.optimize.slot_bounds import SlotModels, solve_slots

    sc, md, lm, v, _ = prepare(_two_clocks([15.0], provision_s=600), None, {})
    sm = SlotModels(lm, md, objective_vector(lm, md, "energy"))
    exact = SolveOptions(mip_gap=0.0, threads=1)
    for kind, value in (({"relaxed": True}, 0.80), ({"lp": True}, 0.75), ({}, 0.85)):
        sub, cols = sm.model(0, **kind)
        r = get_backend(backend)(sub, sm.objective(cols, sub)).solve(exact)
        assert r.objective == pytest.approx(value), kind
    (out,) = solve_slots(sm, backend, exact)
    assert out.status == "ok" and not out.whole
    assert float(sm.primary[sm.columns(0)] @ out.x) == pytest.approx(0.85)
    assert 0.75 - 1e-9 <= out.bound <= 0.85 + 1e-9
    plan = planner.solve(sc := _two_clocks([15.0, 15.0], provision_s=600), backend=backend, mip_gap=0.0)
    assert [[(d.freq_mhz, d.replicas) for d in s.deployments] for s in plan.slots] == [[(1500, 1)], [(1500, 1)]]
    assert planner.check(plan, sc).ok


def test_slot_chains_and_segments_do_not_depend_on_threads():
    """30 hourly slots (three chains of 12 slots for the per-slot step, two segments of 24 for the
    windows): the plan is the same bytes (timings aside) on one thread and on two, and the same again."""
    demand = [8.0 + 7.0 * ((t * 7) % 5) for t in range(30)]
    sc = _two_clocks(demand, provision_s=1800)
    plans = [planner.solve(sc, threads=th).without_timings() for th in (1, 2, 2)]
    for p in plans:
        p["solver"].pop("threads")
    assert plans[0] == plans[1] == plans[2]
    assert "rolling horizon" in plans[0]["solver"]["status"]
    plan = planner.solve(sc, threads=2)
    assert planner.check(plan, sc).ok
    assert plan.solver.bound <= plan.objective.value + 1e-9


def test_root_rounds_and_node_limits_are_bounds_and_plans():
    """``SolveOptions.root_rounds`` stops at a proven bound (no more than the optimum; the same twice);
    ``max_nodes`` keeps the best plan found by then (no better than the optimum)."""
    from formulations import objective_vector
    from planner.optimize.backends import SolveOptions, get_backend
    from planner.optimize.prepare import prepare

    sc = _two_clocks([15.0, 37.0, 52.0, 9.0])
    sc, md, lm, v, _ = prepare(sc.without_scaling(), None, {})
    obj = objective_vector(lm, md, "energy")
    best = get_backend("highs")(lm, obj).solve(SolveOptions(mip_gap=0.0, threads=1)).objective
    b = [get_backend("highs")(lm, obj).solve(SolveOptions(mip_gap=0.0, threads=1, root_rounds=2)).bound
         for _ in range(2)]
    assert b[0] == b[1] and b[0] <= best + 1e-9
    r = get_backend("highs")(lm, obj).solve(SolveOptions(mip_gap=0.0, threads=1, max_nodes=1))
    assert r.has_solution and r.objective >= best - 1e-9


def test_an_impossible_slot_is_explained_and_a_time_limit_still_gives_a_plan():
    """10 GPUs of 10 req/s serve at most 100 req/s: 150 req/s in slot 2 of 4 cannot be served, and the
    rolling horizon says so (InfeasibleError with the explanation), not a solver failure. With a
    feasible demand and a short time limit the rolling horizon still returns a checked plan."""
    sc = _sc([8.0, 20.0, 150.0, 8.0], provision_s=600)
    with pytest.raises(planner.InfeasibleError):
        planner.solve(sc)
    sc = _sc([8.0, 20.0, 15.0, 8.0] * 8, provision_s=600)
    plan = planner.solve(sc, time_limit=5.0, threads=2)
    assert planner.check(plan, sc).ok
    assert plan.solver.bound <= plan.objective.value + 1e-9


def test_refine_bounds_raises_a_weak_slot_bound_to_the_slot_optimum():
    """The hand instance above (one slot, 15 req/s, optimum 0.85 kWh) with its bound forced down to 0:
    refine_bounds solves the slot MILP in full from the plan and raises the bound to within its 0.1 %
    gap of 0.85, never above it."""
    import time

    from formulations import objective_vector
    from planner.optimize.backends import SolveOptions
    from planner.optimize.prepare import prepare
    from planner.optimize.slot_bounds import SlotModels, refine_bounds, solve_slots

    sc, md, lm, v, _ = prepare(_two_clocks([15.0], provision_s=600), None, {})
    sm = SlotModels(lm, md, objective_vector(lm, md, "energy"))
    opts = SolveOptions(mip_gap=0.0, threads=1)
    outs = solve_slots(sm, "highs", opts)
    x = np.zeros(lm.ncols)
    x[sm.columns(0)] = outs[0].x
    outs[0].bound = 0.0
    assert refine_bounds(sm, outs, x, "highs", opts, time.perf_counter() + 30.0) == 1
    assert 0.85 * (1 - 1e-3) - 1e-9 <= outs[0].bound <= 0.85 + 1e-9

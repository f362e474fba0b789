"""VMs, markets and replica rules: hand-derived instances on every backend, each plan checked.

One region A, one origin, one class k (10 req/s per replica of one GPU), cost objective, 1-hour slots,
electricity unpriced, max utilisation 1. Costs are VM-hours x price."""

from __future__ import annotations

import json

import pytest
from builders import profile, scenario

import planner

BACKENDS = ["highs", "pyomo", "pulp"]


def _vm(name, gpus, price, count, **kw):
    return {"name": name, "gpu": "G", "gpus": gpus, "price_usd_per_hour": price, "count": count, **kw}


def _sc(vms, demand, classes=None, profiles=None, models=None, **options):
    doc = scenario(regions={"A": {"pue": 1.0, "vms": vms}}, slots=len(demand), demand={("k", "o"): demand},
                   profiles=profiles or [profile(max_rps=10.0)], classes=classes,
                   options={"objective": "cost", **options})
    if models:
        doc["models"] = models
    return planner.scenario_from_dict(doc)


def _solve(sc, backend):
    plan = planner.solve(sc, backend=backend, mip_gap=0.0)
    rep = planner.check(plan, sc)
    assert rep.ok, rep.render()
    return plan


def _vms(plan, t=0):
    return sorted((q.vm, q.market, q.count) for q in plan.slots[t].vms)


@pytest.mark.parametrize("backend", BACKENDS)
def test_vm_packing_rents_whole_vms(backend):
    """25 req/s needs 3 one-GPU replicas. VMs: vm8 (8 GPUs, 8 USD/h, 3 available) and vm1 (1 GPU, 1.5 USD/h).
    By hand: 3 x vm1 = 4.5 < 1 x vm8 = 8. With only 2 vm1: 2 x vm1 + 1 vm8 = 11 > 1 vm8 = 8, so one vm8 holds
    all three (5 of its GPUs idle: 100 W each, counted in energy)."""
    plan = _solve(_sc([_vm("vm8", 8, 8.0, 3), _vm("vm1", 1, 1.5, 5)], [25.0]), backend)
    assert _vms(plan) == [("vm1", "on-demand", 3)] and plan.totals.cost_usd == pytest.approx(4.5)
    plan = _solve(_sc([_vm("vm8", 8, 8.0, 3), _vm("vm1", 1, 1.5, 2)], [25.0]), backend)
    assert _vms(plan) == [("vm8", "on-demand", 1)] and plan.totals.cost_usd == pytest.approx(8.0)
    assert plan.totals.gpu_hours == pytest.approx(8.0) and plan.totals.vm_hours == pytest.approx(1.0)
    # power: 3 replicas at 100 W idle + 200 W x 2.5 load share = 800 W, plus 5 idle GPUs x 100 W
    assert plan.totals.energy_kwh == pytest.approx(1.3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_replica_fits_in_one_vm(backend):
    """Only a tp2 config (2 GPUs, 20 req/s) for 20 req/s. Four 1-GPU VMs hold 4 GPUs but no replica (its
    GPUs must share a VM): no plan. With 2-GPU VMs (1.9 USD/h) one holds the replica (1.9). With
    ``pipeline_across_vms`` a pp2 replica (two stages of one GPU) spreads over two 1-GPU VMs (2.0)."""
    prof = [profile(tp=2, max_rps=20.0, idle=150.0, busy=500.0)]
    with pytest.raises(planner.InfeasibleError):
        planner.solve(_sc([_vm("vm1", 1, 1.0, 4)], [20.0], profiles=prof), backend=backend)
    plan = _solve(_sc([_vm("vm1", 1, 1.0, 4), _vm("vm2", 2, 1.9, 4)], [20.0], profiles=prof), backend)
    assert [(d.tp, d.replicas) for d in plan.slots[0].deployments] == [(2, 1)]
    assert _vms(plan) == [("vm2", "on-demand", 1)] and plan.totals.cost_usd == pytest.approx(1.9)
    pp = [profile(pp=2, max_rps=20.0, idle=150.0, busy=500.0)]
    plan = _solve(_sc([_vm("vm1", 1, 1.0, 4)], [20.0], profiles=pp,
                      models=[{"name": "m", "pipeline_across_vms": True}]), backend)
    assert _vms(plan) == [("vm1", "on-demand", 2)] and plan.totals.cost_usd == pytest.approx(2.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_redeploying_onto_a_running_vm_pays_only_loading(backend):
    """Model m1 serves in slot 0, model m2 (class k2) in slot 1, one 1-GPU VM type at 1 USD/h. Provisioning
    1800 s (0.5 h), loading 900 s (each model 1 B parameters = 2 GB at 2/900 GB/s). With VMs the VM started
    for slot 0 keeps running and m2 is loaded onto it: 2 VM-hours + 0.5 (one VM provisioned) + 2 x 0.25
    (two loads) = 3.0, one VM started. Offered per GPU instead, each replica pays provisioning and loading:
    2 + 2 x 0.75 = 3.5."""
    prof = [profile(model="m1", max_rps=10.0), profile(model="m2", max_rps=10.0)]
    classes = [{"name": "k", "model": "m1", "shape": "s", "slo": {"ttft_ms": 500, "tbt_ms": 50}},
               {"name": "k2", "model": "m2", "shape": "s", "slo": {"ttft_ms": 500, "tbt_ms": 50}}]
    models = [{"name": "m1", "params_billion": 1.0}, {"name": "m2", "params_billion": 1.0}]
    scaling = {"provision_s": 1800, "load_gb_per_s": 2.0 / 900}
    doc = scenario(regions={"A": {"pue": 1.0, "vms": [_vm("vm1", 1, 1.0, 1)]}}, slots=2,
                   demand={("k", "o"): [8.0, 0.0], ("k2", "o"): [0.0, 8.0]}, profiles=prof, classes=classes,
                   gpus=["G"], models=["m1", "m2"], options={"objective": "cost", "scaling": scaling})
    doc["models"] = models
    plan = _solve(planner.scenario_from_dict(doc), backend)
    assert plan.totals.cost_usd == pytest.approx(3.0)
    assert plan.totals.vms_started == 1 and plan.totals.replicas_started == 2
    assert [[(q.count, q.started, q.stopped) for q in s.vms] for s in plan.slots] == [[(1, 1, 0)], [(1, 0, 0)]]
    doc["regions"] = [{"name": "A", "pue": 1.0, "gpus": [{"type": "G", "count": 1, "price_usd_per_gpu_hour": 1.0}]}]
    plan = _solve(planner.scenario_from_dict(doc), backend)
    assert plan.totals.cost_usd == pytest.approx(3.5)


SPOT = dict(spot_price_usd_per_hour=0.3, spot_count=10)


@pytest.mark.parametrize("backend", BACKENDS)
def test_spot_eligibility_and_on_demand_floor(backend):
    """25 req/s needs 3 replicas; on demand 1 USD/h, spot 0.3 USD/h per 1-GPU VM.
    A class that may not run on spot: 3 on demand (3.0). On spot without a floor: 3 spot (0.9). With
    on_demand_floor 0.5, on-demand replicas must carry 12.5 req/s alone: 2 on demand + 1 spot (2.3)."""
    cls = {"name": "k", "model": "m", "shape": "s", "slo": {"ttft_ms": 500, "tbt_ms": 50}}
    vms = [_vm("vm1", 1, 1.0, 10, **SPOT)]
    plan = _solve(_sc(vms, [25.0], classes=[cls]), backend)
    assert _vms(plan) == [("vm1", "on-demand", 3)] and plan.totals.cost_usd == pytest.approx(3.0)
    plan = _solve(_sc(vms, [25.0], classes=[cls | {"spot": True}]), backend)
    assert _vms(plan) == [("vm1", "spot", 3)] and plan.totals.cost_usd == pytest.approx(0.9)
    assert [d.id for d in plan.slots[0].deployments] == ["A/m|G|tp1|pp1|1000MHz|spot"]
    assert plan.totals.spot_gpu_hours == pytest.approx(3.0)
    plan = _solve(_sc(vms, [25.0], classes=[cls | {"spot": True, "on_demand_floor": 0.5}]), backend)
    assert _vms(plan) == [("vm1", "on-demand", 2), ("vm1", "spot", 1)]
    assert plan.totals.cost_usd == pytest.approx(2.3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_spot_interruptions_cost_capacity_and_money(backend):
    """Spot VMs reclaimed 0.5 times per hour, 720 s (0.2 h) to restart: a spot replica is down 10 % of the
    time (9 req/s usable) and each VM-hour costs 0.3 x (1 + 0.5 x 0.2) = 0.33. 28 req/s: 3 replicas
    (27 req/s) no longer suffice, 4 spot replicas (1.32) beat 3 spot + 1 on demand (1.99)."""
    cls = {"name": "k", "model": "m", "shape": "s", "slo": {"ttft_ms": 500, "tbt_ms": 50}, "spot": True}
    vms = [_vm("vm1", 1, 1.0, 10, spot_interruptions_per_hour=0.5, spot_restart_s=720, **SPOT)]
    plan = _solve(_sc(vms, [28.0], classes=[cls]), backend)
    assert _vms(plan) == [("vm1", "spot", 4)]
    assert plan.totals.cost_usd == pytest.approx(1.32)
    assert plan.totals.spot_restart_gpu_hours == pytest.approx(0.4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_replica_limits_and_scale_down_delay(backend):
    """Per-GPU offer (1 USD/GPU-h). min 2 replicas of m with demand 8 (1 needed): 2 replicas, 2 USD.
    Demand 25, 0, 0, 8 needs 3, 0, 0, 1 replicas (4 USD); with scale_down_delay_slots 1, slot 1 keeps the
    capacity slot 0 needed (3 replicas): 3, 3, 0, 1 = 7 USD."""
    base = scenario(options={"objective": "cost", "replica_limits": [{"model": "m", "min": 2}]})
    sc = planner.scenario_from_dict(base)
    plan = _solve(sc, backend)
    assert plan.slots[0].deployments[0].replicas == 2 and plan.totals.cost_usd == pytest.approx(2.0)
    doc = scenario(slots=4, demand={("k", "o"): [25.0, 0.0, 0.0, 8.0]},
                   options={"objective": "cost", "scaling": {"scale_down_delay_slots": 1}})
    plan = _solve(planner.scenario_from_dict(doc), backend)
    assert [sum(d.replicas for d in s.deployments) for s in plan.slots] == [3, 3, 0, 1]
    assert plan.totals.cost_usd == pytest.approx(7.0)


def test_the_checker_catches_vm_and_spot_violations():
    cls = {"name": "k", "model": "m", "shape": "s", "slo": {"ttft_ms": 500, "tbt_ms": 50}}
    sc = _sc([_vm("vm8", 8, 8.0, 3), _vm("vm1", 1, 1.5, 2)], [25.0])
    plan = planner.solve(sc, mip_gap=0.0)
    doc = json.loads(plan.to_json())
    doc["slots"][0]["vms"][0]["count"] = 0
    assert "vm_packing" in planner.check(doc, sc).families
    sc2 = _sc([_vm("vm1", 1, 1.0, 10, **SPOT)], [25.0], classes=[cls | {"spot": True}])
    plan2 = planner.solve(sc2, mip_gap=0.0)
    sc3 = _sc([_vm("vm1", 1, 1.0, 10, **SPOT)], [25.0], classes=[cls | {"spot": True, "on_demand_floor": 0.5}])
    rep = planner.check(plan2, sc3)
    assert "spot" in rep.families  # no on-demand replica could carry half the traffic


def test_bad_vm_input_is_named():
    doc = scenario(regions={"A": {"pue": 1.0, "vms": [_vm("vm3", 3, 1.0, 1)]}},
                   profiles=[profile(), profile(tp=2, max_rps=20.0)])
    with pytest.raises(planner.ScenarioError) as e:
        planner.scenario_from_dict(doc)
    assert "regions[0].vms" in str(e.value) and "divide" in str(e.value)
    doc = scenario(regions={"A": {"pue": 1.0, "vms": [_vm("G", 1, 1.0, 1)]}})
    with pytest.raises(planner.ScenarioError) as e:
        planner.scenario_from_dict(doc)
    assert "GPU type's name" in str(e.value)


def test_spot_twins_of_pooled_configs_keep_the_pool_suffix_last():
    """A config split into pools (ids ending in #light / #saturated) gets spot twins whose market comes
    before the pool: ``...|1000MHz|spot#saturated`` (found when a twin read ``...#saturated|spot``)."""
    import pandas as pd

    from formulations.sets import markets

    cls = {"name": "k", "model": "m", "shape": "s", "slo": {"ttft_ms": 500, "tbt_ms": 50}, "spot": True}
    sc = _sc([_vm("vm1", 1, 1.0, 10, **SPOT)], [25.0], classes=[cls])
    base = "m|G|tp1|pp1|1000MHz"
    cfg = pd.DataFrame({"c": [0, 1], "model": "m", "gpu": "G", "g": 0, "tp": 1, "pp": 1, "gpus": 1,
                        "freq_mhz": 1000.0, "pool": ["light", "saturated"],
                        "key": [f"{base}#light", f"{base}#saturated"]})
    pairs = pd.DataFrame({"c": [0, 1], "k": [0, 0]})
    out, _ = markets(sc, cfg, pairs)
    assert sorted(out["key"]) == sorted([f"{base}#light", f"{base}#saturated", f"{base}|spot#light",
                                         f"{base}|spot#saturated"])


def test_a_model_without_replicas_still_builds():
    """Nothing can serve (the only row misses the TBT target, no GPU available) and unserved demand is
    allowed: the model has no replica columns at all and the plan leaves the 8 req/s unserved (28,800
    requests in the hour); found by the property tests (an empty replica index)."""
    doc = scenario(regions={"r0": {"pue": 1.0, "gpus": [{"type": "G", "count": 0, "price_usd_per_gpu_hour": 1.0}]}},
                   origins={"o": {"rtt_ms": {"r0": 1.0}}}, profiles=[profile(tbt=31.0)],
                   options={"unserved": {"allowed": True}})
    doc["classes"][0]["slo"]["tbt_ms"] = 30
    sc = planner.scenario_from_dict(doc)
    plan = planner.solve(sc)
    assert plan.totals.unserved_requests == pytest.approx(28_800.0) and planner.check(plan, sc).ok

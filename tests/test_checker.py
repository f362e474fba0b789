"""The independent plan checker: solved plans hold; each mutation is caught by the expected family."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from builders import profile, scenario, ts  # noqa: E402

import planner  # noqa: E402
from planner.errors import PlanFileError  # noqa: E402
from planner.plan.checker import FAMILIES, CheckReport, Violation, check, read_plan  # noqa: E402

# ---------------------------------------------------------------------------------------- helpers


_SOLVED: dict = {}


def solve(doc, objective="carbon", **kw):
    """Solve (memoised on the document: several tests mutate the same plan)."""
    key = json.dumps([doc, objective, kw], sort_keys=True)
    if key not in _SOLVED:
        sc = planner.scenario_from_dict(doc)
        _SOLVED[key] = sc, planner.solve(sc, objective=objective, **kw)
    return _SOLVED[key]


def dump(plan) -> dict:
    return plan.model_dump(mode="json", by_alias=True)


def fams(plan, sc, **kw) -> set[str]:
    return set(check(plan, sc, **kw).families)


def dep(d, slot=0, region=None, i=0):
    deps = d["slots"][slot]["deployments"]
    if region is not None:
        deps = [x for x in deps if x["region"] == region]
    return deps[i]


def route(d, slot=0, **match):
    for r in d["slots"][slot]["routing"]:
        if all(r[k] == v for k, v in match.items()):
            return r
    raise KeyError(match)


# ---------------------------------------------------------------------------------------- scenarios


def base_doc(**kw):
    """Two regions, two slots, 18 req/s -> two replicas of the one config per slot; electricity priced."""
    return scenario(
        regions={
            "A": {"pue": 1.2, "gpus": [{"type": "G", "count": 10, "price_usd_per_gpu_hour": 2.0}]},
            "B": {"pue": 1.1, "gpus": [{"type": "G", "count": 10, "price_usd_per_gpu_hour": 3.0}]},
        },
        carbon={"A": [400.0, 300.0], "B": [100.0, 500.0]},
        prices={"A": [80.0, 90.0], "B": [60.0, 70.0]},
        demand={("k", "o"): [18.0, 18.0]},
        origins={"o": {"rtt_ms": {"A": 10.0, "B": 30.0}}},
        slots=2,
        **kw,
    )


@pytest.fixture(scope="module")
def base():
    return solve(base_doc())


def latency_doc(e2e=False):
    """One region; a near and a far origin; a fast (TTFT 100) and a slow, frugal (TTFT 300) config.

    The far origin (RTT 300) can only use the fast config; the near one uses the slow one.
    With ``e2e``: the TTFT SLO is loose and an e2e SLO of 700 ms binds instead.
    """
    slo = {"ttft_ms": 1000, "tbt_ms": 50, "e2e_ms": 700} if e2e else {"ttft_ms": 500, "tbt_ms": 50}
    return scenario(
        origins={"near": {"rtt_ms": {"A": 10.0}}, "far": {"rtt_ms": {"A": 300.0}}},
        demand={("k", "near"): [5.0], ("k", "far"): [5.0]},
        classes=[{"name": "k", "model": "m", "shape": "s", "slo": slo}],
        profiles=[profile(freq=1000, max_rps=5.0, ttft=100.0, busy=400.0),
                  profile(freq=800, max_rps=5.0, ttft=300.0, busy=250.0)],
    )


def residency_doc():
    """o1 may use A or B, o2 only A; B is clean but has one GPU, so o1 goes to B and o2 to A."""
    return scenario(
        regions={
            "A": {"pue": 1.0, "gpus": [{"type": "G", "count": 10, "price_usd_per_gpu_hour": 1.0}]},
            "B": {"pue": 1.0, "gpus": [{"type": "G", "count": 1, "price_usd_per_gpu_hour": 1.0}]},
        },
        carbon={"A": [500.0], "B": [50.0]},
        origins={"o1": {"rtt_ms": {"A": 10.0, "B": 10.0}},
                 "o2": {"rtt_ms": {"A": 10.0, "B": 10.0}, "allowed_regions": ["A"]}},
        demand={("k", "o1"): [5.0], ("k", "o2"): [5.0]},
    )


# ---------------------------------------------------------------------------------------- plans hold


@pytest.mark.parametrize("objective", ["carbon", "energy", "cost", "gpu-hours"])
def test_solved_plans_hold(objective):
    sc, plan = solve(base_doc(), objective=objective)
    rep = check(plan, sc)
    assert rep.ok, rep.render()
    assert rep.violations == [] and rep.families == []
    assert rep.render().startswith("plan holds: ")
    for fam in ("fingerprint", "reference", "integrality", "demand_served", "data_residency", "route_balance",
                "latency_ttft", "latency_tbt", "replica_capacity", "gpu_availability", "power", "totals", "objective"):
        assert rep.checked[fam] > 0, fam
    assert rep.recomputed["totals"]["cost_usd"] == pytest.approx(plan.totals.cost_usd, rel=1e-6)
    assert rep.recomputed["objective"]["value"] == pytest.approx(plan.objective.value, rel=1e-6)


@pytest.mark.parametrize("doc", [latency_doc(), latency_doc(e2e=True), residency_doc()],
                         ids=["latency", "e2e", "residency"])
def test_other_solved_plans_hold(doc):
    sc, plan = solve(doc)
    rep = check(plan, sc)
    assert rep.ok, rep.render()


def test_unserved_plan_with_penalty_holds():
    doc = scenario(
        regions={"A": {"pue": 1.0, "gpus": [{"type": "G", "count": 1, "price_usd_per_gpu_hour": 1.0}]}},
        demand={("k", "o"): [15.0]},
        options={"unserved": {"allowed": True, "penalty_per_request": 1.0}},
    )
    sc, plan = solve(doc)
    assert plan.totals.unserved_requests > 0
    rep = check(plan, sc)
    assert rep.ok, rep.render()
    # unserved demand in a plan whose options do not allow it
    d = dump(plan)
    d["options"]["unserved_allowed"] = False
    d["objective"]["value"] = d["totals"]["carbon_kg"]
    assert fams(d, sc) == {"demand_served"}


def test_plan_options_override_scenario_options(base):
    sc, _ = base
    plan = planner.solve(sc, objective="cost", budget_usd=1e6, carbon_cap_kg=1e6, max_utilization=0.95)
    rep = check(plan, sc)
    assert rep.ok, rep.render()
    assert rep.checked["budget"] == 1 and rep.checked["carbon_cap"] == 1


def test_accepts_plan_dict_json_and_path(base, tmp_path):
    sc, plan = base
    f = tmp_path / "plan.json"
    f.write_text(plan.to_json())
    for src in (plan, dump(plan), plan.to_json(), f, str(f)):
        assert check(src, sc).ok


def test_noise_within_tolerance_passes(base):
    sc, plan = base
    d = dump(plan)
    d["totals"]["carbon_kg"] *= 1 + 1e-8
    route(d)["rate_rps"] *= 1 + 1e-9
    assert check(d, sc).ok
    d["totals"]["carbon_kg"] *= 1 + 1e-4
    assert fams(d, sc) == {"totals", "objective"}  # objective no longer matches the (wrong) totals


# ---------------------------------------------------------------------------------------- mutations


def test_inflated_route_rate(base):
    sc, plan = base
    d = dump(plan)
    r = route(d)
    r["rate_rps"] += 1.0
    r["share"] = r["rate_rps"] / 18.0
    rep = check(d, sc)
    assert set(rep.families) == {"demand_served", "route_balance"}
    (v,) = [v for v in rep.violations if v.family == "demand_served"]
    assert v.where == {"slot": 0, "class": "k", "origin": "o"}
    assert v.excess == pytest.approx(1.0)
    # without updating the share, the share is wrong too
    r["share"] = 1.0
    assert fams(d, sc) == {"demand_served", "route_balance", "objective"}


def test_removed_replica(base):
    sc, plan = base
    d = dump(plan)
    x = dep(d)
    assert x["replicas"] == 2
    x["replicas"], x["gpus"] = 1, 1
    x["power_w"] -= 100.0  # one idle replica less: the power is consistent, the load is not
    rep = check(d, sc)
    assert set(rep.families) == {"replica_capacity", "totals"}
    cap = [v for v in rep.violations if v.family == "replica_capacity" and "field" not in v.where]
    assert len(cap) == 1 and cap[0].where["slot"] == 0 and cap[0].excess == pytest.approx(0.8)


def test_rtt_breaking_ttft():
    sc, plan = solve(latency_doc())
    d = dump(plan)
    far, near = route(d, origin="far"), route(d, origin="near")
    assert far["targets"][0]["deployment"].endswith("1000MHz")
    assert near["targets"][0]["deployment"].endswith("800MHz")
    far["targets"][0]["deployment"], near["targets"][0]["deployment"] = (
        near["targets"][0]["deployment"], far["targets"][0]["deployment"])
    rep = check(d, sc)
    assert rep.families == ["latency_ttft"]
    (v,) = rep.violations
    assert v.where["origin"] == "far" and v.excess == pytest.approx(100.0)
    assert "600" in v.message and "500" in v.message


def test_rtt_breaking_e2e():
    sc, plan = solve(latency_doc(e2e=True))
    d = dump(plan)
    far, near = route(d, origin="far"), route(d, origin="near")
    far["targets"][0]["deployment"], near["targets"][0]["deployment"] = (
        near["targets"][0]["deployment"], far["targets"][0]["deployment"])
    rep = check(d, sc)
    assert rep.families == ["latency_e2e"]
    assert rep.violations[0].excess == pytest.approx(300 + 300 + 9 * 20 - 700)


def test_reported_latencies_and_rtt_must_match_the_scenario():
    sc, plan = solve(latency_doc())
    d = dump(plan)
    route(d, origin="far")["rtt_ms"] = 50.0
    assert fams(d, sc) == {"latency_ttft"}
    d = dump(plan)
    dep(d)["classes"][0]["tbt_ms"] = 1.0
    assert fams(d, sc) == {"latency_tbt"}


def test_tbt_slo():
    sc, plan = solve(latency_doc())
    # same plan, checked against a scenario whose TBT SLO is tighter than the profiles (fingerprint fixed up)
    doc = latency_doc()
    doc["classes"][0]["slo"]["tbt_ms"] = 10
    sc2 = planner.scenario_from_dict(doc)
    d = dump(plan)
    d["scenario"]["fingerprint"] = sc2.fingerprint
    rep = check(d, sc2)
    assert rep.families == ["latency_tbt"]
    assert len(rep.violations) == 2


def test_disallowed_region():
    sc, plan = solve(residency_doc())
    d = dump(plan)
    routing = d["slots"][0]["routing"]
    main = {r["origin"]: r["region"] for r in routing if r["rate_rps"] > 1}
    assert main == {"o1": "B", "o2": "A"}
    # swap: o1 -> A, o2 -> B (the deployments' loads stay the same; solver noise routes are folded in)
    total = {o: sum(r["rate_rps"] for r in routing if r["origin"] == o) for o in ("o1", "o2")}
    ids = {x["region"]: x["id"] for x in d["slots"][0]["deployments"]}
    d["slots"][0]["routing"] = [
        {"class": "k", "origin": o, "region": reg, "rate_rps": total[o], "share": total[o] / 5.0, "rtt_ms": 10.0,
         "targets": [{"deployment": ids[reg], "rate_rps": total[o]}]} for o, reg in (("o1", "A"), ("o2", "B"))]
    rep = check(d, sc)
    assert rep.families == ["data_residency"]
    assert rep.violations[0].where == {"slot": 0, "class": "k", "origin": "o2", "region": "B"}


def test_exceeded_availability(base):
    sc, plan = base
    doc = base_doc()
    doc["regions"][0]["gpus"][0]["count"] = 1
    doc["regions"][1]["gpus"][0]["count"] = 1
    sc2 = planner.scenario_from_dict(doc)
    d = dump(plan)
    d["scenario"]["fingerprint"] = sc2.fingerprint
    rep = check(d, sc2)
    assert rep.families == ["gpu_availability"]
    assert len(rep.violations) == 2  # both slots
    assert rep.violations[0].excess == pytest.approx(1.0)
    assert set(rep.violations[0].where) == {"slot", "region", "gpu"}


def test_per_slot_availability_table(base):
    sc, plan = base
    doc = base_doc()
    region = dep(dump(plan), slot=1)["region"]
    doc["availability"] = [{"timestamp": ts(t), "region": region, "gpu": "G", "count": c} for t, c in
                           enumerate([10, 1])]
    sc2 = planner.scenario_from_dict(doc)
    d = dump(plan)
    d["scenario"]["fingerprint"] = sc2.fingerprint
    rep = check(d, sc2)
    assert rep.families == ["gpu_availability"]
    assert [v.where["slot"] for v in rep.violations] == [1]


def test_wrong_totals(base):
    sc, plan = base
    d = dump(plan)
    d["totals"]["energy_kwh"] *= 1.01
    rep = check(d, sc)
    assert rep.families == ["totals"]
    assert rep.violations[0].where == {"scope": "horizon", "quantity": "energy_kwh"}
    d = dump(plan)
    d["slots"][1]["totals"]["gpu_hours"] += 1
    rep = check(d, sc)
    assert rep.families == ["totals"] and rep.violations[0].where == {"slot": 1, "quantity": "gpu_hours"}
    d = dump(plan)
    d["totals"]["served_requests"] -= 10
    assert fams(d, sc) == {"totals"}


def test_wrong_power(base):
    sc, plan = base
    d = dump(plan)
    dep(d)["power_w"] += 50
    assert fams(d, sc) == {"power"}


def test_power_uses_the_active_power_floor():
    """Config G: 10 req/s, busy 300 W, idle 100 W, active 250 W; 18 req/s per slot. A deployment of n
    replicas carrying L req/s draws 250 n + (300 - 250)/10 L (two replicas at 18 req/s: 590 W), not the
    idle line 100 n + 20 L (560 W). The checker accepts the planned power and reports the idle-line
    value under `power` only (totals are recomputed from the decisions, not from power_w)."""
    sc, plan = solve(base_doc(profiles=[profile(busy=300, idle=100, active=250)]))
    assert check(plan, sc).ok
    assert sum(x.replicas for x in plan.slots[0].deployments) == 2
    for s in plan.slots:
        for x in s.deployments:
            load = sum(c.rate_rps for c in x.classes)
            assert x.power_w == pytest.approx(250 * x.replicas + 5 * load)
    d = dump(plan)
    x = dep(d)
    load = sum(c["rate_rps"] for c in x["classes"])
    x["power_w"] = 100 * x["replicas"] + 20 * load
    rep = check(d, sc)
    assert rep.families == ["power"]
    assert f"base 250 W x {x['replicas']} replicas" in rep.violations[0].message


def test_wrong_objective(base):
    sc, plan = base
    d = dump(plan)
    d["objective"]["value"] *= 1.01
    assert fams(d, sc) == {"objective"}
    d = dump(plan)
    d["objective"]["secondary_value"] += 1
    assert fams(d, sc) == {"objective"}
    d = dump(plan)
    d["options"]["objective"] = "cost"
    assert fams(d, sc) == {"options"}


def test_wrong_fingerprint(base):
    sc, plan = base
    doc = base_doc()
    doc["shapes"][0]["input_tokens"] = 101  # one changed number the checker does not otherwise use
    sc2 = planner.scenario_from_dict(doc)
    rep = check(plan, sc2)
    assert rep.families == ["fingerprint"]
    assert "different scenario" in rep.violations[0].message


def test_budget_and_cap_below_plan(base):
    sc, plan = base
    d = dump(plan)
    d["options"]["budget_usd"] = plan.totals.cost_usd / 2
    rep = check(d, sc)
    assert rep.families == ["budget"]
    assert rep.violations[0].excess == pytest.approx(plan.totals.cost_usd / 2, rel=1e-6)
    d = dump(plan)
    d["options"]["carbon_cap_kg"] = plan.totals.carbon_kg * 0.9
    assert fams(d, sc) == {"carbon_cap"}


def test_unknown_config(base):
    sc, plan = base
    d = dump(plan)
    x = dep(d)
    old = x["id"]
    x["freq_mhz"] = 1234.0
    x["id"] = old.replace("1000MHz", "1234MHz")
    for r in d["slots"][0]["routing"]:
        for q in r["targets"]:
            if q["deployment"] == old:
                q["deployment"] = x["id"]
    rep = check(d, sc)
    assert rep.families == ["reference"]
    assert any("no profile for the config" in v.message for v in rep.violations)


def test_bad_references(base):
    sc, plan = base
    d = dump(plan)
    dep(d)["id"] = "A/something-else"
    assert fams(d, sc) == {"reference"}  # the id is wrong and targets no longer find their deployment
    d = dump(plan)
    dep(d)["classes"][0]["class"] = "nope"
    assert "reference" in fams(d, sc)
    d = dump(plan)
    d["slots"][1]["index"] = 0
    rep = check(d, sc)
    assert "reference" in rep.families
    assert any("missing" in v.message for v in rep.violations)
    d = dump(plan)
    d["horizon"]["slot_minutes"] = 30
    assert fams(d, sc) == {"reference"}
    d = dump(plan)
    d["slots"][0]["start"] = "2024-01-01T05:00:00Z"
    assert fams(d, sc) == {"reference"}


def test_region_not_offering_gpu():
    doc = base_doc()
    doc["gpu_types"].append({"name": "H"})
    doc["regions"][1]["gpus"] = [{"type": "H", "count": 10, "price_usd_per_gpu_hour": 3.0}]
    sc, plan = solve(doc)
    d = dump(plan)
    x = dep(d)
    assert x["region"] == "A"
    x["region"] = "B"
    x["id"] = "B/" + x["id"].split("/", 1)[1]
    for r in d["slots"][0]["routing"]:
        r["region"] = "B"
        r["rtt_ms"] = 30.0
        for q in r["targets"]:
            q["deployment"] = x["id"]
    assert "reference" in fams(d, sc)


def test_non_integer_replicas(base):
    sc, plan = base
    d = dump(plan)
    dep(d)["replicas"] = 2.0000001  # an LP relaxation leak: too small to move any derived number
    rep = check(d, sc)
    assert rep.families == ["integrality"]
    assert {v.where["deployment"] for v in rep.violations} == {dep(d)["id"]}
    d = dump(plan)
    dep(d)["replicas"] = 2.5  # a visibly fractional count: utilisation, power and totals disagree too
    assert fams(d, sc) == {"integrality", "replica_capacity", "power", "totals"}
    d = dump(plan)
    dep(d)["gpus"] = 3
    assert fams(d, sc) == {"integrality"}
    d = dump(plan)
    dep(d)["replicas"] = -2
    assert "integrality" in fams(d, sc)
    # a strict reader refuses fractional counts
    with pytest.raises(PlanFileError):
        read_plan(d | {"slots": [dict(d["slots"][0], deployments=[dict(dep(d), replicas=1.5)])]})


def test_all_unserved_plan_and_missing_slot():
    doc = scenario(regions={"A": {"pue": 1.0, "gpus": [{"type": "G", "count": 0, "price_usd_per_gpu_hour": 1.0}]}},
                   options={"unserved": {"allowed": True, "penalty_per_request": 2.0}}, slots=2)
    sc, plan = solve(doc)
    assert plan.slots[0].deployments == [] and plan.totals.unserved_requests > 0
    assert planner.check(plan, sc).ok
    d = dump(plan)
    del d["slots"][1]
    rep = check(d, sc)
    assert set(rep.families) == {"reference", "demand_served", "totals"}
    assert [v.where for v in rep.violations if v.family == "reference"] == [{"slot": 1}]


def test_unknown_route_names(base):
    sc, plan = base
    d = dump(plan)
    route(d)["origin"] = "mars"
    rep = check(d, sc)
    assert "reference" in rep.families
    assert any("unknown origin 'mars'" in v.message for v in rep.violations)


def test_non_finite_numbers_fail(base):
    sc, plan = base
    for path in (("objective", "value"), ("totals", "gpu_hours"), ("options", "max_utilization")):
        d = dump(plan)
        d[path[0]][path[1]] = float("inf")
        rep = check(d, sc)
        assert not rep.ok, path
        json.dumps(rep.to_dict(), allow_nan=False)
    d = dump(plan)
    dep(d)["power_w"] = float("nan")
    assert fams(d, sc) == {"power"}


def test_negative_rate(base):
    sc, plan = base
    d = dump(plan)
    route(d)["targets"][0]["rate_rps"] = -1.0
    assert {"demand_served", "route_balance"} <= fams(d, sc)


# ---------------------------------------------------------------------------------------- plan files


def test_malformed_plan_files(base, tmp_path):
    sc, plan = base
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    with pytest.raises(PlanFileError) as e:
        check(bad, sc)
    assert str(bad) in str(e.value) and "malformed JSON" in str(e.value)

    missing = tmp_path / "missing-fields.json"
    d = dump(plan)
    del d["totals"]
    del d["slots"][0]["deployments"][0]["replicas"]
    missing.write_text(json.dumps(d))
    with pytest.raises(PlanFileError) as e:
        check(missing, sc)
    msg = str(e.value)
    assert str(missing) in msg and "totals" in msg and "slots[0].deployments[0].replicas" in msg
    assert "Traceback" not in msg

    for text, what in (("", "empty"), ("[1, 2]", "JSON object")):
        f = tmp_path / "x.json"
        f.write_text(text)
        with pytest.raises(PlanFileError, match=what):
            check(f, sc)
    with pytest.raises(PlanFileError, match="file not found"):
        check(tmp_path / "nope.json", sc)
    with pytest.raises(PlanFileError, match="file not found"):
        read_plan(tmp_path / "nope.json")
    assert read_plan(plan.to_json()).without_timings() == plan.without_timings()


# ---------------------------------------------------------------------------------------- the report


def test_report_shape(base):
    sc, plan = base
    d = dump(plan)
    d["objective"]["value"] *= 2
    route(d)["rate_rps"] += 1
    rep = check(d, sc)
    assert isinstance(rep, CheckReport) and not rep.ok
    assert all(isinstance(v, Violation) and v.family in FAMILIES for v in rep.violations)
    out = rep.to_dict()
    text = json.dumps(out, allow_nan=False)
    assert json.dumps(check(d, sc).to_dict(), allow_nan=False) == text
    assert list(out["checked"]) == list(FAMILIES)
    assert out["ok"] is False and out["violation_counts"]["objective"] >= 1
    r = rep.render()
    assert r.startswith("plan violates") and "objective (" in r and "demand_served (" in r
    assert "[" not in r  # safe to print through rich markup
    short = rep.render(limit=1)
    assert "more" in short and len(short.splitlines()) < len(r.splitlines())
    # families in report order
    ranks = [FAMILIES.index(v.family) for v in rep.violations]
    assert ranks == sorted(ranks)
    with pytest.raises(Exception):
        rep.violations[0].family = "x"  # frozen


# ---------------------------------------------------------------------------------------- speed


def big_plan(n_origins=250, n_classes=4, slots=5):
    """A consistent plan with n_classes x n_origins x 2 regions routes per slot, built directly (no solve)."""
    origins = {f"o{i}": {"rtt_ms": {"A": 10.0 + i % 50, "B": 20.0 + i % 70}} for i in range(n_origins)}
    classes = [{"name": f"k{j}", "model": "m", "shape": "s", "slo": {"ttft_ms": 500, "tbt_ms": 50}}
               for j in range(n_classes)]
    demand = {(f"k{j}", f"o{i}"): [1.0 + (i + j) % 3] * slots for i in range(n_origins) for j in range(n_classes)}
    doc = scenario(
        regions={"A": {"pue": 1.2, "gpus": [{"type": "G", "count": 10_000, "price_usd_per_gpu_hour": 2.0}]},
                 "B": {"pue": 1.1, "gpus": [{"type": "G", "count": 10_000, "price_usd_per_gpu_hour": 3.0}]}},
        origins=origins, classes=classes, demand=demand, slots=slots,
        prices={"A": [50.0] * slots, "B": [60.0] * slots}, options={"max_utilization": 0.8},
    )
    sc = planner.scenario_from_dict(doc)
    K, O = len(sc.classes), len(sc.origins)
    slot_list = []
    for t in range(slots):
        routing, load = [], {"A": [0.0] * K, "B": [0.0] * K}
        for o in range(O):
            for k in range(K):
                dmd = float(sc.demand[k, o, t])
                for reg in ("A", "B"):
                    routing.append({"class": sc.classes[k], "origin": sc.origins[o], "region": reg,
                                    "rate_rps": dmd / 2, "share": 0.5, "rtt_ms": sc.rtt[o, sc.regions.index(reg)],
                                    "targets": [{"deployment": f"{reg}/m|G|tp1|pp1|1000MHz", "rate_rps": dmd / 2}]})
                    load[reg][k] += dmd / 2
        deps = []
        for reg in ("A", "B"):
            u = sum(load[reg]) / 10.0
            n = int(u / 0.8) + 1
            deps.append({"id": f"{reg}/m|G|tp1|pp1|1000MHz", "region": reg, "model": "m", "gpu": "G", "tp": 1, "pp": 1,
                         "freq_mhz": 1000.0, "replicas": n, "gpus": n, "utilization": u / n, "power_w": 100 * n + 200 * u,
                         "classes": [{"class": sc.classes[k], "rate_rps": load[reg][k], "ttft_ms": 100.0,
                                      "tbt_ms": 20.0} for k in range(K)]})
        slot_list.append({"index": t, "start": ts(t), "deployments": deps, "routing": routing, "unserved": [],
                          "totals": {"carbon_kg": 0.0, "energy_kwh": 0.0, "cost_usd": 0.0, "gpu_hours": 0.0}})
    zero = {q: 0.0 for q in ("carbon_kg", "energy_kwh", "cost_usd", "gpu_cost_usd", "electricity_cost_usd",
                             "gpu_hours", "served_requests", "unserved_requests", "unserved_rps")}
    d = {
        "scenario": {"name": "test", "fingerprint": sc.fingerprint}, "status": "optimal",
        "objective": {"name": "carbon", "value": 0.0, "unit": "kgCO2e"},
        "options": {"objective": "carbon", "budget_usd": None, "carbon_cap_kg": None, "max_utilization": 0.8,
                    "unserved_allowed": False, "unserved_penalty_per_request": 1.0, "tie_break": "none"},
        "totals": zero,
        "solver": {"backend": "highs", "status": "x", "gap": 0.0, "bound": 0.0, "mip_gap": 0.0, "time_limit": None,
                   "threads": None, "seed": None, "tie_break": "none", "variables": 0, "constraints": 0,
                   "integer_variables": 0, "build_seconds": 0.0, "solve_seconds": 0.0},
        "pruning": {"configs_total": 1, "pruned_slo": 0, "pruned_dominated": 0, "kept": 1, "pairs_pruned_slo": 0},
        "horizon": {"start": ts(0), "slot_minutes": 60, "slots": slots},
        "slots": slot_list,
    }
    return sc, d


def test_large_plan_is_fast():
    sc, d = big_plan()
    n_routes = sum(len(s["routing"]) for s in d["slots"])
    assert n_routes == 10_000
    rep = check(d, sc)
    assert rep.families == ["totals"]  # only the zeroed totals are wrong (the objective matches them)
    # fill in the recomputed totals: the plan then holds
    rec = rep.recomputed
    d["totals"] = dict(rec["totals"])
    for s, r in zip(d["slots"], rec["slots"]):
        s["totals"] = {q: r[q] for q in ("carbon_kg", "energy_kwh", "cost_usd", "gpu_hours")}
    d["objective"]["value"] = rec["objective"]["value"]
    t0 = time.perf_counter()
    rep = check(d, sc)
    elapsed = time.perf_counter() - t0
    assert rep.ok, rep.render()
    assert rep.checked["latency_ttft"] >= n_routes
    assert elapsed < 5.0

"""Plan-level simulation: ``planner.sim`` and ``plan simulate``.

Scenarios here use model and GPU names the performance model knows (llama-3.1-8b on H100-80GB /
A100-80GB), with profile rows made by ``perfmodel.profile_rows`` so plan and simulator share one
model. Engine-level checks (queueing theory, the naive step-by-step reference) are in
tests/test_simengine.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from builders import scenario
from hypothesis import given, settings
from hypothesis import strategies as st

import planner
from planner.cli import main
from planner.perf.rows import profile_rows
from planner.sim.arrivals import TraceSource
from planner.sim.arrivals import load_traces as _load_traces
from planner.sim.arrivals import replay_traces as _replay
from planner.sim.orchestrate import parse_slots, simulate
from planner.sim.report import fairness_of as _fairness

MODEL = "llama-3.1-8b"


def _rows(gpu, freq, shapes, slos):
    df = profile_rows(MODEL, gpu, shapes, slos, tps=(1,), pps=(1,), freqs=[freq])
    return [{k: v for k, v in r.items() if k != "expected_error"} for r in df.to_dict("records")]


def sim_doc(rate=60.0, slots=1, classes=None, shapes=None, max_util=0.8, gpus=("H100-80GB",), unserved=None,
            slot_minutes=60, count=40):
    """One region with H100s (and optionally A100s), one origin 30 ms away, one or more 8B classes."""
    shapes = shapes or [{"name": "s", "input_tokens": 400, "output_tokens": 100}]
    classes = classes or [{"name": "k", "model": MODEL, "shape": "s", "slo": {"ttft_ms": 1000, "tbt_ms": 100}}]
    shp = {s["name"]: (s["input_tokens"], s["output_tokens"]) for s in shapes}
    slo = {}
    for c in classes:
        t = (c["slo"]["ttft_ms"] - 30, c["slo"]["tbt_ms"], None)
        slo[c["shape"]] = min(slo.get(c["shape"], t), t)
    clocks = {"H100-80GB": 1980, "A100-80GB": 1410}
    rows = [r for g in gpus for r in _rows(g, clocks[g], shp, slo)]
    price = {"H100-80GB": 3.0, "A100-80GB": 1.5}
    opts = {"max_utilization": max_util, "objective": "energy"}
    if unserved:
        opts["unserved"] = unserved
    demand = {(c["name"], "o"): [rate / len(classes)] * slots for c in classes}
    return scenario(
        regions={"A": {"pue": 1.2, "gpus": [{"type": g, "count": count, "price_usd_per_gpu_hour": price[g]} for g in gpus]}},
        origins={"o": {"rtt_ms": {"A": 30.0}}}, gpus=list(gpus), models=[MODEL], shapes=shapes, classes=classes,
        profiles=rows, demand=demand, slots=slots, slot_minutes=slot_minutes, options=opts)


@pytest.fixture(scope="module")
def solved():
    sc = planner.scenario_from_dict(sim_doc(rate=100.0, gpus=("H100-80GB", "A100-80GB")))
    plan = planner.solve(sc, objective="energy", mip_gap=0.0)
    return plan, sc


# ---------------------------------------------------------------------------------------------
# accounting


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), policy=st.sampled_from(["fcfs", "edf", "srtf", "llf"]),
       scale=st.sampled_from([0.5, 1.0, 1.3]))
def test_every_arrival_completes_or_is_dropped(solved, seed, policy, scale):
    """Conservation: arrived = completed + dropped, in total, per slot and summed over groups; every
    attainment is a share; offered rate = arrivals / simulated seconds."""
    plan, sc = solved
    rep = simulate(plan, sc, policy=policy, seed=seed, load_scale=scale, minutes=1.0)
    r = rep.requests
    assert r.arrived == r.completed + r.dropped_unrouted + r.dropped_too_long
    assert r.arrived > 0
    assert sum(g.requests.arrived for g in rep.groups) == r.arrived
    assert sum(g.requests.completed for g in rep.groups) == r.completed
    assert sum(s.requests.arrived for s in rep.slots) == r.arrived
    for g in rep.groups:
        assert g.offered_rps == pytest.approx(g.requests.arrived / 60.0)
        for x in (g.attainment.slo, g.attainment.ttft, g.attainment.tbt):
            assert 0.0 <= x <= 1.0
        assert g.attainment.slo <= min(g.attainment.ttft, g.attainment.tbt) + 1e-12
        assert g.ttft_ms.p50 <= g.ttft_ms.p90 <= g.ttft_ms.p99
        assert g.ttft_ms.p50 >= 30.0          # the RTT is part of the TTFT
    assert sum(d.requests for d in rep.deployments) == r.completed + r.dropped_too_long


def test_same_inputs_same_bytes(solved):
    """Determinism: the report (timing aside) is a function of plan, scenario and options; the seed matters."""
    plan, sc = solved
    a = simulate(plan, sc, seed=3, minutes=1.0, policy="llf").without_timings()
    b = simulate(plan, sc, seed=3, minutes=1.0, policy="llf").without_timings()
    c = simulate(plan, sc, seed=4, minutes=1.0, policy="llf").without_timings()
    assert json.dumps(a) == json.dumps(b)
    assert json.dumps(a) != json.dumps(c)


def test_load_scale_scales_the_offered_rate(solved):
    """Poisson arrivals at rate x scale over 2 minutes: N ~ Poisson(100 x 1.25 x 120 = 15,000), so the
    offered rate is 125 req/s within 4 sigma = 4 x sqrt(15000)/120 = 4.1 req/s."""
    plan, sc = solved
    rep = simulate(plan, sc, load_scale=1.25, minutes=2.0)
    assert rep.groups[0].planned_rps == pytest.approx(100.0)
    assert rep.groups[0].offered_rps == pytest.approx(125.0, abs=4.1)


def test_gpu_cost_matches_the_plan_and_energy_is_pro_rated(solved):
    """GPU rental does not depend on the traffic: simulated = planned = GPUs x price x window.
    Planned figures of a 6-minute window are a tenth of the slot's."""
    plan, sc = solved
    rep = simulate(plan, sc, minutes=6.0)
    gpu = sum(d.gpus * {"H100-80GB": 3.0, "A100-80GB": 1.5}[d.gpu] for d in plan.slots[0].deployments) * 0.1
    assert rep.simulated.gpu_cost_usd == pytest.approx(gpu)
    assert rep.planned.gpu_cost_usd == pytest.approx(gpu)
    assert rep.planned.energy_kwh == pytest.approx(plan.slots[0].totals.energy_kwh / 10)
    assert rep.planned.carbon_kg == pytest.approx(plan.slots[0].totals.carbon_kg / 10)


def test_planned_and_simulated_energy_agree_at_the_planned_load(solved):
    """At the planned load the simulated facility energy is within 5 % of the plan's: both come from
    the same replica model (the plan's power line runs from a replica's continuous-batching power at
    batch 1 to its busy power at the profiled rate)."""
    plan, sc = solved
    rep = simulate(plan, sc, minutes=10.0, seed=1)
    assert rep.simulated.energy_kwh == pytest.approx(rep.planned.energy_kwh, rel=0.05)
    for d in rep.deployments:
        assert d.simulated_utilization == pytest.approx(d.planned_utilization, abs=0.05)


def test_unserved_demand_is_dropped_as_unrouted():
    """Only 10 GPUs of 43.73 req/s profiled capacity at max_utilization 1 for 500 req/s of demand: the
    plan serves at most 437.3 req/s and leaves the rest unserved; the simulator drops exactly the
    traffic without a route, so the unrouted share is 1 - served/500 within Poisson noise."""
    doc = sim_doc(rate=500.0, max_util=1.0, unserved={"allowed": True, "penalty_per_request": 1.0}, count=10)
    sc = planner.scenario_from_dict(doc)
    plan = planner.solve(sc, objective="energy", mip_gap=0.0)
    served = sum(r.rate_rps for r in plan.slots[0].routing)
    assert served < 500.0
    rep = simulate(plan, sc, minutes=1.0)
    share = rep.requests.dropped_unrouted / rep.requests.arrived
    assert share == pytest.approx(1 - served / 500.0, abs=0.02)
    assert rep.planned_attainment == pytest.approx(served / 500.0)


# ---------------------------------------------------------------------------------------------
# traces and policies


def _write_trace(path, rows, header="timestamp,input_tokens,output_tokens,class"):
    path.write_text(header + "\n" + "\n".join(",".join(str(x) for x in r) for r in rows) + "\n")
    return path


def test_llf_beats_fcfs_on_a_bursty_trace(tmp_path):
    """Bursts mix a tight class (TTFT 400 ms) behind a loose one (TTFT 20 s) on one replica.

    Every 4 s, 60 requests of 1,500-token prompts arrive at once, the 30 loose ones first. The
    replica prefills at most 2,048 prompt tokens per step (about one prompt per step at ~70-90 ms),
    so the 60th prompt of a burst waits ~60 steps (> 4 s). FCFS serves the loose requests first, so
    most tight requests miss 400 ms; LLF (laxity = deadline - predicted prefill) serves tight ones
    first, so ~4-5 of them fit in 400 ms - 30 ms RTT, and every loose one still meets 20 s. Hence LLF
    attainment > FCFS attainment for the tight class and overall, and EDF (same order here) too."""
    shapes = [{"name": "s", "input_tokens": 1500, "output_tokens": 20}]
    classes = [{"name": "tight", "model": MODEL, "shape": "s", "slo": {"ttft_ms": 400, "tbt_ms": 200}},
               {"name": "loose", "model": MODEL, "shape": "s", "slo": {"ttft_ms": 20000, "tbt_ms": 200}}]
    rows = []
    for b in range(40):
        for j in range(60):
            rows.append((b * 4.0 + j * 1e-4, 1500, 20, "loose" if j < 30 else "tight"))
    trace = _write_trace(tmp_path / "burst.csv", rows)
    doc = sim_doc(rate=15.0, classes=classes, shapes=shapes, max_util=1.0, count=1)
    sc = planner.scenario_from_dict(doc)
    plan = planner.solve(sc, objective="energy", mip_gap=0.0)
    assert sum(d.replicas for d in plan.slots[0].deployments) == 1
    res = {p: simulate(plan, sc, traces=[str(trace)], policy=p, minutes=2.0, trace_rate="trace")
           for p in ("fcfs", "llf", "edf")}
    att = {p: {g.class_: g.attainment.slo for g in r.groups} for p, r in res.items()}
    assert att["llf"]["tight"] > att["fcfs"]["tight"] + 0.05
    assert att["llf"]["loose"] == 1.0
    assert res["llf"].attainment.slo > res["fcfs"].attainment.slo
    assert res["edf"].attainment.slo >= res["fcfs"].attainment.slo


def test_trace_is_compressed_to_the_planned_rate_and_classes_follow_rank(tmp_path):
    """A trace without class column, 200 requests over 99 s (about 2 req/s), half with 10 output tokens
    and half with 500: compressed to the plan's 40 req/s it repeats every 5 s; rank matching gives the
    short-output class (shape out 10) exactly the 10-token requests when the planned shares are 1:1."""
    shapes = [{"name": "short", "input_tokens": 200, "output_tokens": 10},
              {"name": "long", "input_tokens": 200, "output_tokens": 500}]
    classes = [{"name": "ks", "model": MODEL, "shape": "short", "slo": {"ttft_ms": 1000, "tbt_ms": 100}},
               {"name": "kl", "model": MODEL, "shape": "long", "slo": {"ttft_ms": 1000, "tbt_ms": 100}}]
    rows = [(i * 99.0 / 199, 200, 10 if i % 2 else 500) for i in range(200)]
    trace = _write_trace(tmp_path / "t.csv", rows, header="timestamp,input_tokens,output_tokens")
    sc = planner.scenario_from_dict(sim_doc(rate=40.0, classes=classes, shapes=shapes))
    loaded = _load_traces([TraceSource(str(trace))], sc)
    notes = []
    arr = _replay(loaded, sc, 0, 60_000.0, 1.0, "plan", np.random.default_rng(0), notes)
    assert len(arr.t_ms) == 40 * 60
    assert np.all(np.diff(arr.t_ms) >= 0)
    ks = sc.classes.index("ks")
    assert np.all((arr.out == 10) == (arr.k == ks))
    assert notes == []


def test_requests_too_long_for_the_kv_cache_are_dropped(tmp_path):
    """An 8B replica on an H100 holds well under 10 million tokens of KV cache, so a 10-million-token
    prompt can never be admitted: exactly those requests are dropped as too long."""
    rows = [(i * 0.1, 400, 100, "k") for i in range(300)] + [(i * 3.0 + 0.05, 10_000_000, 10, "k") for i in range(10)]
    rows.sort()
    trace = _write_trace(tmp_path / "t.csv", rows)
    sc = planner.scenario_from_dict(sim_doc(rate=10.0))
    plan = planner.solve(sc, objective="energy", mip_gap=0.0)
    rep = simulate(plan, sc, traces=[str(trace)], minutes=0.5, trace_rate="trace")
    assert rep.requests.dropped_too_long == 10
    assert rep.requests.completed == rep.requests.arrived - 10


def test_fairness_by_hand():
    """Jain's index of (1, 0.5): (1.5)^2 / (2 x 1.25) = 0.9; gap 0.5; equal values give 1."""
    f = _fairness({"a": 1.0, "b": 0.5})
    assert f.jain == pytest.approx(0.9)
    assert f.gap == pytest.approx(0.5)
    assert (f.best, f.worst) == ("a", "b")
    assert _fairness({"a": 0.7, "b": 0.7, "c": 0.7}).jain == pytest.approx(1.0)
    assert _fairness({}).jain is None


def test_parse_slots():
    assert parse_slots("0-2,5", 8) == [0, 1, 2, 5]
    assert parse_slots(None, 3) == [0, 1, 2]
    for bad in ("7-9", "a", "3-1", "-1"):
        with pytest.raises(planner.InputError):
            parse_slots(bad, 8)


# ---------------------------------------------------------------------------------------------
# command line


@pytest.fixture(scope="module")
def files(tmp_path_factory, solved):
    plan, sc = solved
    d = tmp_path_factory.mktemp("sim")
    (d / "plan.json").write_text(plan.to_json())
    import yaml

    doc = sim_doc(rate=100.0, gpus=("H100-80GB", "A100-80GB"))
    (d / "scenario.yaml").write_text(yaml.safe_dump(doc))
    return d


def test_cli_writes_report_and_table(files, capsys):
    out = files / "rep.json"
    rc = main(["simulate", str(files / "plan.json"), "-s", str(files / "scenario.yaml"), "--minutes", "0.5",
               "--policy", "edf", "-o", str(out)])
    assert rc == 0
    rep = json.loads(out.read_text())
    assert rep["options"]["policy"] == "edf"
    assert rep["requests"]["arrived"] == rep["requests"]["completed"]
    printed = capsys.readouterr().out
    assert "Planned vs simulated" in printed and "SLO attainment" in printed


@pytest.mark.parametrize("args, needle", [
    (["--slots", "3"], "outside 0-0"),
    (["--minutes", "90"], "minutes"),
    (["--load-scale", "0"], "--load-scale"),
    (["--trace", "nope.csv"], "nope.csv"),
    (["--trace", "{plan}=nosuchclass"], "unknown class"),
    (["--policy", "lifo"], "lifo"),
    (["--interruptions", "-1"], "--interruptions"),
])
def test_cli_bad_input_exits_2_and_keeps_the_old_report(files, capsys, args, needle):
    out = files / "keep.json"
    out.write_text("good\n")
    args = [a.replace("{plan}", str(files / "plan.json")) for a in args]
    rc = main(["simulate", str(files / "plan.json"), "-s", str(files / "scenario.yaml"), "-o", str(out), *args])
    cap = capsys.readouterr()
    assert rc == 2
    assert needle in cap.err
    assert "Traceback" not in cap.err
    assert out.read_text() == "good\n"


def test_cli_rejects_a_plan_of_another_scenario(files, capsys):
    """A scenario that is not the one the plan was made for: exit 2, naming the fingerprints."""
    import yaml

    doc = sim_doc(rate=90.0, gpus=("H100-80GB", "A100-80GB"))
    (files / "other.yaml").write_text(yaml.safe_dump(doc))
    rc = main(["simulate", str(files / "plan.json"), "-s", str(files / "other.yaml"), "--minutes", "1"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "another scenario" in err and "fingerprint" in err


def test_cli_refuses_a_plan_made_in_memory_without_scenario(files, capsys):
    """The plan was made from a scenario built in memory: it records no file, so --scenario is needed."""
    rc = main(["simulate", str(files / "plan.json"), "--minutes", "1"])
    assert rc == 2
    assert "give --scenario" in capsys.readouterr().err


@pytest.mark.parametrize("col, value, needle", [
    ("class", "bogus", "line 3, column 'class': unknown class 'bogus'"),
    ("origin", "mars", "line 3, column 'origin': unknown origin 'mars'"),
])
def test_trace_with_unknown_names_is_rejected_with_its_line(solved, tmp_path, col, value, needle):
    """A class or origin column naming something the scenario lacks: InputError naming file, line and column."""
    plan, sc = solved
    good = "k" if col == "class" else "o"
    trace = _write_trace(tmp_path / "t.csv", [(0, 400, 100, good), (1, 400, 100, value)],
                         header=f"timestamp,input_tokens,output_tokens,{col}")
    with pytest.raises(planner.InputError) as e:
        simulate(plan, sc, traces=[str(trace)], minutes=0.5)
    assert needle in str(e.value) and "t.csv" in str(e.value)


def test_a_plan_on_vms_simulates_with_its_vm_rental():
    """The same fleet rented as 8-GPU VMs (on demand 24 USD/h, spot 8 USD/h; the class may run on spot
    with half its traffic kept servable on demand): the plan simulates, every request completes or is
    dropped, and GPU rental (simulated = planned) is the slot's VMs x price x window."""
    doc = sim_doc(rate=600.0, count=80)
    doc["regions"][0].pop("gpus")
    doc["regions"][0]["vms"] = [{"name": "vm8", "gpu": "H100-80GB", "gpus": 8, "price_usd_per_hour": 24.0,
                                 "count": 10, "spot_price_usd_per_hour": 8.0, "spot_count": 10}]
    doc["classes"][0] |= {"spot": True, "on_demand_floor": 0.5}
    sc = planner.scenario_from_dict(doc)
    plan = planner.solve(sc, objective="cost", mip_gap=0.0)
    assert planner.check(plan, sc).ok
    assert {d.market for d in plan.slots[0].deployments} == {"on-demand", "spot"}
    rep = simulate(plan, sc, minutes=6.0)
    price = {"on-demand": 24.0, "spot": 8.0}
    rent = sum(q.count * price[q.market] for q in plan.slots[0].vms) * 0.1
    assert rep.simulated.gpu_cost_usd == pytest.approx(rent)
    assert rep.planned.gpu_cost_usd == pytest.approx(rent)
    r = rep.requests
    assert r.arrived > 0 and r.arrived == r.completed + r.dropped_unrouted + r.dropped_too_long
    assert rep.attainment.slo >= 0.99  # the spot and on-demand deployments hold the SLO at the planned load


def _spot_plan(restart_s=120):
    doc = sim_doc(rate=600.0, count=80)
    doc["regions"][0].pop("gpus")
    doc["regions"][0]["vms"] = [{"name": "vm8", "gpu": "H100-80GB", "gpus": 8, "price_usd_per_hour": 24.0,
                                 "count": 10, "spot_price_usd_per_hour": 8.0, "spot_count": 10,
                                 "spot_interruptions_per_hour": 0.5, "spot_restart_s": restart_s}]
    doc["classes"][0] |= {"spot": True, "on_demand_floor": 0.5}
    sc = planner.scenario_from_dict(doc)
    return planner.solve(sc, objective="cost", mip_gap=0.0), sc


def test_injected_spot_reclaims_hit_requests_and_are_seeded():
    """Spot VMs reclaimed 0.5 times per VM-hour, injected at 20x (10 per VM-hour) over a 6-minute window:
    each spot VM expects one reclaim, its replicas down 120 s each time. Reclaims happen, requests on the
    reclaimed replicas are hit (and started again elsewhere, so every request still completes), the
    on-demand half keeps serving, and the same seed gives the same report; no injection, no disruption."""
    plan, sc = _spot_plan()
    spot_vms = sum(q.count for q in plan.slots[0].vms if q.market == "spot")
    assert spot_vms >= 1
    base = simulate(plan, sc, minutes=6.0)
    assert base.disruptions is None and "disruptions" not in json.loads(base.to_json())
    rep = simulate(plan, sc, minutes=6.0, interruptions=20.0)
    q = rep.disruptions
    assert q.spot_reclaims >= 1 and q.requests_hit > 0 and q.late_replicas == 0
    assert 0 < q.down_replica_seconds <= q.spot_reclaims * 120.0 * 8 + 1e-6
    assert rep.requests.completed == base.requests.completed  # retried, not lost
    assert sum(s.disruptions.requests_hit for s in rep.slots) == q.requests_hit
    again = simulate(plan, sc, minutes=6.0, interruptions=20.0)
    assert again.without_timings() == rep.without_timings()
    assert rep.attainment.slo <= base.attainment.slo


def test_late_starts_delay_the_replicas_a_slot_starts():
    """With options.scaling, the first slot starts every replica. Planned ahead (the plan's assumption)
    they serve from the slot's start; with late_starts they serve only after their startup time (155 s
    + 16 GB at 1 GB/s = 171 s), so with every replica down, the requests of the first 171 s wait and
    miss a 1 s TTFT."""
    doc = sim_doc(rate=60.0)
    doc["options"]["scaling"] = {"provision_s": 155, "load_gb_per_s": 1.0}
    doc["models"] = [{"name": MODEL, "params_billion": 8.0}]
    sc = planner.scenario_from_dict(doc)
    plan = planner.solve(sc, mip_gap=0.0)
    assert plan.slots[0].actions and sum(a.started for a in plan.slots[0].actions) >= 1
    ahead = simulate(plan, sc, minutes=6.0)
    late = simulate(plan, sc, minutes=6.0, late_starts=True)
    q = late.disruptions
    assert q.late_replicas == sum(a.started for a in plan.slots[0].actions)
    assert q.down_replica_seconds == pytest.approx(171.0 * q.late_replicas)
    assert late.attainment.slo < ahead.attainment.slo - 0.3  # about half the window's requests miss

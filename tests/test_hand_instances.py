"""Hand-checkable instances: each optimum is derived in the docstring, then asserted on all three
backends, and every plan passes the independent checker (see helpers.solve_checked).

Unless stated: 1-hour slots, PUE 1, max utilisation 1, a config 'G' serving 10 req/s at 300 W busy
and 100 W idle, so a replica at load L req/s draws 100 + 20 L watts.
"""

import pytest
from builders import profile, scenario
from helpers import BACKENDS, deployments, solve_checked

from planner.errors import InfeasibleError


def one_gpu(price=1.0, count=10, gpu="G"):
    return {"type": gpu, "count": count, "price_usd_per_gpu_hour": price}


@pytest.mark.parametrize("backend", BACKENDS)
def test_single_region_cost_minimum(backend):
    """One region, two GPU types, cost objective, demand 25 req/s for one hour.

    G1: 10 req/s per replica at 2.0 USD/h; G2: 20 req/s at 2.5 USD/h. Feasible fleets cover 25 req/s:
    (3 G1) = 6.0, (2 G2) = 5.0, (1 G1 + 1 G2) = 4.5, more replicas cost more. Optimum: one of each,
    4.5 USD (no electricity price, so cost = rental).
    """
    doc = scenario(
        gpus=["G1", "G2"],
        regions={"A": {"gpus": [one_gpu(2.0, 10, "G1"), one_gpu(2.5, 10, "G2")]}},
        profiles=[profile(gpu="G1", max_rps=10), profile(gpu="G2", max_rps=20, busy=500, idle=150)],
        demand={("k", "o"): [25.0]},
    )
    plan, _ = solve_checked(doc, "cost", backend)
    assert plan.objective.value == pytest.approx(4.5, rel=1e-6)
    assert deployments(plan) == {("A", "G1", 1000.0): 1, ("A", "G2", 1000.0): 1}
    assert plan.totals.gpu_hours == pytest.approx(2.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_carbon_shift_between_regions(backend):
    """Two regions, carbon 100 and 400 g/kWh in slot 0, swapped in slot 1; demand 8 req/s.

    One replica (8 < 10 req/s) at 100 + 20 x 8 = 260 W for one hour = 0.26 kWh. The carbon optimum
    serves each slot in the cleaner region: 0.26 x 0.1 kg per slot, 0.052 kg in all.
    """
    doc = scenario(
        regions={"A": {"gpus": [one_gpu()]}, "B": {"gpus": [one_gpu()]}},
        carbon={"A": [100.0, 400.0], "B": [400.0, 100.0]},
        demand={("k", "o"): [8.0, 8.0]},
        slots=2,
    )
    plan, _ = solve_checked(doc, "carbon", backend)
    assert plan.objective.value == pytest.approx(0.052, rel=1e-6)
    assert [d.region for d in plan.slots[0].deployments] == ["A"]
    assert [d.region for d in plan.slots[1].deployments] == ["B"]
    assert plan.totals.energy_kwh == pytest.approx(0.52)


@pytest.mark.parametrize("backend", BACKENDS)
def test_binding_budget(backend):
    """Clean region A (100 g/kWh) rents at 10 USD/h, dirty B (400 g/kWh) at 1 USD/h; two slots, 8 req/s.

    Each slot needs one replica (0.26 kWh). Without a budget both slots go to A: 20 USD, 0.052 kg.
    With a budget of 11 USD only one slot can afford A: 10 + 1 = 11 USD and 0.026 + 0.104 = 0.13 kg.
    The budget couples the slots: solved by Lagrangian decomposition and as one model, same optimum.
    """
    doc = scenario(
        regions={"A": {"gpus": [one_gpu(10.0)]}, "B": {"gpus": [one_gpu(1.0)]}},
        carbon={"A": [100.0, 100.0], "B": [400.0, 400.0]},
        demand={("k", "o"): [8.0, 8.0]},
        slots=2,
    )
    free, _ = solve_checked(doc, "carbon", backend)
    assert free.objective.value == pytest.approx(0.052, rel=1e-6)
    assert free.totals.cost_usd == pytest.approx(20.0)
    for decompose in (True, False):
        plan, _ = solve_checked(doc, "carbon", backend, budget_usd=11.0, decompose=decompose)
        assert plan.objective.value == pytest.approx(0.13, rel=1e-6)
        assert plan.totals.cost_usd == pytest.approx(11.0)
        assert plan.status == "optimal" and plan.solver.gap <= 1e-9
        assert plan.solver.slots_solved_separately is decompose
        assert sorted(d.region for s in plan.slots for d in s.deployments) == ["A", "B"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_binding_availability(backend):
    """Clean A (100 g/kWh) has a single GPU; dirty B (400 g/kWh) has ten; demand 15 req/s.

    Two replicas are needed. A's replica should carry all it can: A at 10 req/s = 300 W -> 0.030 kg,
    B at 5 req/s = 200 W -> 0.080 kg; total 0.110 kg. (The reverse split, 5 in A and 10 in B,
    gives 0.020 + 0.120 = 0.140 kg; two replicas in B give 0.4 x 0.5 = 0.2 kg.)
    """
    doc = scenario(
        regions={"A": {"gpus": [one_gpu(count=1)]}, "B": {"gpus": [one_gpu()]}},
        carbon={"A": [100.0], "B": [400.0]},
        demand={("k", "o"): [15.0]},
    )
    plan, _ = solve_checked(doc, "carbon", backend)
    assert plan.objective.value == pytest.approx(0.110, rel=1e-6)
    loads = {d.region: d.classes[0].rate_rps for d in plan.slots[0].deployments}
    assert loads == pytest.approx({"A": 10.0, "B": 5.0})


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("demand,freq,energy", [(6.0, 600.0, 0.170), (10.0, 1000.0, 0.300)])
def test_frequency_choice(backend, demand, freq, energy):
    """One GPU type at two clocks (energy objective, one hour).

    1000 MHz: 10 req/s, 300 W busy, 100 W idle -> 100 + 20 L W.
     600 MHz:  6 req/s, 170 W busy, 120 W idle -> 120 + 8.33 L W.
    Demand 6: 1000 MHz draws 220 W, 600 MHz 170 W -> 600 MHz, 0.170 kWh.
    Demand 10: 1000 MHz draws 300 W; 600 MHz needs two replicas, 240 + 83.3 = 323.3 W; mixing
    (e.g. 600 MHz at 6 + 1000 MHz at 4) gives 170 + 180 = 350 W -> 1000 MHz, 0.300 kWh.
    """
    doc = scenario(
        profiles=[profile(freq=1000, max_rps=10, busy=300, idle=100), profile(freq=600, max_rps=6, busy=170, idle=120)],
        demand={("k", "o"): [demand]},
    )
    plan, _ = solve_checked(doc, "energy", backend)
    assert plan.objective.value == pytest.approx(energy, rel=1e-6)
    assert deployments(plan) == {("A", "G", freq): 1}


@pytest.mark.parametrize("backend", BACKENDS)
def test_rtt_makes_nearby_route_mandatory(backend):
    """Dirty region Near (400 g/kWh, RTT 10 ms) and clean Far (100 g/kWh, RTT 450 ms); TTFT SLO 500 ms,
    profiled TTFT 100 ms. Far misses the SLO (450 + 100 > 500), so the carbon optimum is forced to
    Near: 0.26 kWh x 0.4 = 0.104 kg. (Without the RTT, Far would give 0.026 kg.)
    """
    doc = scenario(
        regions={"Near": {"gpus": [one_gpu()]}, "Far": {"gpus": [one_gpu()]}},
        carbon={"Near": [400.0], "Far": [100.0]},
        origins={"o": {"rtt_ms": {"Near": 10.0, "Far": 450.0}}},
    )
    plan, _ = solve_checked(doc, "carbon", backend)
    assert plan.objective.value == pytest.approx(0.104, rel=1e-6)
    assert {r.region for r in plan.slots[0].routing} == {"Near"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_latency_holds_per_origin_not_on_average(backend):
    """One region, two configs on different GPUs: 'fast' (TTFT 30 ms, 400 W busy) and 'eff' (TTFT
    100 ms, 160 W busy), both 10 req/s and 100 W idle. TTFT SLO 500 ms. Origin 'far' (RTT 450 ms)
    may only use 'fast' (450 + 100 > 500); origin 'near' (RTT 10 ms) may use both. 5 req/s each.

    All 10 req/s on one 'eff' replica would draw 160 W but breaks far's TTFT. Feasible options:
    one 'fast' replica for all: 400 W; 'fast' for far (100 + 30 x 5 = 250 W) + 'eff' for near
    (100 + 6 x 5 = 130 W) = 380 W. Energy optimum 0.380 kWh, and far's traffic only reaches 'fast'.
    """
    doc = scenario(
        gpus=["fast", "eff"],
        regions={"A": {"gpus": [one_gpu(gpu="fast"), one_gpu(gpu="eff")]}},
        profiles=[profile(gpu="fast", ttft=30, busy=400), profile(gpu="eff", ttft=100, busy=160)],
        origins={"far": {"rtt_ms": {"A": 450.0}}, "near": {"rtt_ms": {"A": 10.0}}},
        demand={("k", "far"): [5.0], ("k", "near"): [5.0]},
    )
    plan, _ = solve_checked(doc, "energy", backend)
    assert plan.objective.value == pytest.approx(0.380, rel=1e-6)
    far = [r for r in plan.slots[0].routing if r.origin == "far"][0]
    assert {t.deployment for t in far.targets} == {"A/m|fast|tp1|pp1|1000MHz"}


@pytest.mark.parametrize("backend", BACKENDS)
def test_data_residency(backend):
    """Origin 'eu' may only be served in region EU (400 g/kWh); 'us' anywhere; US is 100 g/kWh.
    8 req/s each. Carbon optimum: eu in EU (0.26 kWh x 0.4 = 0.104 kg), us in US (0.026 kg):
    0.130 kg. Without residency both would go to US: 16 req/s on two replicas, 0.052 kg.
    """
    doc = scenario(
        regions={"EU": {"gpus": [one_gpu()]}, "US": {"gpus": [one_gpu()]}},
        carbon={"EU": [400.0], "US": [100.0]},
        origins={"eu": {"rtt_ms": {"EU": 10.0, "US": 80.0}, "allowed_regions": ["EU"]},
                 "us": {"rtt_ms": {"EU": 80.0, "US": 10.0}}},
        demand={("k", "eu"): [8.0], ("k", "us"): [8.0]},
    )
    plan, _ = solve_checked(doc, "carbon", backend)
    assert plan.objective.value == pytest.approx(0.130, rel=1e-6)
    assert {(r.origin, r.region) for r in plan.slots[0].routing} == {("eu", "EU"), ("us", "US")}


@pytest.mark.parametrize("backend", BACKENDS)
def test_unserved_demand_at_penalty(backend):
    """One GPU (10 req/s), demand 12 req/s, unserved allowed at 1e-6 kg per request (carbon objective).

    Serving 10 req/s: 300 W for one hour at 100 g/kWh = 0.030 kg; 2 req/s x 3600 s unserved =
    7200 requests x 1e-6 = 0.0072 kg; objective 0.0372 kg. (Serving less is never better: an extra
    req/s served costs 20 W x 1 h x 0.1 = 0.002 kg but saves 3600 x 1e-6 = 0.0036 kg.)
    """
    doc = scenario(
        regions={"A": {"gpus": [one_gpu(count=1)]}},
        demand={("k", "o"): [12.0]},
        options={"unserved": {"allowed": True, "penalty_per_request": 1e-6}},
    )
    plan, _ = solve_checked(doc, "carbon", backend)
    assert plan.objective.value == pytest.approx(0.0372, rel=1e-6)
    assert plan.totals.unserved_requests == pytest.approx(7200.0)
    assert plan.slots[0].unserved[0].rate_rps == pytest.approx(2.0)


def test_unserved_not_allowed_is_infeasible():
    """Same as above without unserved demand: 12 req/s cannot fit on one 10 req/s GPU."""
    doc = scenario(regions={"A": {"gpus": [one_gpu(count=1)]}}, demand={("k", "o"): [12.0]})
    with pytest.raises(InfeasibleError) as ei:
        solve_checked(doc)
    assert "needs 12 req/s" in str(ei.value) and "at most 10 req/s" in str(ei.value)


@pytest.mark.parametrize("backend", BACKENDS)
def test_headroom_and_pue(backend):
    """max_utilization 0.5 and PUE 1.5: demand 8 req/s needs 8 / (10 x 0.5) -> 2 replicas, each at
    4 req/s: 2 x (100 + 80) = 360 W IT, 0.54 kWh facility energy, x 0.1 kg/kWh = 0.054 kg."""
    doc = scenario(
        regions={"A": {"pue": 1.5, "gpus": [one_gpu()]}},
        options={"max_utilization": 0.5},
    )
    plan, _ = solve_checked(doc, "carbon", backend)
    assert plan.objective.value == pytest.approx(0.054, rel=1e-6)
    d = plan.slots[0].deployments[0]
    assert d.replicas == 2 and d.utilization == pytest.approx(0.4)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gpu_hours_then_cost_tie_break(backend):
    """gpu-hours objective, two identical regions except price (A 3 USD/h, B 1 USD/h), 8 req/s.
    Every optimal plan uses 1 GPU-hour; the cost tie-break must pick B (1 USD) over A (3 USD)."""
    doc = scenario(
        regions={"A": {"gpus": [one_gpu(3.0)]}, "B": {"gpus": [one_gpu(1.0)]}},
    )
    plan, _ = solve_checked(doc, "gpu-hours", backend, tie_break="lexicographic")
    assert plan.objective.value == pytest.approx(1.0)
    assert plan.totals.cost_usd == pytest.approx(1.0)
    assert plan.objective.secondary == "cost"


@pytest.mark.parametrize("backend", BACKENDS)
def test_active_power_changes_the_choice_at_partial_load(backend):
    """Energy objective, demand 5 req/s (half a replica), two GPU types at the same price, both
    10 req/s and 300 W busy per replica:

    G1: idle 80 W, active 260 W -> draws 260 + (300 - 260)/10 x 5 = 280 W at 5 req/s;
    G2: idle 120 W, active 200 W -> 200 + (300 - 200)/10 x 5 = 250 W.
    Any plan with two replicas draws at least 2 x 200 W, so the optimum is one G2 replica, 0.250 kWh.
    Without active power (the idle-to-busy line) G1 would draw 80 + 22 x 5 = 190 W and G2
    120 + 18 x 5 = 210 W: one G1 replica, 0.190 kWh, which the active power turns into 0.280 kWh.
    """
    gpus = [one_gpu(1.0, 10, "G1"), one_gpu(1.0, 10, "G2")]
    rows = [profile(gpu="G1", busy=300, idle=80, active=260), profile(gpu="G2", busy=300, idle=120, active=200)]
    doc = scenario(gpus=["G1", "G2"], regions={"A": {"gpus": gpus}}, profiles=rows, demand={("k", "o"): [5.0]})
    plan, _ = solve_checked(doc, "energy", backend)
    assert plan.objective.value == pytest.approx(0.250, rel=1e-6)
    assert deployments(plan) == {("A", "G2", 1000.0): 1}
    assert plan.slots[0].deployments[0].power_w == pytest.approx(250.0)
    for r in rows:
        del r["active_power_w"]
    plan, _ = solve_checked(doc, "energy", backend)
    assert plan.objective.value == pytest.approx(0.190, rel=1e-6)
    assert deployments(plan) == {("A", "G1", 1000.0): 1}


@pytest.mark.parametrize("backend", BACKENDS)
def test_active_power_is_the_largest_of_the_config_rows(backend):
    """One config serving two shapes: s1 (10 req/s, busy 300 W, idle 100 W, active 250 W) and s2
    (10 req/s, busy 200 W, idle 100 W, no active power: its intercept is idle, 100 W). A replica's
    zero-load power is the larger intercept, 250 W; s1 adds (300 - 250)/10 = 5 W per req/s, and s2,
    whose busy power is below 250 W, adds nothing. Demand 2 req/s of k1 (s1) and 4 req/s of k2 (s2):
    one replica at utilisation 0.6 draws 250 + 5 x 2 + 0 x 4 = 260 W, 0.260 kWh. (The idle line would
    say 100 + 20 x 2 + 10 x 4 = 180 W.)
    """
    doc = scenario(
        shapes=[{"name": "s1", "input_tokens": 100, "output_tokens": 10},
                {"name": "s2", "input_tokens": 200, "output_tokens": 10}],
        classes=[{"name": "k1", "model": "m", "shape": "s1", "slo": {"ttft_ms": 500, "tbt_ms": 50}},
                 {"name": "k2", "model": "m", "shape": "s2", "slo": {"ttft_ms": 500, "tbt_ms": 50}}],
        profiles=[profile(shape="s1", busy=300, idle=100, active=250), profile(shape="s2", busy=200, idle=100)],
        demand={("k1", "o"): [2.0], ("k2", "o"): [4.0]},
    )
    plan, _ = solve_checked(doc, "energy", backend)
    assert plan.objective.value == pytest.approx(0.260, rel=1e-6)
    d = plan.slots[0].deployments[0]
    assert d.replicas == 1 and d.utilization == pytest.approx(0.6) and d.power_w == pytest.approx(260.0)

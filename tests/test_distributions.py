"""Request-length distributions of shapes: reading, normalising, writing from a trace, simulating."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from builders import scenario
from test_simulate import sim_doc

import planner
from planner.datatools.traces import load_trace, parse_bucket, trace_distribution


def with_dist(rows, shape_index=0, **kw):
    doc = scenario(**kw)
    doc["shapes"][shape_index]["distribution"] = rows
    return doc


def test_weights_are_normalised_and_pairs_merged():
    """Rows (100, 10) x 1, (300, 30) x 2, (100, 10) x 1: the pair (100, 10) twice, so weights 2 and 2 of
    4 -> 0.5 and 0.5, sorted by (input, output)."""
    rows = [{"input_tokens": 100, "output_tokens": 10, "weight": 1}, {"input_tokens": 300, "output_tokens": 30, "weight": 2},
            {"input_tokens": 100, "output_tokens": 10, "weight": 1}]
    sc = planner.scenario_from_dict(with_dist(rows))
    d = sc.shape_distribution("s")
    assert d.to_dict("list") == {"input_tokens": [100, 300], "output_tokens": [10, 30], "weight": [0.5, 0.5]}
    assert planner.scenario_from_dict(scenario()).shape_distribution("s") is None


def test_quantile_levels_become_the_mass_since_the_previous_level():
    """Levels 0.25, 0.75, 1: masses 0.25, 0.5, 0.25."""
    rows = [{"input_tokens": 50, "output_tokens": 5, "quantile": 0.25}, {"input_tokens": 100, "output_tokens": 10, "quantile": 0.75},
            {"input_tokens": 400, "output_tokens": 40, "quantile": 1.0}]
    d = planner.scenario_from_dict(with_dist(rows)).shape_distribution("s")
    assert d["weight"].tolist() == [0.25, 0.5, 0.25]


@pytest.mark.parametrize("rows,msg", [
    ([{"input_tokens": 1, "output_tokens": 1}], "give exactly one of the columns weight"),
    ([{"input_tokens": 1, "output_tokens": 1, "weight": 1, "quantile": 1}], "give exactly one of the columns weight"),
    ([{"input_tokens": 0, "output_tokens": 1, "weight": 1}], "input_tokens and output_tokens must be at least 1"),
    ([{"input_tokens": 5, "output_tokens": 1, "weight": 0}], "weights must be non-negative with a positive sum"),
    ([{"input_tokens": 5, "output_tokens": 1, "quantile": 0.5}, {"input_tokens": 6, "output_tokens": 1, "quantile": 0.4}],
     "levels must increase strictly"),
    ([{"input_tokens": 5, "output_tokens": 1, "quantile": 0.5}], "the last level must be 1"),
    ([{"input_tokens": 5, "output_tokens": 1, "weight": "x"}], "weight: not a finite number: 'x'"),
    ([{"input_tokens": 5, "output_tokens": 1, "weight": 1, "extra": 2}], "unknown column(s): 'extra'"),
])
def test_bad_distributions_are_named(rows, msg):
    with pytest.raises(planner.ScenarioError) as e:
        planner.scenario_from_dict(with_dist(rows))
    assert msg in str(e.value), str(e.value)
    assert "shapes[0].distribution" in str(e.value)


def test_a_distribution_counts_by_content_and_survives_save(tmp_path):
    rows = [{"input_tokens": 100, "output_tokens": 10, "weight": 3}, {"input_tokens": 300, "output_tokens": 30, "weight": 1}]
    a = planner.scenario_from_dict(with_dist(rows))
    b = planner.scenario_from_dict(with_dist([dict(r, weight=r["weight"] * 2) for r in rows]))
    c = planner.scenario_from_dict(with_dist(rows[:1]))
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert planner.scenario_from_dict(scenario()).fingerprint != a.fingerprint
    path = a.save(tmp_path / "saved")
    assert (tmp_path / "saved" / "shape_s.csv").is_file()
    back = planner.load_scenario(path)
    assert back.fingerprint == a.fingerprint
    assert back.shape_distribution("s").equals(a.shape_distribution("s"))


def test_fields_added_later_keep_old_fingerprints():
    """A scenario without attainment targets or distributions keeps the fingerprint it had before those
    fields existed (plans made then still match); setting one changes it."""
    doc = scenario()
    base = planner.scenario_from_dict(doc).fingerprint
    assert base == "576549a92add9f3312000a6fedd67185c9fa4df4a10659052503dc6d9226d171"  # as computed at b9cd274
    doc2 = scenario()
    doc2["classes"][0]["slo"]["attainment"] = 0.99
    assert planner.scenario_from_dict(doc2).fingerprint != base


def test_trace_distribution_by_hand(tmp_path):
    """Six requests; 4 bins per octave: bin = floor(4 log2(tokens)).

    in 100 (bin 26), 110 (27), 100 (26), 1000 (39), 1000 (39), 1000 (39); out 10 (13), 10 (13), 11 (13),
    200 (30), 200 (30), 300 (32). Cells: (26, 13) x2 -> means (100, 10.5 -> 10 by round-half-even);
    (27, 13) x1 -> (110, 10); (39, 30) x2 -> (1000, 200); (39, 32) x1 -> (1000, 300). Weights 2/6, 1/6,
    2/6, 1/6."""
    p = tmp_path / "t.csv"
    p.write_text("timestamp,input_tokens,output_tokens\n" + "".join(
        f"2024-01-01T00:00:0{i}Z,{a},{b}\n" for i, (a, b) in enumerate(
            [(100, 10), (110, 10), (100, 11), (1000, 200), (1000, 200), (1000, 300)])))
    d = trace_distribution(load_trace(p), [parse_bucket("all:in>=1")], "all")
    assert d[["input_tokens", "output_tokens"]].values.tolist() == [[100, 10], [110, 10], [1000, 200], [1000, 300]]
    assert d["weight"].tolist() == pytest.approx([2 / 6, 1 / 6, 2 / 6, 1 / 6])
    assert set(d["source"]) == {"t.csv: 6 requests of class all, 4 length bins per octave"}
    # the CLI writes the same table, and the scenario reads it back
    out = tmp_path / "dist.csv"
    r = subprocess.run([sys.executable, "-m", "planner.cli", "data", "shapes", str(p), "--class", "all:in>=1",
                        "--distribution", "all", "-o", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    doc = with_dist("dist.csv")
    (tmp_path / "s.json").write_text(json.dumps(doc))
    sc = planner.load_scenario(tmp_path / "s.json")
    assert sc.shape_distribution("s")["weight"].tolist() == pytest.approx([2 / 6, 1 / 6, 2 / 6, 1 / 6])
    for args, msg in ((["--distribution", "nope"], "unknown class 'nope'"),
                      (["-o", str(tmp_path / "x.csv")], "-o needs --distribution"),
                      (["--distribution", "all", "--json"], "--json and --distribution/--arrivals exclude each other")):
        r = subprocess.run([sys.executable, "-m", "planner.cli", "data", "shapes", str(p), "--class", "all:in>=1", *args],
                           capture_output=True, text=True)
        assert r.returncode == 2 and msg in r.stderr, (args, r.stderr)


def test_poisson_arrivals_draw_their_lengths_from_the_distribution():
    """A 50/50 two-point distribution, (200, 50) and (800, 150): simulated requests split about evenly,
    mean input about 500, mean output about 100; a point shape keeps one length."""
    doc = sim_doc(rate=40.0)
    doc["shapes"][0]["distribution"] = [{"input_tokens": 200, "output_tokens": 50, "weight": 1},
                                        {"input_tokens": 800, "output_tokens": 150, "weight": 1}]
    sc = planner.scenario_from_dict(doc)
    from planner.sim.arrivals import poisson_arrivals

    a = poisson_arrivals(sc, 0, 600_000.0, 1.0, np.random.default_rng(1))
    assert len(a.inp) > 20_000
    assert set(zip(a.inp.tolist(), a.out.tolist())) == {(200, 50), (800, 150)}
    assert np.mean(a.inp == 800) == pytest.approx(0.5, abs=0.01)
    point = poisson_arrivals(planner.scenario_from_dict(sim_doc(rate=40.0)), 0, 60_000.0, 1.0, np.random.default_rng(1))
    assert set(point.inp.tolist()) == {400} and set(point.out.tolist()) == {100}


def test_the_default_shapes_carry_the_azure_distributions():
    """The default shapes' distributions hold the traces' means (issue 11: conv prompts of up to 256
    output tokens have median 409 but mean 1,193 input tokens; code mean 2,048)."""
    sc = planner.load_scenario(None)
    for shape, mean_in in (("conv-short", 1193), ("code", 2048)):
        d = sc.shape_distribution(shape)
        assert abs(float((d["input_tokens"] * d["weight"]).sum()) - mean_in) < 0.01 * mean_in, shape
        assert d["weight"].sum() == pytest.approx(1.0)


# --------------------------------------------------------------------------------- demand statistic


def quarter_hour_demand():
    """One hourly slot; demand in 15-minute steps 4, 8, 12, 16 req/s (and the table's last point at
    the next hour, which only closes the horizon)."""
    rows = [{"timestamp": f"2024-01-01T00:{m:02d}:00Z", "class": "k", "origin": "o", "rate_rps": r}
            for m, r in ((0, 4.0), (15, 8.0), (30, 12.0), (45, 16.0))]
    doc = scenario(options={"max_utilization": 1.0})
    doc["demand"] = rows
    return doc


@pytest.mark.parametrize("stat,rate,replicas", [("mean", 10.0, 1), ("peak", 16.0, 2), ("p50", 8.0, 1),
                                                ("p75", 12.0, 2), ("p90", 16.0, 2), ("p25", 4.0, 1)])
def test_demand_statistic_by_hand(stat, rate, replicas):
    """Time-weighted over the hour: mean (4 + 8 + 12 + 16) / 4 = 10; peak 16; each rate holds a quarter
    of the hour, so p25 = 4, p50 = 8, p75 = 12, p90 = 16. One config of 10 req/s at utilisation 1:
    replicas = ceil(rate / 10)."""
    sc = planner.scenario_from_dict(quarter_hour_demand())
    p = planner.solve(sc, "carbon", mip_gap=0.0, demand_statistic=stat)
    assert sum(r.rate_rps for r in p.slots[0].routing) == pytest.approx(rate)
    assert sum(d.replicas for d in p.slots[0].deployments) == replicas
    assert p.options.demand_statistic == stat
    assert planner.check(p, sc).ok  # the checker takes the plan's statistic from the same table


def test_the_checker_holds_a_plan_to_its_statistic():
    sc = planner.scenario_from_dict(quarter_hour_demand())
    d = json.loads(planner.solve(sc, "carbon", demand_statistic="peak").to_json())
    d["options"]["demand_statistic"] = "mean"  # a peak-sized plan claiming the mean: routes 16, demand 10
    assert "demand_served" in {v.family for v in planner.check(json.dumps(d), sc).violations}
    d["options"]["demand_statistic"] = "p100"
    assert "options" in {v.family for v in planner.check(json.dumps(d), sc).violations}


def test_a_bad_statistic_is_refused(tmp_path):
    sc = planner.scenario_from_dict(quarter_hour_demand())
    for bad in ("p0", "p100", "max", "P95", "p9.5"):
        with pytest.raises(planner.ScenarioError, match="demand_statistic"):
            planner.solve(sc, "carbon", demand_statistic=bad)
    r = subprocess.run([sys.executable, "-m", "planner.cli", "solve", "--demand-statistic", "top",
                        "-o", str(tmp_path / "p.json")], capture_output=True, text=True)
    assert r.returncode == 2 and "--demand-statistic must be mean, peak or pNN" in r.stderr
    assert not (tmp_path / "p.json").exists()

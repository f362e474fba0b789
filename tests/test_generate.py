"""`plan generate`: synthetic scenarios built from the default tables."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

import planner
from planner.cli import main
from planner.errors import InputError
from planner.scenario.generate import FILES, generate_scenario


def _gen(path, **kw):
    return generate_scenario(path, **kw)


def _bytes(d: Path) -> dict[str, bytes]:
    return {n: (d / n).read_bytes() for n in FILES}


@pytest.fixture(scope="module")
def default_sc():
    return planner.load_scenario(None)


@pytest.mark.parametrize(
    "regions,slots,gpus,models,classes",
    [(1, 3, 1, 1, 1), (3, 5, 2, 2, 2), (4, 24, 3, 2, 4), (8, 30, 6, 3, 9), (13, 49, 4, 2, 5)],
)
def test_counts_and_validity(tmp_path, regions, slots, gpus, models, classes):
    p = _gen(tmp_path / "s", regions=regions, slots=slots, gpus=gpus, models=models, classes=classes, seed=3)
    assert p == tmp_path / "s" / "scenario.yaml"
    sc = planner.load_scenario(p)
    assert sc.warnings == ()
    assert len(sc.regions) == regions
    assert sc.n_slots == slots and sc.spec.horizon.slot_minutes == 60
    assert sorted(set(sc.profiles["gpu"])) == sorted(sc.gpus) and len(sc.gpus) == gpus
    assert len(sc.models) == models
    assert len(sc.classes) == classes
    assert [o for o in sc.origins] == ["na", "eu", "asia"]
    assert np.isfinite(sc.carbon).all() and (sc.carbon > 0).all()
    assert sc.elec_priced.all()
    assert (sc.demand >= 0).all() and sc.demand.sum() > 0
    # every model that has a class is served by some class with a profile
    for k in sc.spec.classes:
        assert ((sc.profiles["model"] == k.model) & (sc.profiles["shape"] == k.shape)).any()
    # every region offers at least one GPU and every GPU type is offered somewhere (as whole VMs, as the
    # default does since issue 12)
    assert sc.vm_offers is not None
    assert set(sc.vm_offers["r"]) == set(range(len(sc.regions)))
    assert set(sc.vm_offers["g"]) == set(range(len(sc.gpus)))
    for f in ("carbon.csv", "demand.csv", "electricity_price.csv"):
        lines = (tmp_path / "s" / f).read_text().splitlines()[1:]
        assert all("synthetic (plan generate seed=3) from " in ln for ln in lines)


def test_default_sized_matches_default(tmp_path, default_sc):
    """6 regions, 4 GPUs, 2 models, 4 classes: the default's fleet, profiles and series (tiled)."""
    sc = planner.load_scenario(_gen(tmp_path / "d", regions=6, slots=48, gpus=4, models=2, classes=4))
    d = default_sc
    assert sc.regions == d.regions and sc.gpus == d.gpus and sc.models == d.models
    assert sorted(sc.classes) == sorted(d.classes)
    assert {k.name: k.slo for k in sc.spec.classes} == {k.name: k.slo for k in d.spec.classes}
    assert [r.model_dump() for r in sc.spec.regions] == [r.model_dump() for r in d.spec.regions]
    assert sc.profiles.drop(columns="source").equals(d.profiles.drop(columns="source"))
    np.testing.assert_allclose(sc.carbon, np.tile(d.carbon, 2), rtol=1e-6)
    np.testing.assert_allclose(sc.elec_price, np.tile(d.elec_price, 2), rtol=1e-6)
    np.testing.assert_array_equal(sc.rtt, d.rtt)
    np.testing.assert_array_equal(sc.allowed, d.allowed)
    # demand: the default's diurnal pattern, one factor per day (and possibly a servability cap)
    kmap = [d.classes.index(k) for k in sc.classes]
    for day in range(2):
        ratio = sc.demand[:, :, 24 * day:24 * (day + 1)] / d.demand[kmap]
        assert np.allclose(ratio, ratio.flat[0], rtol=1e-5)
        assert 0.3 < ratio.flat[0] <= 1.1 + 1e-9


def test_clones(tmp_path, default_sc):
    sc = planner.load_scenario(_gen(tmp_path / "c", regions=15, slots=30, gpus=4, seed=5))
    d = default_sc
    assert sc.regions[:6] == d.regions
    assert sc.regions[6:] == [f"{r}-2" for r in d.regions] + [f"{r}-3" for r in d.regions[:3]]
    for i, name in enumerate(sc.regions[6:], start=6):
        src = name.rsplit("-", 1)[0]
        j = d.regions.index(src)
        assert sc.pue[i] == d.pue[j]
        assert np.array_equal(sc.rtt[:, i], d.rtt[:, j])
        # carbon: the source's day, shifted circularly and scaled by a factor in [0.7, 1.3], tiled
        day = sc.carbon[i, :24]
        assert np.allclose(sc.carbon[i, 24:], day[:6], rtol=1e-6)
        fits = []
        for s in range(1, 24):
            ref = np.roll(d.carbon[j], s)
            f = float(day @ ref / (ref @ ref))
            if np.allclose(day, f * ref, rtol=1e-4):
                fits.append(f)
        assert fits and all(0.7 - 1e-3 <= f <= 1.3 + 1e-3 for f in fits)
        # GPU offer of the source, prices within +-15 %, counts multiples of 8
        src_offer = {g.type: g for g in d.spec.regions[j].gpus}
        offer = {g.type: g for g in sc.spec.regions[i].gpus}
        assert offer.keys() == src_offer.keys()
        for t, g in offer.items():
            assert 0.85 - 1e-4 <= g.price_usd_per_gpu_hour / src_offer[t].price_usd_per_gpu_hour <= 1.15 + 1e-4
            assert g.count % 8 == 0 and g.count >= 8
    # data residency: eu only in eu-central and its clones
    eu = sc.origins.index("eu")
    assert [r for r, ok in zip(sc.regions, sc.allowed[eu]) if ok] == ["eu-central", "eu-central-2"]
    assert sc.allowed[sc.origins.index("na")].all() and sc.allowed[sc.origins.index("asia")].all()


def test_variants(tmp_path, default_sc):
    sc = planner.load_scenario(_gen(tmp_path / "v", regions=2, slots=2, gpus=6, models=3, classes=7, seed=2))
    assert sc.gpus == ["A100-80GB", "H100-80GB", "H200", "L4", "A100-80GB-v2", "H100-80GB-v2"]
    assert sc.models == ["llama-3.1-8b", "llama-3.1-70b", "llama-3.1-8b-v2"]
    assert len(set(sc.classes)) == 7 and {k.model for k in sc.spec.classes} == set(sc.models)
    p = sc.profiles
    key = ["model", "tp", "pp", "freq_mhz", "shape"]
    base = p[p["gpu"] == "H100-80GB"].set_index(key).sort_index()
    var = p[p["gpu"] == "H100-80GB-v2"].set_index(key).sort_index()
    assert base.index.equals(var.index)
    r = var["max_rps"] / base["max_rps"]
    w = var["busy_power_w"] / base["busy_power_w"]
    assert np.allclose(r, r.iloc[0], rtol=1e-4) and 0.9 - 1e-4 <= r.iloc[0] <= 1.1 + 1e-4
    assert np.allclose(w, w.iloc[0], rtol=1e-4) and 0.9 - 1e-4 <= w.iloc[0] <= 1.1 + 1e-4
    assert (var["ttft_ms"] == base["ttft_ms"]).all() and (var["tbt_ms"] == base["tbt_ms"]).all()
    assert var["source"].str.contains("; synthetic variant of H100-80GB", regex=False).all()
    assert var["source"].str.endswith("(plan generate seed=2)").all()
    m2 = p[p["model"] == "llama-3.1-8b-v2"].drop(columns=["model", "source"]).reset_index(drop=True)
    m1 = p[(p["model"] == "llama-3.1-8b") & p["shape"].isin(set(m2["shape"]))].drop(
        columns=["model", "source"]).reset_index(drop=True)
    assert m1.equals(m2)
    # copies of a default class: SLO within +-10 % of the template's
    tmpl = {k.name: k.slo for k in default_sc.spec.classes}
    for k in sc.spec.classes:
        t = next(n for n in sorted(tmpl, key=len, reverse=True) if k.name.startswith(n))
        for f in ("ttft_ms", "tbt_ms", "e2e_ms"):
            a, b = getattr(k.slo, f), getattr(tmpl[t], f)
            assert (a is None) == (b is None)
            if a is not None:
                assert 0.9 * b - 1 <= a <= 1.1 * b + 1


def test_determinism(tmp_path):
    kw = dict(regions=9, slots=30, gpus=5, models=3, classes=6)
    _gen(tmp_path / "a", seed=7, **kw)
    _gen(tmp_path / "b", seed=7, **kw)
    _gen(tmp_path / "c", seed=8, **kw)
    a, b, c = _bytes(tmp_path / "a"), _bytes(tmp_path / "b"), _bytes(tmp_path / "c")
    assert a == b
    assert all(a[n] != c[n] for n in FILES)
    # the numbers differ too, not only the seed in the source text
    sa = planner.load_scenario(tmp_path / "a")
    sc = planner.load_scenario(tmp_path / "c")
    assert not np.allclose(sa.carbon, sc.carbon)
    assert not np.allclose(sa.demand, sc.demand)


def test_force(tmp_path):
    out = tmp_path / "f"
    _gen(out, regions=2, slots=3, seed=1)
    before = _bytes(out)
    mtimes = {n: (out / n).stat().st_mtime_ns for n in FILES}
    with pytest.raises(InputError, match="scenario.yaml|profiles.csv|carbon.csv|demand.csv"):
        _gen(out, regions=3, slots=4, seed=2)
    assert _bytes(out) == before
    assert {n: (out / n).stat().st_mtime_ns for n in FILES} == mtimes
    names = {p.name for p in out.iterdir()}  # the tables and the shapes' distributions, no temporary files
    assert set(FILES) <= names and all(n in FILES or (n.startswith("shape_") and n.endswith(".csv")) for n in names)
    # a single clashing file is enough, and it is named
    solo = tmp_path / "solo"
    solo.mkdir()
    (solo / "demand.csv").write_text("keep me\n")
    with pytest.raises(InputError) as ei:
        _gen(solo, regions=2, slots=3)
    assert "demand.csv" in str(ei.value)
    assert (solo / "demand.csv").read_text() == "keep me\n" and len(list(solo.iterdir())) == 1
    # force overwrites
    p = _gen(out, regions=3, slots=4, seed=2, force=True)
    assert _bytes(out) != before
    assert planner.load_scenario(p).n_slots == 4


def test_creates_nested_outdir(tmp_path):
    p = _gen(tmp_path / "x" / "y" / "z", regions=1, slots=1, gpus=1, models=1, classes=1)
    assert p.exists()
    assert planner.load_scenario(p).n_slots == 1


@pytest.mark.parametrize(
    "kw,word",
    [(dict(regions=0), "regions"), (dict(slots=0), "slots"), (dict(gpus=-1), "gpus"), (dict(models=0), "models"),
     (dict(classes=0), "classes"), (dict(regions=2.5), "regions"), (dict(slots=True), "slots"),
     (dict(seed="x"), "seed"), (dict(slots=10_001), "slots")],
)
def test_bad_arguments(tmp_path, kw, word):
    with pytest.raises(InputError, match=word):
        _gen(tmp_path / "bad", **kw)
    assert not (tmp_path / "bad").exists()


def test_outdir_is_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(InputError, match="not a folder"):
        _gen(f)


def test_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["generate", str(out), "--regions", "8", "--slots", "6", "--gpus", "2", "--models", "2", "--classes", "3",
            "--seed", "4"]
    assert main(args) == 0
    sc = planner.load_scenario(out)
    assert (len(sc.regions), sc.n_slots, len(sc.gpus), len(sc.models), len(sc.classes)) == (8, 6, 2, 2, 3)
    assert main(args) == 2  # exists, no --force
    assert main(args + ["--force"]) == 0
    assert main(["generate", str(tmp_path / "z"), "--regions", "0"]) == 2
    assert main(["validate", str(out)]) == 0


def _single_resource_load(sc) -> np.ndarray:
    """Per-slot fractional load of a one-region, one-GPU-type scenario, computed independently."""
    assert len(sc.regions) == 1 and len(sc.gpus) == 1
    p = sc.profiles
    od = sc.vm_offers[sc.vm_offers["market"] == "on-demand"]  # GPUs on demand (VMs x GPUs per VM)
    count = float(sum(row.avail[0] * row.gpus for row in od.itertuples()))
    util = sc.options.max_utilization
    out_tok = {s.name: s.output_tokens for s in sc.spec.shapes}
    load = np.zeros(sc.n_slots)
    for k, cls in enumerate(sc.spec.classes):
        q = p[(p["model"] == cls.model) & (p["shape"] == cls.shape) & (p["tbt_ms"] <= cls.slo.tbt_ms)]
        slack = cls.slo.ttft_ms - q["ttft_ms"]
        if cls.slo.e2e_ms is not None:
            slack = np.minimum(slack, cls.slo.e2e_ms - q["ttft_ms"] - (out_tok[cls.shape] - 1) * q["tbt_ms"])
        for o in range(len(sc.origins)):
            d = sc.demand[k, o]
            if not d.any():
                continue
            ok = slack >= sc.rtt[o, 0]
            assert ok.any() and sc.allowed[o, 0], "demand without any SLO-feasible capacity"
            best = float((q["max_rps"] / (q["tp"] * q["pp"]))[ok].max())
            load += d / (count * util * best)
    return load


@pytest.mark.parametrize("kw", [dict(gpus=1, models=2, classes=4, slots=24), dict(gpus=1, models=1, classes=2,
                                                                                      slots=30, seed=3)])
def test_servable_by_construction(tmp_path, kw):
    """One region, one GPU type: the load is a plain sum; it stays under 50 % and the description says so."""
    sc = planner.load_scenario(_gen(tmp_path / "o", regions=1, **kw))
    load = _single_resource_load(sc)
    assert load.max() <= 0.5
    desc = sc.spec.description
    pct = float(desc.split("Peak demand is at most ")[1].split("%")[0])
    assert load.max() <= pct / 100 + 1e-3
    if kw["classes"] == 4:  # code-70b from asia cannot meet its e2e SLO from eu-central on A100s: dropped
        assert "dropped" in desc
        assert not sc.demand[sc.classes.index("code-70b"), sc.origins.index("asia")].any()
    if "scaled down" in desc:  # one day: the bound is attained
        assert pct / 100 - 1e-3 <= load.max()


def test_small_scenario_solves_and_checks(tmp_path):
    sc = planner.load_scenario(_gen(tmp_path / "s", regions=3, slots=3, gpus=2, models=2, classes=2, seed=0))
    plan = planner.solve(sc, objective="carbon", mip_gap=1e-6)
    rep = planner.check(plan, sc)
    assert rep.ok, rep.render()
    assert plan.status == "optimal"


def test_tiny_one_region_solves(tmp_path):
    sc = planner.load_scenario(_gen(tmp_path / "t", regions=1, slots=2, gpus=1, models=1, classes=1, seed=9))
    plan = planner.solve(sc, objective="carbon", mip_gap=1e-6)
    assert planner.check(plan, sc).ok


def test_fast(tmp_path):
    planner.load_scenario(None)  # warm imports
    t = time.perf_counter()
    p = _gen(tmp_path / "f", regions=16, slots=24, gpus=4, models=2, classes=4)
    assert time.perf_counter() - t < 2.0
    assert len(planner.load_scenario(p).regions) == 16
    t = time.perf_counter()
    p = _gen(tmp_path / "big", regions=64, slots=168)
    assert time.perf_counter() - t < 10.0
    sc = planner.load_scenario(p)
    assert (len(sc.regions), sc.n_slots) == (64, 168)
    assert sc.demand.shape == (4, 3, 168)

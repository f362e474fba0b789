"""Synthetic scenarios of any size, built from the embedded default (``plan generate``).

:func:`generate_scenario` writes ``scenario.yaml`` plus ``profiles.csv``, ``carbon.csv``,
``demand.csv`` and ``electricity_price.csv`` to a folder. Everything is derived from the default
scenario's tables (``data/default``, see ``data/README.md``); every random choice is a pure function
of the seed and of what it is for (region name, GPU type, ...), so the same arguments always give
byte-identical files, and e.g. the clone ``us-west-2`` is the same whatever the other sizes are.

Construction
------------
* **Horizon**: the default start, 60-minute slots, ``slots`` slots. Every hourly series of the
  default (one day) is tiled circularly: slot ``t`` uses the default's hour ``t mod 24``.
* **Regions**: up to 6, a subset of the default's regions in the priority order
  ``eu-central, us-west, ap-southeast, ca-central, us-east, ap-northeast`` (eu-central first, so the
  eu origin, which may only be served in the EU, always has a region), listed in the default's
  order. Beyond 6, clones named ``<source>-2``, ``<source>-3``, ... cycling over the six sources:
  carbon series = the source's day shifted circularly by a seeded 1..23 hours and scaled by a
  seeded factor in [0.7, 1.3]; electricity price shifted by the same hours, its own factor in
  [0.7, 1.3]; PUE and RTTs of the source; per GPU type a seeded +-15 % price jitter and the source's
  count times a seeded factor in [0.75, 1.25], rounded to a multiple of 8 (at least 8).
* **GPU types**: the first ``gpus`` of the default's four; beyond, variants ``<type>-v2``,
  ``-v3``, ... cycling over the four, whose profile rows are the base type's with ``max_rps``
  scaled by a seeded factor in [0.9, 1.1] and busy/idle/active power by another (latencies
  unchanged; the ``source`` text gets "; synthetic variant of <type> (plan generate seed=S)"
  appended). A variant is offered wherever its base type is, with a jittered price and count as
  for clones.
* **Models**: the first ``models`` of the default's two; beyond, variants ``<model>-v2``, ... whose
  profile rows are copies of the base model's.
* **Classes**: class ``i`` serves model ``i mod models`` and takes the default classes of that
  model's base in turn (8B: chat-short, chat-long; 70B: chat-70b, code-70b): with 2 models and 4
  classes these are exactly the default's classes. Classes of variant models get a ``-vN`` suffix
  and repeated ones a ``-2``, ``-3``, ... suffix; all those get a seeded +-10 % jitter of every
  SLO (whole milliseconds; the template's SLO is kept if the jittered one would leave the class
  without any SLO-feasible profile row).
* **Origins**: the default's na, eu, asia; the RTT to a clone is the RTT to its source; eu may only
  be served in eu-central and its clones (the default's residency rule).
* **Demand**: for a class built from default class ``c``: the default's rate of ``c`` per origin
  and hour, divided by the summed default shares of the classes built (so the class mix keeps the
  default's shares and copies split their template's traffic), times ``regions / 6`` and a seeded
  factor in [0.9, 1.1] per day of the horizon.
* **Servability, by construction**: a fractional capacity LP (HiGHS) is solved over the hours of the
  day: GPUs of each type and region can be split over (class, origin) pairs, each GPU serving at
  most ``max_utilization x`` the best ``max_rps`` per GPU of the class's model over the profile rows
  that meet the class's TBT SLO, leave room for the RTT in the TTFT/e2e SLOs and whose replica fits
  in the region's GPUs of that type, residency respected. Its optimum gives the peak load factor (demand / capacity, all origins jointly). If it
  exceeds 0.45 before the per-day factor, demand is scaled down so that it is 0.45 (so the final
  peak is at most 0.495 < 0.5), and the scenario description says so. A (class, origin) pair that
  no region can serve within the SLOs gets no demand (also stated in the description).
* **Numbers**: rounded to 6 significant digits; ``source`` columns read
  "synthetic (plan generate seed=S) from <default source>".
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np

from planner.errors import InputError, Problem
from planner.highs_runtime import new_highs, run_highs
from planner.io import atomic_write_text
from planner.scenario.defaults import default_scenario_dir
from planner.scenario.loading import load_scenario

FILES = ("scenario.yaml", "profiles.csv", "carbon.csv", "demand.csv", "electricity_price.csv")
OTHER_DOCS = ("scenario.yml", "scenario.json")
REGION_PRIORITY = ("eu-central", "us-west", "ap-southeast", "ca-central", "us-east", "ap-northeast")
TARGET_LOAD = 0.45
DAY_FACTOR = (0.9, 1.1)
LIMITS = {"regions": 1024, "slots": 10_000, "gpus": 64, "models": 64, "classes": 512}
_TOL = 1e-9


# --------------------------------------------------------------------------------------------
# small deterministic helpers


def _u(seed: int, *tags) -> float:
    """A uniform number in [0, 1) that depends only on the seed and the tags (platform independent)."""
    key = "\x1f".join([str(seed), *map(str, tags)]).encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2.0**64


def _uniform(seed: int, lo: float, hi: float, *tags) -> float:
    return lo + (hi - lo) * _u(seed, *tags)


def _sig(x: float, n: int = 6) -> float:
    return float(f"{x:.{n}g}")


def _fmt(x: float) -> str:
    """6 significant digits, no trailing zeros, never '-0'."""
    s = f"{float(x):.6g}"
    return "0" if s in ("-0", "0") else s


def _num(x):
    """A float for YAML, written as an int when it is whole (1000 rather than 1000.0)."""
    x = float(x)
    return int(x) if x.is_integer() and abs(x) < 1e15 else x


def _round8(x: float) -> int:
    return max(8, 8 * int(round(x / 8.0)))


def _csv(header: list[str], rows) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


def _first_source(rows: list[dict[str, str]], keycols: tuple[str, ...]) -> dict[tuple, str]:
    out: dict[tuple, str] = {}
    for r in rows:
        out.setdefault(tuple(r[c] for c in keycols), (r.get("source") or "").strip())
    return out


# --------------------------------------------------------------------------------------------
# arguments


def _check_args(outdir, regions, slots, gpus, models, classes, seed) -> list[Problem]:
    problems = []
    for name, v in (("regions", regions), ("slots", slots), ("gpus", gpus), ("models", models),
                    ("classes", classes)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            problems.append(Problem(name, f"must be a whole number, got {v!r}"))
        elif v < 1:
            problems.append(Problem(name, f"must be at least 1, got {v}"))
        elif v > LIMITS[name]:
            problems.append(Problem(name, f"must be at most {LIMITS[name]}, got {v}"))
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        problems.append(Problem("seed", f"must be a whole number, got {seed!r}"))
    if outdir is None or str(outdir) == "":
        problems.append(Problem("outdir", "an output folder is required"))
    return problems


# --------------------------------------------------------------------------------------------
# the generated scenario, in memory


@dataclass
class _Region:
    name: str
    source: str  # default region it derives from
    shift: int = 0  # hours (clones)
    carbon_factor: float = 1.0
    price_factor: float = 1.0
    gpus: list[dict] = field(default_factory=list)
    vms: list[dict] = field(default_factory=list)


@dataclass
class _Class:
    name: str
    model: str
    template: str  # default class name
    shape: str
    slo: dict
    jittered: bool


def generate_scenario(
    outdir: str | Path,
    *,
    regions: int = 4,
    slots: int = 24,
    gpus: int = 3,
    models: int = 2,
    classes: int = 4,
    seed: int = 0,
    force: bool = False,
) -> Path:
    """Write a synthetic scenario of the given size to ``outdir``; return the path of its scenario.yaml.

    See the module docstring for the construction. Raises :class:`~planner.errors.InputError` for
    bad sizes, or when ``outdir`` already holds scenario files and ``force`` is false (nothing is
    written then).
    """
    problems = _check_args(outdir, regions, slots, gpus, models, classes, seed)
    if problems:
        raise InputError(problems, "invalid generate arguments")
    regions, slots, gpus, models, classes, seed = map(int, (regions, slots, gpus, models, classes, seed))
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise InputError([Problem(str(outdir), "exists and is not a folder")], "cannot write output")
    texts = _build(regions=regions, slots=slots, n_gpus=gpus, n_models=models, n_classes=classes, seed=seed)
    if not force:
        clash = [outdir / n for n in list(texts) + list(OTHER_DOCS) if (outdir / n).exists()]
        if clash:
            raise InputError([Problem(str(clash[0]), "already exists (use --force / force=True to overwrite)")],
                             "cannot write output")

    outdir.mkdir(parents=True, exist_ok=True)

    for name in [n for n in texts if n != "scenario.yaml"] + ["scenario.yaml"]:  # the document last: it never
        atomic_write_text(outdir / name, texts[name])                            # points at missing tables
    return outdir / "scenario.yaml"


def _build(*, regions: int, slots: int, n_gpus: int, n_models: int, n_classes: int, seed: int) -> dict[str, str]:
    ddir = default_scenario_dir()
    base = load_scenario(ddir / "scenario.yaml")
    spec = base.spec
    if base.slot_hours != 1.0 or base.n_slots != 24:  # pragma: no cover - guards a changed default
        raise RuntimeError("plan generate expects the default scenario to be one day of hourly slots")
    tag = f"synthetic (plan generate seed={seed}) from"
    DAY = 24
    util = float(spec.options.max_utilization)

    # ---- GPU types
    base_gpus = list(spec.gpu_types)
    gpu_list = []  # (name, base name, rps factor, power factor, memory)
    for i in range(n_gpus):
        b = base_gpus[i % len(base_gpus)]
        v = i // len(base_gpus) + 1
        if v == 1:
            gpu_list.append((b.name, b.name, 1.0, 1.0, b.memory_gb))
        else:
            name = f"{b.name}-v{v}"
            gpu_list.append((name, b.name, _sig(_uniform(seed, 0.9, 1.1, "gpu-rps", name), 4),
                             _sig(_uniform(seed, 0.9, 1.1, "gpu-power", name), 4), b.memory_gb))

    # ---- models
    base_models = list(spec.models)
    model_list = []  # (name, base name, params)
    for i in range(n_models):
        b = base_models[i % len(base_models)]
        v = i // len(base_models) + 1
        model_list.append((b.name if v == 1 else f"{b.name}-v{v}", b.name, b.params_billion))
    model_vix = {m: (i // len(base_models) + 1) for i, (m, _, _) in enumerate(model_list)}

    # ---- profiles (raw text of the default rows, so untouched rows stay byte-identical)
    raw_prof = _read_csv(ddir / "profiles.csv")
    shape_out = {s.name: s.output_tokens for s in spec.shapes}
    templates: dict[str, list] = {}
    for k in spec.classes:
        templates.setdefault(k.model, []).append(k)

    # ---- classes
    cls_list: list[_Class] = []
    for i in range(n_classes):
        m, bm, _ = model_list[i % n_models]
        j = i // n_models
        tl = templates.get(bm)
        if not tl:  # pragma: no cover - every default model has classes
            raise RuntimeError(f"default model {bm} has no class to copy")
        t = tl[j % len(tl)]
        rnd = j // len(tl)
        vi = model_vix[m]
        name = t.name + (f"-v{vi}" if vi > 1 else "") + (f"-{rnd + 1}" if rnd > 0 else "")
        slo = t.slo.model_dump(exclude_none=True)
        jittered = vi > 1 or rnd > 0
        if jittered:
            # the latency targets vary; the statistic and the attainment stay the template's
            slo = {key: max(1, round(val * _uniform(seed, 0.9, 1.1, "slo", name, key))) if key.endswith("_ms") else val
                   for key, val in slo.items()}
        slo = {key: _num(val) if key.endswith("_ms") else val for key, val in slo.items()}
        cls_list.append(_Class(name, m, t.name, t.shape, slo, jittered))

    shapes_by_model: dict[str, set] = {}
    for c in cls_list:
        shapes_by_model.setdefault(c.model, set()).add(c.shape)
    for m, bm, _ in model_list:  # a model without classes keeps its base's shapes
        shapes_by_model.setdefault(m, {t.shape for t in templates[bm]})
    used_shapes = set().union(*shapes_by_model.values())
    shape_list = [s for s in spec.shapes if s.name in used_shapes]

    by_pair: dict[tuple[str, str], list[dict]] = {}
    for r in raw_prof:
        by_pair.setdefault((r["model"], r["gpu"]), []).append(r)
    prof_cols = ["model", "gpu", "tp", "pp", "freq_mhz", "shape", "max_rps", "ttft_ms", "tbt_ms", "busy_power_w",
                 "idle_power_w", "active_power_w", "source", "expected_error", "statistic", "service_ms"]
    prof_rows = []
    # numeric view for the SLO and capacity checks: model, gpu, shape, rps per GPU, ttft, tbt
    pn_model, pn_gpu, pn_shape, pn_rpg, pn_ttft, pn_tbt, pn_n = [], [], [], [], [], [], []
    for m, bm, _ in model_list:
        for g, bg, frps, fpow, _mem in gpu_list:
            for r in by_pair.get((bm, bg), []):
                if r["shape"] not in shapes_by_model[m]:
                    continue
                row = dict(r)
                row["model"], row["gpu"] = m, g
                of = []
                if g != bg:
                    row["max_rps"] = _fmt(float(r["max_rps"]) * frps)
                    row["busy_power_w"] = _fmt(float(r["busy_power_w"]) * fpow)
                    row["idle_power_w"] = _fmt(float(r["idle_power_w"]) * fpow)
                    if r.get("active_power_w", ""):
                        row["active_power_w"] = _fmt(float(r["active_power_w"]) * fpow)
                    of.append(bg)
                if m != bm:
                    of.append(bm)
                if of:
                    row["source"] = (f"{r.get('source', '')}; synthetic variant of {' and '.join(of)} "
                                     f"(plan generate seed={seed})")
                prof_rows.append([row.get(c, "") for c in prof_cols])
                pn_model.append(m)
                pn_gpu.append(g)
                pn_shape.append(r["shape"])
                pn_n.append(int(row["tp"]) * int(row["pp"]))
                pn_rpg.append(float(row["max_rps"]) / pn_n[-1])
                pn_ttft.append(float(row["ttft_ms"]))
                pn_tbt.append(float(row["tbt_ms"]))
    pn_model = np.array(pn_model, dtype=object)
    pn_gpu = np.array(pn_gpu, dtype=object)
    pn_shape = np.array(pn_shape, dtype=object)
    pn_rpg, pn_ttft, pn_tbt, pn_n = np.array(pn_rpg), np.array(pn_ttft), np.array(pn_tbt), np.array(pn_n)

    def slack(c: _Class, slo: dict) -> tuple[np.ndarray, np.ndarray]:
        """(mask of the class's SLO-feasible rows at zero RTT, their network slack in ms)."""
        sel = (pn_model == c.model) & (pn_shape == c.shape) & (pn_tbt <= slo["tbt_ms"] + _TOL)
        s = slo["ttft_ms"] - pn_ttft
        if slo.get("e2e_ms") is not None:
            s = np.minimum(s, slo["e2e_ms"] - pn_ttft - (shape_out[c.shape] - 1) * pn_tbt)
        return sel & (s >= -_TOL), s

    notes: list[str] = []
    tmpl_by_name = {k.name: k for k in spec.classes}
    for c in cls_list:
        if c.jittered and not slack(c, c.slo)[0].any():
            c.slo = {key: _num(v) for key, v in tmpl_by_name[c.template].slo.model_dump(exclude_none=True).items()}
            notes.append(f"class {c.name} keeps the SLOs of {c.template} (jittered ones left no feasible profile)")

    # ---- regions
    dregions = {r.name: r for r in spec.regions}
    dorder = [r.name for r in spec.regions]
    prio = [n for n in REGION_PRIORITY if n in dregions] + [n for n in dorder if n not in REGION_PRIORITY]
    chosen = set(prio[:regions])
    reg_list = [_Region(n, n) for n in dorder if n in chosen]
    for j in range(max(0, regions - len(dorder))):
        src = dorder[j % len(dorder)]
        name = f"{src}-{j // len(dorder) + 2}"
        reg_list.append(_Region(name, src, shift=1 + int(_u(seed, "shift", name) * (DAY - 1)),
                                carbon_factor=_sig(_uniform(seed, 0.7, 1.3, "carbon", name), 4),
                                price_factor=_sig(_uniform(seed, 0.7, 1.3, "elec", name), 4)))
    for reg in reg_list:
        src = dregions[reg.source]
        clone = reg.name != reg.source
        if src.vms:  # the default rents VMs: the same VM types, their counts and prices varied in clones
            vm_of = {v.gpu: v for v in src.vms}
            for g, bg, *_ in gpu_list:
                if bg not in vm_of:
                    continue
                o = vm_of[bg]
                vm = o.model_dump(exclude_none=True)
                if clone or g != bg:
                    f = _uniform(seed, 0.85, 1.15, "price", reg.name, g)
                    count = max(1, round(o.count * _uniform(seed, 0.75, 1.25, "count", reg.name, g)))
                    vm |= {"gpu": g, "count": count, "price_usd_per_hour": _num(_sig(o.price_usd_per_hour * f, 5)),
                           "source": f"{o.source or o.name}; count and price varied by plan generate"}
                    if g != bg:
                        vm["name"] = f"{o.name}-{g}"
                    if o.spot_price_usd_per_hour is not None:
                        vm |= {"spot_price_usd_per_hour": _num(_sig(o.spot_price_usd_per_hour * f, 5)),
                               "spot_count": count}
                reg.vms.append(vm)
            continue
        offer = {g.type: g for g in src.gpus}
        for g, bg, *_ in gpu_list:
            if bg not in offer:
                continue
            o = offer[bg]
            if clone or g != bg:
                count = _round8(o.count * _uniform(seed, 0.75, 1.25, "count", reg.name, g))
                price = _sig(o.price_usd_per_gpu_hour * _uniform(seed, 0.85, 1.15, "price", reg.name, g), 5)
            else:
                count, price = o.count, o.price_usd_per_gpu_hour
            reg.gpus.append({"type": g, "count": int(count), "price_usd_per_gpu_hour": _num(price)})

    # ---- origins
    origin_docs = []  # residency: a clone may serve the origins its source may serve
    for o in spec.origins:
        doc = {"name": o.name,
               "rtt_ms": {r.name: _num(o.rtt_ms[r.source]) for r in reg_list if r.source in o.rtt_ms}}
        if o.allowed_regions is not None:
            doc["allowed_regions"] = [r.name for r in reg_list if r.source in o.allowed_regions]
        origin_docs.append(doc)

    # ---- time axis
    start = spec.horizon.start
    stamps = [(start + timedelta(hours=t)).strftime("%Y-%m-%dT%H:%M:%SZ") for t in range(slots)]
    hour = np.arange(slots) % DAY
    n_days = (slots + DAY - 1) // DAY
    day_f = np.array([_sig(_uniform(seed, *DAY_FACTOR, "demand-day", d), 4) for d in range(n_days)])

    # ---- carbon and electricity price
    bidx = {n: i for i, n in enumerate(base.regions)}
    csrc = _first_source(_read_csv(ddir / "carbon.csv"), ("region",))
    esrc_rows = _read_csv(ddir / "electricity_price.csv") if spec.electricity_price is not None else []
    esrc = _first_source(esrc_rows, ("region",))
    carbon_rows, price_rows = [], []
    for reg in reg_list:
        i = bidx[reg.source]
        hrs = (hour - reg.shift) % DAY  # shifted later by `shift` hours, circularly over the day
        extra = (f"; clone of {reg.source}, shifted +{reg.shift} h" if reg.name != reg.source else "")
        c = base.carbon[i, hrs] * reg.carbon_factor
        csr = f"{tag} {csrc.get((reg.source,), '')}{extra}" + (f", x{reg.carbon_factor:g}" if extra else "")
        carbon_rows += [[s, reg.name, _fmt(v), csr] for s, v in zip(stamps, c)]
        if base.elec_priced[i]:
            e = base.elec_price[i, hrs] * reg.price_factor
            esr = f"{tag} {esrc.get((reg.source,), '')}{extra}" + (f", x{reg.price_factor:g}" if extra else "")
            price_rows += [[s, reg.name, _fmt(v), esr] for s, v in zip(stamps, e)]

    # ---- demand: base rates (before the per-day factor) per class, origin, hour of day
    kidx = {n: i for i, n in enumerate(base.classes)}
    tot = base.demand.sum()
    share = {n: base.demand[i].sum() / tot for n, i in kidx.items()}
    denom = sum(share[c.template] for c in cls_list)
    O = len(spec.origins)
    K = len(cls_list)
    dbase = np.zeros((K, O, DAY))
    for ki, c in enumerate(cls_list):
        dbase[ki] = base.demand[kidx[c.template]] / denom * (regions / len(dorder))

    # capacity per GPU: best rps per GPU of (class, origin, source region, gpu type) within the SLOs, over
    # the configs whose replica fits in every region of the group. Regions derived from one source share
    # their RTTs, so they form one pool per GPU type in the capacity LP (an equivalent, smaller LP).
    srcs = sorted({r.source for r in reg_list}, key=dorder.index)
    gnames = [g[0] for g in gpu_list]
    avail = np.zeros((len(srcs), len(gnames)))
    fit = np.full((len(srcs), len(gnames)), np.inf)  # smallest count of the type in the group
    for reg in reg_list:
        for gd in reg.gpus:
            si, gi = srcs.index(reg.source), gnames.index(gd["type"])
            avail[si, gi] += gd["count"]
            fit[si, gi] = min(fit[si, gi], gd["count"])
        for vd in reg.vms:  # on demand (classes here never run on spot); a replica fits in one VM
            si, gi = srcs.index(reg.source), gnames.index(vd["gpu"])
            avail[si, gi] += vd["count"] * vd["gpus"]
            fit[si, gi] = min(fit[si, gi], vd["gpus"])
    mu = np.zeros((K, O, len(srcs), len(gnames)))
    for ki, c in enumerate(cls_list):
        ok, sl = slack(c, c.slo)
        for oi, o in enumerate(spec.origins):
            allowed = o.allowed_regions
            for si, s in enumerate(srcs):
                if s not in o.rtt_ms or (allowed is not None and s not in allowed):
                    continue
                rows_ok = ok & (sl >= o.rtt_ms[s] - _TOL)
                for gi, g in enumerate(gnames):
                    sel = rows_ok & (pn_gpu == g) & (pn_n <= fit[si, gi])
                    if sel.any():
                        mu[ki, oi, si, gi] = util * pn_rpg[sel].max()
    reach = (mu * (avail[None, None] > 0)).sum(axis=(2, 3)) > 0  # [K, O]
    dropped = [(cls_list[k].name, spec.origins[o].name) for k, o in zip(*np.nonzero(~reach & (dbase.sum(2) > 0)))]
    dbase[~reach] = 0.0
    for k, o in dropped:
        notes.append(f"no region can serve class {k} from origin {o} within its SLOs: that demand is dropped")

    hours_used = sorted(set(hour.tolist()))
    load0 = _peak_load(dbase[:, :, hours_used], mu, avail)
    scale = 1.0
    if load0 > TARGET_LOAD:
        scale = TARGET_LOAD / load0
        notes.append(f"demand scaled down by x{scale:.4g} (peak fractional load {load0:.3g} -> {TARGET_LOAD:g} "
                     f"before the per-day factor) to keep it under 50% of the SLO-feasible fleet capacity")
    peak = load0 * scale * float(day_f.max())
    dsrc = _first_source(_read_csv(ddir / "demand.csv"), ("class", "origin"))
    demand_rows = []
    for ki, c in enumerate(cls_list):
        for oi, o in enumerate(spec.origins):
            if not reach[ki, oi] or not dbase[ki, oi].any():
                continue
            vals = dbase[ki, oi, hour] * scale * day_f[np.arange(slots) // DAY]
            src = f"{tag} {dsrc.get((c.template, o.name), '')}"
            if c.name != c.template:
                src += f"; copy of {c.template}"
            demand_rows += [[s, c.name, o.name, _fmt(v)] + [src] for s, v in zip(stamps, vals)]

    if not demand_rows:  # pragma: no cover - chat classes from eu to eu-central are always servable
        raise RuntimeError("plan generate: no (class, origin) pair can be served within its SLOs")

    # ---- document
    n_clones = max(0, regions - len(dorder))
    desc = (
        f"Synthetic scenario written by `plan generate` (seed {seed}) from the embedded default "
        f"({spec.name}; see data/README.md for every source): {regions} regions "
        f"({len(reg_list) - n_clones} default, {n_clones} clone{'s' if n_clones != 1 else ''} with time-shifted, scaled "
        f"carbon and price series), "
        f"{slots} hourly slots (the default day tiled), {n_gpus} GPU types, {n_models} models, {n_classes} classes, "
        f"{O} origins. Demand: the default's diurnal demand x {regions}/{len(dorder)} x a per-day factor in "
        f"[{DAY_FACTOR[0]:g}, {DAY_FACTOR[1]:g}], class mix as in the default. Peak demand is at most "
        f"{100 * peak:.1f}% of the SLO- and residency-feasible fractional fleet capacity at max_utilization "
        f"{util:g}." + "".join(f" Note: {n}." for n in notes)
    )
    doc = {
        "schema_version": 1,
        "name": f"synthetic-r{regions}-s{slots}-g{n_gpus}-m{n_models}-k{n_classes}-seed{seed}",
        "description": desc,
        "horizon": {"start": start.strftime("%Y-%m-%dT%H:%M:%SZ"), "slot_minutes": 60, "slots": slots},
        "gpu_types": [{"name": g, **({"memory_gb": _num(mem)} if mem is not None else {})} for g, _, _, _, mem in gpu_list],
        "models": [{"name": m, **({"params_billion": _num(p)} if p is not None else {})} for m, _, p in model_list],
        "shapes": [s.model_dump(exclude_none=True) for s in shape_list],
        "classes": [{"name": c.name, "model": c.model, "shape": c.shape, "slo": c.slo} for c in cls_list],
        "regions": [
            {"name": r.name, "pue": _num(dregions[r.source].pue),
             "location": (dregions[r.source].location or r.source) if r.name == r.source
             else f"synthetic clone of {r.source} ({dregions[r.source].location or r.source})",
             **({"vms": r.vms} if r.vms else {"gpus": r.gpus})}
            for r in reg_list
        ],
        "origins": origin_docs,
        "profiles": "profiles.csv",
        "carbon_intensity": "carbon.csv",
        "demand": "demand.csv",
        **({"electricity_price": "electricity_price.csv"} if price_rows else {}),
        "options": {"objective": spec.options.objective.value, "max_utilization": util},
    }
    import yaml

    head = (f"# Synthetic scenario written by `plan generate` (seed={seed}) from the embedded default scenario.\n"
            f"# Regenerate instead of editing: plan generate OUT --regions {regions} --slots {slots} --gpus {n_gpus} "
            f"--models {n_models} --classes {n_classes} --seed {seed}\n")
    texts = {
        "scenario.yaml": head + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=110,
                                               allow_unicode=True),
        "profiles.csv": _csv(prof_cols, prof_rows),
        "carbon.csv": _csv(["timestamp", "region", "gco2_per_kwh", "source"], carbon_rows),
        "demand.csv": _csv(["timestamp", "class", "origin", "rate_rps", "source"], demand_rows),
    }
    if price_rows:
        texts["electricity_price.csv"] = _csv(["timestamp", "region", "usd_per_mwh", "source"], price_rows)
    else:  # pragma: no cover - the default is priced
        texts["electricity_price.csv"] = "timestamp,region,usd_per_mwh,source\n"
    for shp in shape_list:  # the shapes' length distributions, copied from the default
        if isinstance(shp.distribution, str):
            texts[shp.distribution] = (ddir / shp.distribution).read_text(encoding="utf-8")
    return texts


def _peak_load(d: np.ndarray, mu: np.ndarray, avail: np.ndarray) -> float:
    """Peak fractional load over the hours: 1 / (largest lambda such that lambda x demand is servable).

    ``d[K, O, H]`` demand, ``mu[K, O, S, G]`` servable req/s per GPU, ``avail[S, G]`` GPUs. In every
    hour, GPUs y[k, o, s, g] >= 0 with sum over (k, o) <= avail[s, g] must give each (k, o) a capacity
    sum mu y >= lambda d. One LP over all hours with a common lambda gives the minimum over hours.
    """
    import highspy

    K, O, H = d.shape
    S, G = avail.shape
    if not (d > 0).any():
        return 0.0
    pairs = [(k, o) for k in range(K) for o in range(O) if (d[k, o] > 0).any()]
    cols_lo, cols_hi, cost = [0.0], [highspy.kHighsInf], [-1.0]  # column 0: lambda
    rows_lo, rows_hi = [], []
    entries: list[tuple[int, int, float]] = []  # (row, col, value)
    ncol = 1
    for h in range(H):
        cap_row = {}
        for s in range(S):
            for g in range(G):
                if avail[s, g] > 0:
                    cap_row[(s, g)] = len(rows_lo)
                    rows_lo.append(-highspy.kHighsInf)
                    rows_hi.append(float(avail[s, g]))
        for k, o in pairs:
            if d[k, o, h] <= 0:
                continue
            r = len(rows_lo)
            rows_lo.append(0.0)
            rows_hi.append(highspy.kHighsInf)
            entries.append((r, 0, -float(d[k, o, h])))
            for (s, g), cr in cap_row.items():
                m = mu[k, o, s, g]
                if m > 0:
                    entries.append((cr, ncol, 1.0))
                    entries.append((r, ncol, float(m)))
                    cols_lo.append(0.0)
                    cols_hi.append(highspy.kHighsInf)
                    cost.append(0.0)
                    ncol += 1
    ent = np.array(entries, dtype=float).reshape(-1, 3)
    order = np.lexsort((ent[:, 0], ent[:, 1]))
    ent = ent[order]
    colidx = ent[:, 1].astype(np.int64)
    a_start = np.searchsorted(colidx, np.arange(ncol + 1)).astype(np.int32)
    a_index = ent[:, 0].astype(np.int32)
    a_value = ent[:, 2]
    lp = highspy.HighsLp()
    lp.num_col_ = ncol
    lp.num_row_ = len(rows_lo)
    lp.col_cost_ = np.array(cost)
    lp.col_lower_ = np.array(cols_lo)
    lp.col_upper_ = np.array(cols_hi)
    lp.row_lower_ = np.array(rows_lo)
    lp.row_upper_ = np.array(rows_hi)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = a_start
    lp.a_matrix_.index_ = a_index
    lp.a_matrix_.value_ = a_value

    h = new_highs()
    h.passModel(lp)
    run_highs(h, threads=1)
    status = h.getModelStatus()
    if status == highspy.HighsModelStatus.kUnbounded:
        return 0.0
    if status != highspy.HighsModelStatus.kOptimal:  # pragma: no cover
        raise RuntimeError(f"capacity LP: HiGHS status {h.modelStatusToString(status)}")
    lam = float(h.getSolution().col_value[0])
    return math.inf if lam <= 0 else 1.0 / lam

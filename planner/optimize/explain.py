"""Explaining infeasibility in domain words.

Three layers, cheapest first:

1. **Static** (:func:`explain_unroutable`): demand with no route at all: no allowed region, no
   profiled config, every config misses the TBT/TTFT SLO, RTT too long, GPU type not offered or
   not available in the slot. Found while building the sets, before any solve.
2. **Elastic** (:func:`explain_infeasible`): the model is solved with each group of constraints
   relaxed in turn: (a) demand may go unserved: the largest servable rate shows where GPUs,
   availability, residency and latency fall short; (b) with all demand served and no budget,
   the cheapest plan's cost (or its proven lower bound) against the budget; (c) with the budget,
   the lowest carbon against the carbon cap.
3. **IIS** fallback: HiGHS's irreducible infeasible subsystem of the LP relaxation, its rows mapped
   to constraint families.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from formulations import build, build_sets
from formulations.sets import config_class_pairs
from planner.errors import InfeasibleError, bullet_list
from planner.highs_runtime import run_highs
from planner.optimize.backends import SolveOptions, get_backend
from planner.optimize.backends.base import call_interruptibly
from planner.optimize.backends.highs import HighsBackend
from planner.scenario.schema import RATE_RESOLUTION


@dataclass
class Finding:
    families: list[str]
    """Constraint families in conflict (names as in docs/formulation.md)."""
    message: str
    data: dict = field(default_factory=dict)


@dataclass
class Explanation:
    summary: str
    findings: list[Finding]
    method: str
    """static | elastic | iis | unknown"""

    def render(self, limit: int = 12) -> str:
        items = [f"{f.message}  [{', '.join(f.families)}]" for f in self.findings]
        return bullet_list(f"infeasible: {self.summary}", items, limit, " (see --explain JSON)")

    def to_dict(self) -> dict:
        return {"summary": self.summary, "method": self.method,
                "findings": [{"families": f.families, "message": f.message, "data": f.data} for f in self.findings]}


def _slot_label(sc, t: int) -> str:
    return sc.slot_starts[t].strftime("%Y-%m-%d %H:%M")


def _slots_text(sc, ts: list[int]) -> str:
    ts = sorted(ts)
    if len(ts) == 1:
        return f"slot {_slot_label(sc, ts[0])}"
    return f"{len(ts)} slots ({_slot_label(sc, ts[0])} to {_slot_label(sc, ts[-1])})"


# ------------------------------------------------------------------------------------------ static


def explain_unroutable(md) -> Explanation:
    """Why some (class, origin) demand has no route at all."""
    sc = md.scenario
    cfg_all, pairs_all, _ = config_class_pairs(sc)
    findings = []
    un = md.unroutable
    for (k, o), grp in un.groupby(["k", "o"], sort=True):
        cls = sc.spec.classes[k]
        kname, oname = sc.classes[k], sc.origins[o]
        ts = list(grp["t"])
        head = f"class {kname} from {oname} needs up to {grp['ub'].max():.4g} req/s in {_slots_text(sc, ts)}"
        prof = sc.profiles
        rows = prof[(prof["model"] == cls.model) & (prof["shape"] == cls.shape)]
        data = {"class": kname, "origin": oname, "slots": [int(t) for t in ts], "max_rate_rps": float(grp["ub"].max())}
        if rows.empty:
            findings.append(Finding(["profiles"], f"{head} but the profile table has no row for model "
                                    f"{cls.model} with shape {cls.shape}", data))
            continue

        if (rows["max_rps"] < RATE_RESOLUTION).all():
            findings.append(Finding(["profiles"], f"{head} but every profile row for model {cls.model} with shape "
                                    f"{cls.shape} serves less than {RATE_RESOLUTION:g} req/s per replica (at most "
                                    f"{rows['max_rps'].max():.3g}): below the planner's resolution, treated as "
                                    "unable to serve", data))
            continue
        rows = rows[rows["max_rps"] >= RATE_RESOLUTION]
        if (rows["tbt_ms"] > cls.slo.tbt_ms).all():
            best = rows.loc[rows["tbt_ms"].idxmin()]
            findings.append(Finding(["latency_tbt"], f"{head} but no config meets its TBT SLO of "
                                    f"{cls.slo.tbt_ms:g} ms (best: {best['tbt_ms']:g} ms on {best['gpu']} "
                                    f"tp{best['tp']} pp{best['pp']} at {best['freq_mhz']:g} MHz)", data))
            continue
        pk = pairs_all[pairs_all["k"] == k]
        if pk.empty:
            ok = rows[rows["tbt_ms"] <= cls.slo.tbt_ms]
            best = ok.loc[ok["ttft_ms"].idxmin()]
            findings.append(Finding(["latency_ttft"], f"{head} but no config meets its TTFT SLO of "
                                    f"{cls.slo.ttft_ms:g} ms{' / e2e SLO' if cls.slo.e2e_ms else ''} even with zero "
                                    f"network RTT (best TTFT {best['ttft_ms']:g} ms on {best['gpu']})", data))
            continue
        reasons = []
        fams = set()
        allowed = [r for r in range(len(sc.regions)) if sc.allowed[o, r]]
        if not allowed:
            findings.append(Finding(["data_residency"], f"{head} but origin {oname} may not be served in any region", data))
            continue
        kc = pk.merge(cfg_all[["c", "g", "gpus", "gpu", "tp", "pp", "freq_mhz"]], on="c")
        for r in range(len(sc.regions)):
            rname = sc.regions[r]
            if not sc.allowed[o, r]:
                reasons.append(f"{rname}: not allowed for {oname}")
                fams.add("data_residency")
                continue
            offered = ~np.isnan(sc.gpu_price[r, kc["g"].to_numpy()])
            if not offered.any():
                reasons.append(f"{rname}: offers none of the GPU types that can serve {kname} "
                               f"({', '.join(sorted(set(kc['gpu'])))})")
                fams.add("gpu_availability")
                continue
            kr = kc[offered]
            rtt = sc.rtt[o, r]
            if (kr["slack_ms"] < rtt - 1e-9).all():
                best = kr.loc[kr["ttft_ms"].idxmin()]
                reasons.append(f"{rname}: RTT {rtt:g} ms + lowest TTFT {best['ttft_ms']:g} ms "
                               f"({best['gpu']} tp{best['tp']}) exceeds the SLO of {cls.slo.ttft_ms:g} ms"
                               + (" (or the e2e SLO)" if cls.slo.e2e_ms else ""))
                fams.add("latency_ttft")
                continue
            kr = kr[kr["slack_ms"] >= rtt - 1e-9]
            av = sc.availability[r][kr["g"].to_numpy()][:, ts]  # [configs, slots]
            if (av < kr["gpus"].to_numpy()[:, None]).all():
                reasons.append(f"{rname}: no {'/'.join(sorted(set(kr['gpu'])))} GPUs available in those slots "
                               f"(a replica needs {int(kr['gpus'].min())})")
                fams.add("gpu_availability")
                continue
            reasons.append(f"{rname}: usable in some slots only")
        fams = sorted(fams | {"demand_served"})
        findings.append(Finding(fams, f"{head} but no region can serve it: " + "; ".join(reasons), data))
    n = len(findings)
    return Explanation(f"{n} (class, origin) demand stream{'s' if n != 1 else ''} cannot be routed to any region "
                       "within SLOs, data residency and GPU offer", findings, "static")


# ----------------------------------------------------------------------------------------- bounds


def lp_minimum(md, expression: str, threads: int | None = None) -> float | None:
    """The least value of ``expression`` (cost_usd, carbon_kg, ...) over every plan serving the demand
    (budget and carbon cap left out), in the LP relaxation: a proven lower bound, in about a second."""
    import highspy

    lm, _ = build(md, coupling=False)
    if lm.ncols == 0:
        return 0.0
    be = HighsBackend(lm, lm.expressions[expression])
    h = be.native
    n = lm.ncols
    h.changeColsIntegrality(n, np.arange(n, dtype=np.int32), np.array([highspy.HighsVarType.kContinuous] * n))

    call_interruptibly(lambda o: run_highs(h, threads, o.cancel), SolveOptions())  # signals act at once
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None
    return float(h.getInfo().objective_function_value)


def refuse_impossible_limits(sc, md, threads: int | None = None) -> None:
    """Raise InfeasibleError at once when the budget or carbon cap lies below a proven lower bound
    (the LP relaxation's least cost or carbon with all demand served); nothing else is solved."""
    checks = (("budget", "budget_usd", "cost_usd", "USD", "the budget is below the least any plan can cost",
               "serving all demand costs at least {low:,.2f} USD over the horizon (LP relaxation: a proven lower "
               "bound) but the budget is {lim:,.2f} USD"),
              ("carbon_cap", "carbon_cap_kg", "carbon_kg", "kgCO2e", "the carbon cap is below the least any plan emits",
               "serving all demand emits at least {low:,.3f} kgCO2e over the horizon (LP relaxation: a proven lower "
               "bound) but the cap is {lim:,.3f} kgCO2e"))
    if sc.options.unserved.allowed:
        return  # leaving demand unserved meets any limit
    for fam, opt, expr, unit, summary, text in checks:
        lim = getattr(sc.options, opt)
        if lim is None:
            continue
        low = lp_minimum(md, expr, threads)
        if low is not None and low > lim * (1 + 1e-9) + 1e-6:
            raise InfeasibleError(Explanation(summary, [Finding([fam, "demand_served"], text.format(low=low, lim=lim),
                                                                {f"min_{expr}": _round_sig(low), opt: lim})], "bound"))


def _round_sig(v: float, digits: int = 6) -> float:
    """Solver noise off a reported figure: 6 significant digits, and 0 for |v| below 1e-9."""
    if v is None or not np.isfinite(v):
        return v
    if abs(v) < 1e-9:
        return 0.0
    return float(f"{v:.{digits}g}")


# ----------------------------------------------------------------------------------------- elastic


def _solve_vec(sc, objective_vec_fn, opts):
    """Build the model for ``sc`` and minimise ``objective_vec_fn(lm)`` with HiGHS; returns (md, lm, v, result)."""
    md = build_sets(sc)
    lm, v = build(md)
    be = get_backend("highs")(lm, objective_vec_fn(lm))
    return md, lm, v, be.solve(opts)


def explain_infeasible(sc, opts) -> Explanation:
    """Find which constraint families conflict, by elastic relaxation (then IIS as a fallback)."""
    # each diagnostic solve is bounded: an explanation must come in reasonable time
    limit = min(opts.time_limit, 60.0) if opts.time_limit is not None else 60.0
    o = SolveOptions(limit, max(opts.mip_gap, 1e-3), opts.threads, opts.seed, cancel=opts.cancel)
    # (a) capacity: maximise served demand without budget or carbon cap
    sa = sc.replace_options(unserved={"allowed": True, "penalty_per_request": 1.0}, budget_usd=None,
                            carbon_cap_kg=None)
    md, lm, v, res = _solve_vec(sa, lambda lm: lm.expressions["unserved_requests"], o)
    if res.has_solution:
        x = res.x
        u = v.u.assign(val=x[v.u["col"].to_numpy()])
        u = u[u["val"] > 1e-6 * np.maximum(1.0, sa.demand[u["k"], u["o"], u["t"]])]
        if len(u):
            return _capacity_findings(sa, md, lm, v, x, u)
    # (b) budget
    B = sc.options.budget_usd
    if B is not None:
        sb = sc.replace_options(budget_usd=None, carbon_cap_kg=None)
        md, lm, v, res = _solve_vec(sb, lambda lm: lm.expressions["cost_usd"], o)
        if res.has_solution or res.bound is not None:
            low = res.bound if res.bound is not None else res.objective
            if low is not None and low > B * (1 + 1e-9) + 1e-9:
                gpu = float(lm.expressions["gpu_cost_usd"] @ res.x) if res.has_solution else None
                el = float(lm.expressions["electricity_cost_usd"] @ res.x) if res.has_solution else None
                msg = f"serving all demand costs at least {low:,.2f} USD over the horizon but the budget is {B:,.2f} USD"
                if gpu is not None:
                    msg += f" (cheapest plan found: {res.objective:,.2f} USD = GPU rental {gpu:,.2f} + electricity {el:,.2f})"
                return Explanation("the budget is too small to serve all demand",
                                   [Finding(["budget", "demand_served"], msg,
                                            {"min_cost_usd": low, "budget_usd": B})], "elastic")
    # (c) carbon cap (with the budget in force)
    cap = sc.options.carbon_cap_kg
    if cap is not None:
        sc2 = sc.replace_options(carbon_cap_kg=None)
        md, lm, v, res = _solve_vec(sc2, lambda lm: lm.expressions["carbon_kg"], o)
        low = res.bound if res.bound is not None else res.objective
        if low is not None and low > cap * (1 + 1e-9) + 1e-9:
            fams = ["carbon_cap", "demand_served"] + (["budget"] if B is not None else [])
            within = f" within the budget of {B:,.2f} USD" if B is not None else ""
            return Explanation("the carbon cap is too tight", [Finding(
                fams, f"serving all demand{within} emits at least {low:,.3f} kgCO2e but the cap is {cap:,.3f} kgCO2e",
                {"min_carbon_kg": low, "carbon_cap_kg": cap})], "elastic")
    return _iis(sc, o)


def _rate(v: float) -> str:
    """A rate for a message: solver noise (below 1e-6 req/s) shown as 0."""
    return "0" if abs(v) < 1e-6 else f"{v:.4g}"


def _capacity_findings(sc, md, lm, v, x, u) -> Explanation:
    """One finding per (class, origin) short of capacity, naming the slots it falls short in and the
    worst of them (each problem is stated once, whatever the number of slots)."""
    findings = []
    # GPU types with a config that can serve each class
    class_gpus = md.pairs[["c", "k"]].merge(md.configs[["c", "g"]], on="c").groupby("k")["g"].unique()
    u = u.assign(D=sc.demand[u["k"].to_numpy(), u["o"].to_numpy(), u["t"].to_numpy()])
    u = u.assign(served=np.maximum(u["D"] - u["val"], 0.0))
    for (k, o), grp in u.groupby(["k", "o"], sort=True):
        grp = grp.sort_values("t")
        worst = grp.loc[grp["val"].idxmax()]
        t = int(worst["t"])
        D, served = float(worst["D"]), float(worst["served"])
        regs = sorted(set(md.routes[(md.routes["k"] == k) & (md.routes["o"] == o)]["r"]))
        gpus = sorted(class_gpus.get(k, []))
        parts = []
        for r in regs:
            av = ", ".join(f"{sc.gpus[g]}: {int(sc.availability[r, g, t])}" for g in gpus
                           if not np.isnan(sc.gpu_price[r, g]))
            parts.append(f"{sc.regions[r]} ({av or 'no suitable GPUs'})")
        fams = ["demand_served", "replica_capacity", "gpu_availability"]
        restricted = not sc.allowed[o].all()
        if restricted:
            fams.append("data_residency")
        if len(regs) < int(sc.allowed[o].sum()):
            fams.append("latency_nesting")
        where = ", ".join(parts) if parts else "none"
        n = len(grp)
        name = f"class {sc.classes[k]} from {sc.origins[o]}"
        head = (f"{name} needs {_rate(D)} req/s in slot {_slot_label(sc, t)}" if n == 1 else
                f"{name} is short of capacity in {_slots_text(sc, [int(q) for q in grp['t']])}; at worst it needs "
                f"{_rate(D)} req/s in slot {_slot_label(sc, t)}")
        findings.append(Finding(
            fams,
            f"{head} but "
            f"the GPUs available in the regions that can serve it within its SLOs{' and residency' if restricted else ''} "
            f"serve at most {_rate(served)} req/s alongside the other demand (regions and GPUs available in that "
            f"slot: {where})",
            {"class": sc.classes[k], "origin": sc.origins[o], "slot": t, "demand_rps": _round_sig(D),
             "servable_rps": _round_sig(served if served >= 1e-6 else 0.0),
             "slots": [{"slot": int(r.t), "demand_rps": _round_sig(float(r.D)),
                        "servable_rps": _round_sig(float(r.served) if r.served >= 1e-6 else 0.0)}
                       for r in grp.itertuples(index=False)],
             "regions": [sc.regions[r] for r in regs]},
        ))
    tot = float(u["val"].sum())
    slots = sorted(set(int(t) for t in u["t"]))
    return Explanation(
        f"demand exceeds what the available GPUs can serve within SLOs in {_slots_text(sc, slots)}; "
        f"at best {_rate(tot)} req/s (summed over those slots) stays unserved",
        findings, "elastic")


def _iis(sc, o) -> Explanation:
    """Fallback: HiGHS's IIS of the LP relaxation, rows mapped to families."""
    try:
        import highspy

        md = build_sets(sc)
        lm, v = build(md)
        be = HighsBackend(lm, np.zeros(lm.ncols))
        h = be.native
        n = lm.ncols
        h.changeColsIntegrality(n, np.arange(n, dtype=np.int32),
                                np.array([highspy.HighsVarType.kContinuous] * n))

        run_highs(h)
        st, iis = h.getIis()
        rows = list(getattr(iis, "row_index_", []) or [])
        fams: dict[str, list[str]] = {}
        for r in rows:
            blk, j = lm.row_family(int(r))
            fams.setdefault(blk.name, []).append(lm.index_label(blk.dims, blk.index[j]))
        if fams:
            findings = [Finding([f], f"{f}: {len(ix)} row(s) in conflict, e.g. {', '.join(ix[:3])}", {"rows": ix})
                        for f, ix in sorted(fams.items())]
            return Explanation("the LP relaxation is infeasible; HiGHS's IIS involves: " + ", ".join(sorted(fams)),
                               findings, "iis")
    except Exception as e:  # pragma: no cover - diagnostic fallback
        return Explanation(f"no explanation could be derived ({type(e).__name__})", [], "unknown")
    return Explanation("no integer plan exists although every relaxation above is feasible "
                       "(the conflict comes from whole replicas: try a smaller slot demand or more GPUs)", [], "unknown")

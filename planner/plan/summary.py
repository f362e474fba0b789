"""Human-readable plan summaries (rich tables), used by ``plan solve`` and ``plan show``."""

from __future__ import annotations

from collections import defaultdict

from rich.console import Console, Group
from rich.table import Table

from planner.plan.schema import Plan


def _fmt(v: float | None, digits: int = 4) -> str:
    if v is None:
        return "-"
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}g}"


def plan_summary(plan: Plan, slot: int | None = None) -> Group:
    """Headline figures, per-region fleet and (optionally) one slot's deployments and routing."""
    t = plan.totals
    s = plan.solver
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    head.add_row("scenario", f"{plan.scenario.name}  (sha256 {plan.scenario.fingerprint[:12]})")
    obj = plan.objective
    head.add_row("objective", f"{obj.name} = {_fmt(obj.value, 6)} {obj.unit} ({plan.status})"
                 + (f", tie-break {obj.secondary} = {_fmt(obj.secondary_value, 6)}" if obj.secondary else ""))
    head.add_row("totals", f"carbon {_fmt(t.carbon_kg)} kgCO2e | energy {_fmt(t.energy_kwh)} kWh | cost "
                 f"{_fmt(t.cost_usd)} USD (GPU {_fmt(t.gpu_cost_usd)}, electricity {_fmt(t.electricity_cost_usd)}) | "
                 f"{_fmt(t.gpu_hours)} GPU-h")
    head.add_row("demand", f"{_fmt(t.served_requests)} requests served, {_fmt(t.unserved_requests)} unserved")
    gap = "-" if s.gap is None else f"{s.gap:.2e}"
    head.add_row("solver", f"{s.backend}: {s.status}, gap {gap}, {s.variables} vars ({s.integer_variables} integer), "
                 f"{s.constraints} rows, build {s.build_seconds:.2f} s, solve {s.solve_seconds:.2f} s")
    p = plan.pruning
    head.add_row("pruning", f"{p.configs_total} configs: {p.pruned_slo} miss every SLO, {p.pruned_dominated} dominated, "
                 f"{p.kept} kept")
    hr: dict[str, list] = defaultdict(list)
    for sl in plan.slots:
        for h in sl.headroom:
            hr[h.class_].append(h)
    if hr:
        parts = []
        for cls, hs in hr.items():
            bf = [h.burst_factor for h in hs]
            sg = [h.surge for h in hs if h.surge is not None]
            burst = f"burst x{min(bf):.2f}" + (f"-{max(bf):.2f}" if max(bf) > min(bf) + 5e-3 else "")
            parts.append(f"{cls} {burst}" + (f", surge x{min(sg):.2f}" if sg else ""))
        head.add_row("headroom", "; ".join(parts) + " (burst: each req/s counted that many times; surge: demand "
                     "growth until a deployment reaches its profiled capacity, lowest slot)")
    if t.replicas_started is not None:
        n_act = sum(len(sl.actions or []) for sl in plan.slots)
        head.add_row("scaling", f"{t.replicas_started} replicas started, {t.replicas_stopped} stopped in {n_act} "
                     f"action(s); {_fmt(t.scaling_gpu_hours)} GPU-h starting up"
                     + (f"; {t.vms_started} VMs started" if t.vms_started is not None else ""))
    if t.vm_hours is not None:
        spot = 100.0 * (t.spot_gpu_hours or 0.0) / t.gpu_hours if t.gpu_hours else 0.0
        head.add_row("VMs", f"{_fmt(t.vm_hours)} VM-hours, {spot:.1f} % of GPU-hours on spot"
                     + (f", {_fmt(t.spot_restart_gpu_hours)} GPU-h expected lost to reclaims"
                        if t.spot_restart_gpu_hours else ""))
    if plan.options.capacity_factors:
        head.add_row("derated", f"{len(plan.options.capacity_factors)} (config, class) capacity factor(s), "
                     f"lowest {min(f.factor for f in plan.options.capacity_factors):.3g}")
    v = plan.verification
    if v is not None:
        last = v.rounds[-1]
        worst = f"worst {last.worst} {100 * last.worst_attainment:.2f} %" if last.worst else ""
        head.add_row("verified", f"{'targets met' if v.met else 'targets NOT met'} after {len(v.rounds) - 1} re-solve(s): "
                     f"{100 * last.attainment:.2f} % of simulated requests within SLOs ({v.arrivals}, {v.policy}, "
                     f"{v.window_minutes:g} min per slot), {worst}")

    # per region: GPUs by type, min..max over slots, and energy/carbon
    gp = defaultdict(lambda: defaultdict(list))
    for sl in plan.slots:
        per = defaultdict(int)
        for d in sl.deployments:
            per[(d.region, d.gpu)] += d.gpus
        for (r, g), n in per.items():
            gp[r][g].append(n)
    regions = Table(title="fleet by region (GPUs in use: min-max over slots)", show_edge=False)
    regions.add_column("region")
    regions.add_column("GPUs")
    regions.add_column("configs (GPU-hours share)")
    cfgs = defaultdict(lambda: defaultdict(float))
    for sl in plan.slots:
        for d in sl.deployments:
            cfgs[d.region][f"{d.model} {d.gpu} tp{d.tp}pp{d.pp}@{d.freq_mhz:g}MHz"] += d.gpus
    for r in sorted(gp):
        gtxt = ", ".join(f"{g} {min(v + [0] * (len(plan.slots) - len(v)))}-{max(v)}" for g, v in sorted(gp[r].items()))
        tot = sum(cfgs[r].values()) or 1.0
        top = sorted(cfgs[r].items(), key=lambda kv: (-kv[1], kv[0]))
        ctxt = "; ".join(f"{k} {100 * v / tot:.0f}%" for k, v in top[:3])
        if len(top) > 3:
            ctxt += f"; +{len(top) - 3} more"
        regions.add_row(r, gtxt, ctxt)
    parts = [head, regions]
    if any(sl.actions for sl in plan.slots):
        at = Table(title="scaling actions (replicas started +, stopped -, per slot)", show_edge=False)
        for c in ("slot", "start", "actions", "VMs"):
            at.add_column(c)
        for sl in plan.slots:
            acts = "; ".join(f"{a.deployment} " + " ".join(x for x in (f"+{a.started}" if a.started else "",
                                                                      f"-{a.stopped}" if a.stopped else "") if x)
                             for a in sl.actions or [])
            vms = "; ".join(f"{q.region}/{q.vm}/{q.market} " + " ".join(
                x for x in (f"+{q.started}" if q.started else "", f"-{q.stopped}" if q.stopped else "") if x)
                for q in sl.vms or [] if q.started or q.stopped)
            if acts or vms:
                at.add_row(str(sl.index), sl.start, acts, vms)
        parts.append(at)
    if slot is not None:
        sl = plan.slots[slot]
        dt = Table(title=f"slot {sl.index} ({sl.start}) deployments", show_edge=False)
        for c in ("deployment", "replicas", "GPUs", "util", "power W", "classes (req/s)"):
            dt.add_column(c)
        for d in sl.deployments:
            dt.add_row(d.id, str(d.replicas), str(d.gpus), f"{d.utilization:.2f}", _fmt(d.power_w),
                       ", ".join(f"{c.class_} {_fmt(c.rate_rps)}" for c in d.classes))
        rt = Table(title=f"slot {sl.index} routing", show_edge=False)
        for c in ("class", "origin", "region", "req/s", "share", "RTT ms"):
            rt.add_column(c)
        for r in sl.routing:
            rt.add_row(r.class_, r.origin, r.region, _fmt(r.rate_rps), f"{r.share:.3f}", _fmt(r.rtt_ms))
        parts += [dt, rt]
        if sl.vms:
            vt = Table(title=f"slot {sl.index} VMs", show_edge=False)
            for c in ("region", "VM type", "market", "GPUs/VM", "VMs"):
                vt.add_column(c)
            for q in sl.vms:
                vt.add_row(q.region, q.vm, q.market, str(q.gpus_per_vm), str(q.count))
            parts.append(vt)
    return Group(*parts)


def print_summary(plan: Plan, console: Console, slot: int | None = None) -> None:
    console.print(plan_summary(plan, slot))

"""Index sets, parameters and pruning.

Everything the constraint families need, computed once from a validated scenario:

* deployment configs ``c = (model, gpu, tp, pp, freq)`` from the profile table, with their GPU
  count ``gpus_c = tp * pp`` and base power ``base_c`` (the load-independent power of a replica:
  the largest ``active_power_w`` among the config's rows, ``idle_power_w`` where that is empty);
* valid (config, class) pairs with throughput ``mu_ck`` (and usable capacity ``cap_ck``: ``mu_ck`` times
  the pair's capacity factor, 1 unless ``options.capacity_factors`` derates it), latencies, busy power and the marginal
  power per unit of load ``marg_ck = max(busy_ck - base_c, 0) / mu_ck``;
* the network budget ``slack_ck``: the largest RTT with which config c still meets class k's SLOs;
* per pair the residence ``resid_ck``: seconds one request keeps a lightly loaded replica working
  (for ``constraints.activity_power`` when some class states ``arrivals``);
* pruning of configs that can never meet an SLO and of dominated configs;
* the domains of the variables (which indices exist at all).

Domain restrictions are constraints too; each is stated in docs/formulation.md and made here:
``config_class_pairs`` (TBT and zero-RTT TTFT/e2e feasibility), ``prune_dominated``,
``placements`` (GPU type offered in the region), ``routes`` (data residency, RTT within the network
budget), ``replica_index``, ``assignment_index``, ``route_index``, ``unserved_index``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from planner.scenario.schema import RATE_RESOLUTION, slo_statistic, statistic_rank

TOL = 1e-9


class ModelInputError(ValueError):
    """The scenario asks for something no model can state (e.g. a replica minimum with no deployment
    that matches it); the planner turns it into an input error."""



@dataclass
class Pruning:
    configs_total: int = 0
    pruned_slo: int = 0
    """Configs that meet no class's TBT/TTFT/e2e SLO even with zero network RTT."""
    pruned_dominated: int = 0
    """Configs dominated by another of the same GPU type and GPU count."""
    kept: int = 0
    pairs_pruned_slo: int = 0
    """(config, class) pairs removed because the config misses that class's SLO (or serves below
    :data:`RATE_RESOLUTION`)."""
    warnings: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "warnings"}


@dataclass
class ModelData:
    """Sets and parameters of the MILP (all arrays use the scenario's orderings)."""

    scenario: object
    configs: pd.DataFrame
    """Kept configs: model, gpu, tp, pp, freq_mhz, gpus, base_w, idle_w, floor_w, m, g, key (unique label)."""
    pairs: pd.DataFrame
    """Valid (config c, class k) pairs: c, k, mu, cap, ttft_ms, tbt_ms, busy_w, slack_ms, marg_w, resid_s."""
    pruning: Pruning
    warnings: list = field(default_factory=list)
    """Things the model leaves out or treats specially, in words (copied into the plan)."""
    placements: pd.DataFrame = field(default=None)  # r, c
    routes: pd.DataFrame = field(default=None)  # k, o, r, rtt
    n_index: pd.DataFrame = field(default=None)  # r, c, t, ub
    x_index: pd.DataFrame = field(default=None)  # k, o, r, t, ub
    y_index: pd.DataFrame = field(default=None)  # k, r, c, t
    u_index: pd.DataFrame = field(default=None)  # k, o, t, ub
    initial: pd.DataFrame = field(default=None)  # r, c, n0: replicas before the horizon (options.scaling)
    startup_h: np.ndarray = field(default=None)  # [C] hours a new replica of c is paid before it serves
    supply: np.ndarray = field(default=None)  # [R, G, 2, T] GPUs available per market (0 on demand, 1 spot)
    vms: pd.DataFrame = field(default=None)  # VM offers (Scenario.vm_offers) + v, gpu_price, restart_h; None: no VMs
    spot_loss: np.ndarray = field(default=None)  # [R, C] expected share of time a spot replica is down
    initial_vms: pd.DataFrame = field(default=None)  # v, count: VMs running before the horizon
    unroutable: pd.DataFrame = field(default=None)  # k, o, t, demand with no route at all
    bases: pd.DataFrame = field(default=None)  # b, model, gpu, tp, pp, market, m, g, gpus, key, idle_w, startup_h

    @property
    def labels(self) -> dict[str, list[str]]:
        s = self.scenario
        return {
            "region": s.regions,
            "gpu": s.gpus,
            "model": s.models,
            "class": s.classes,
            "origin": s.origins,
            "config": list(self.configs["key"]),
            "base": [] if self.bases is None else list(self.bases["key"]),
            "slot": [str(t) for t in range(s.n_slots)],
            "level": [str(i) for i in range(64)],
            "vm": [] if self.vms is None else [f"{r}/{n}/{m}" for r, n, m in
                                                self.vms[["region", "name", "market"]].itertuples(index=False)],
            "limit": [str(i) for i in range(len(s.options.replica_limits))],
            "gpus": [str(i) for i in range(1025)],
        }


def config_key(model, gpu, tp, pp, freq) -> str:
    f = float(freq)
    fs = str(int(f)) if f == int(f) else f"{f:.10g}"
    return f"{model}|{gpu}|tp{int(tp)}|pp{int(pp)}|{fs}MHz"


def config_class_pairs(sc) -> tuple[pd.DataFrame, pd.DataFrame, Pruning]:
    """Configs and their valid (config, class) pairs.

    A pair (c, k) is valid when ``tbt_ck <= SLO_tbt(k)`` and the network budget
    ``slack_ck = min(SLO_ttft(k) - ttft_ck, SLO_e2e(k) - ttft_ck - (L_out(k) - 1) tbt_ck) >= 0``, and,
    when class k states a percentile, the row's statistic is at least as strict
    (``rank(statistic_c) >= rank(percentile_k)``, the mean ranking as p50): a row sized for mean
    latencies cannot promise a p99. A config with no valid pair is pruned (it meets no SLO even with zero RTT).

    Power of a replica of c at utilisation u_k of class k (rate / mu): the line from ``base_c`` at
    zero load to ``busy_ck`` at ``mu_ck``, ``base_c + sum_k marg_ck * rate_k``. ``base_c`` is the
    largest zero-load intercept among c's rows: ``active_power_w`` (a replica with any load runs
    engine steps back to back, so its power starts there, not at idle), or ``idle_power_w`` where a
    row has none. A row whose busy power is below ``base_c`` gets ``marg = 0`` (flat at ``base_c``).
    """
    prof = sc.profiles
    keycols = ["model", "gpu", "tp", "pp", "freq_mhz"]
    zero_load = prof["active_power_w"].fillna(prof["idle_power_w"])
    cfg = prof.assign(base_w=zero_load).groupby(keycols, sort=True, as_index=False).agg(
        base_w=("base_w", "max"), idle_w=("idle_power_w", "max"))
    # the power a replica draws whatever its load: base when replicas are taken as never idle,
    # idle when some class's arrivals are bursty (constraints.activity_power adds base - idle while it has work)
    cfg["floor_w"] = cfg["idle_w"] if sc.bursty else cfg["base_w"]
    cfg["gpus"] = (cfg["tp"] * cfg["pp"]).astype(np.int64)
    cfg["m"] = cfg["model"].map({n: i for i, n in enumerate(sc.models)}).astype(np.int64)
    cfg["g"] = cfg["gpu"].map({n: i for i, n in enumerate(sc.gpus)}).astype(np.int64)
    cfg["key"] = [config_key(*r) for r in cfg[keycols].itertuples(index=False)]
    cfg["c"] = np.arange(len(cfg))

    cls = pd.DataFrame(
        {
            "k": np.arange(len(sc.classes)),
            "model": [k.model for k in sc.spec.classes],
            "shape": [k.shape for k in sc.spec.classes],
            "slo_ttft": [k.slo.ttft_ms for k in sc.spec.classes],
            "slo_tbt": [k.slo.tbt_ms for k in sc.spec.classes],
            "slo_e2e": [k.slo.e2e_ms if k.slo.e2e_ms is not None else np.inf for k in sc.spec.classes],
            # the statistic the class states (0: none, any row's latencies are compared as they are)
            "slo_rank": [statistic_rank(st) if (st := slo_statistic(k.slo)) is not None else 0.0
                         for k in sc.spec.classes],
        }
    )
    out_tok = {s.name: s.output_tokens for s in sc.spec.shapes}
    cls["out_tokens"] = cls["shape"].map(out_tok)
    p = prof.merge(cls, on=["model", "shape"], how="inner").merge(cfg[keycols + ["c", "base_w"]], on=keycols)
    p["e2e"] = p["ttft_ms"] + (p["out_tokens"] - 1) * p["tbt_ms"]
    p["slack_ms"] = np.minimum(p["slo_ttft"] - p["ttft_ms"], p["slo_e2e"] - p["e2e"])
    ok = ((p["tbt_ms"] <= p["slo_tbt"] + TOL) & (p["slack_ms"] >= -TOL)
          & (p["statistic"].map(statistic_rank) >= p["slo_rank"] - TOL))
    pruning = Pruning(configs_total=len(cfg), pairs_pruned_slo=int((~ok).sum()))
    tiny = ok & (p["max_rps"] < RATE_RESOLUTION)
    warnings = []
    if tiny.any():
        rows = p[tiny].drop_duplicates(keycols + ["shape"])
        lab = [f"({r.model}, {r.gpu}, tp{r.tp}, pp{r.pp}, {r.freq_mhz:g} MHz, {r.shape}): max_rps {r.max_rps:.3g}"
               for r in rows.itertuples(index=False)]
        more = f" and {len(lab) - 5} more" if len(lab) > 5 else ""
        warnings.append(f"{len(lab)} profile row(s) serve less than {RATE_RESOLUTION:g} req/s per replica and are "
                        f"treated as unable to serve: {'; '.join(lab[:5])}{more}")
        pruning_tiny = int(tiny.sum())
    else:
        pruning_tiny = 0
    ok = ok & ~tiny
    p = p[ok].copy()
    p["slack_ms"] = p["slack_ms"].clip(lower=0.0)
    p = p.rename(columns={"max_rps": "mu", "busy_power_w": "busy_w"})
    # marginal power per unit of load: (busy - base) / mu  [W per req/s], never negative
    p["marg_w"] = (p["busy_w"] - p["base_w"]).clip(lower=0.0) / p["mu"]
    p["cap"] = p["mu"] * capacity_factors(sc, p)
    # seconds a request keeps a lightly loaded replica working: the row's service_ms, else an upper bound
    lbar = np.array([mean_output_tokens(sc, kk) for kk in range(len(sc.classes))])
    bound = p["ttft_ms"] + (lbar[p["k"].to_numpy()] - 1.0).clip(min=0.0) * p["tbt_ms"]
    p["resid_s"] = p["service_ms"].where(p["service_ms"].notna(), bound) / 1000.0
    pairs = p[["c", "k", "mu", "cap", "ttft_ms", "tbt_ms", "busy_w", "slack_ms", "marg_w", "resid_s"]].sort_values(
        ["c", "k"])
    pairs = pairs.reset_index(drop=True)
    used = np.unique(pairs["c"].to_numpy())
    pruning.pruned_slo = int(len(cfg) - len(used))
    cfg, pairs = split_pools(sc, cfg, pairs, pruning)
    pruning.pairs_pruned_slo += pruning_tiny
    pruning.warnings = warnings
    return cfg, pairs.reset_index(drop=True), pruning


def split_pools(sc, cfg: pd.DataFrame, pairs: pd.DataFrame, pruning: Pruning) -> tuple[pd.DataFrame, pd.DataFrame]:
    """With bursty classes, run light and saturated classes of one config on separate replicas.

    At the operating point ``replica_capacity`` allows, a replica of c carries ``U cap_ck / beta_k`` req/s
    of class k and holds ``m_ck = U cap_ck resid_ck / beta_k`` requests on average (``beta_k`` the class's
    mean burst factor over the slots with demand). Class k is *light* on c when ``m_ck < 1`` (its
    requests rarely share a replica: most replicas idle, kept for bursts) and *saturated* otherwise.
    A config with both kinds becomes two configs, pools ``light`` and ``saturated``, each serving its
    own kind (same GPUs, price and availability): ``constraints.activity_power`` is exact for a pool at
    its operating point, whereas a saturated class spread over a light class's idle replicas would keep
    more of them busy than its own operating point says. Without arrivals (or without mixed configs)
    nothing changes; every config gets ``pool`` ("" when not split) and its ``key`` a ``#pool`` suffix.
    """
    cfg = cfg.assign(pool="")
    if sc.bursty and len(pairs):
        lam = sc.demand.sum(axis=1)
        bbar = np.array([float(sc.burst[k, lam[k] > 0].mean()) if (lam[k] > 0).any() else 1.0
                         for k in range(len(sc.classes))])
        m = (sc.options.max_utilization * pairs["cap"].to_numpy(float) * pairs["resid_s"].to_numpy(float)
             / bbar[pairs["k"].to_numpy()])
        light = pd.Series(m < 1.0, index=pairs.index)
        kinds = light.groupby(pairs["c"]).agg(["any", "all"])
        mixed = kinds.index[kinds["any"] & ~kinds["all"]].to_numpy()
        if len(mixed):
            new = cfg[cfg["c"].isin(mixed)].copy()
            remap = {int(c): int(cfg["c"].max()) + 1 + i for i, c in enumerate(new["c"])}
            new["c"] = new["c"].map(remap)
            new["pool"] = "light"
            cfg.loc[cfg["c"].isin(mixed), "pool"] = "saturated"
            move = pairs["c"].isin(mixed).to_numpy() & light.to_numpy()
            pairs = pairs.copy()
            pairs.loc[move, "c"] = pairs.loc[move, "c"].map(remap)
            cfg = pd.concat([cfg, new], ignore_index=True)
            pruning.configs_total += len(new)   # a pool counts as a config of its own
            keycols = ["model", "gpu", "tp", "pp", "freq_mhz", "pool"]
            cfg = cfg.sort_values(keycols, kind="stable").reset_index(drop=True)
            pairs = pairs.sort_values(["c", "k"], kind="stable").reset_index(drop=True)
    cfg["key"] = [k + (f"#{p}" if p else "") for k, p in zip(cfg["key"], cfg["pool"])]
    return cfg, pairs


def capacity_factors(sc, p: pd.DataFrame) -> np.ndarray:
    """The factor ``f_ck`` of each (config, class) row of ``p`` from ``options.capacity_factors`` (1 where
    none is given): the usable capacity ``cap_ck = f_ck * mu_ck`` is what ``replica_capacity`` and the
    dominance test see; power per unit of load (``marg_ck``) stays the profiled one."""
    f = sc.capacity_factor_table()
    if f.empty or p.empty:
        return np.ones(len(p))
    keycols = ["model", "gpu", "tp", "pp", "fkey", "k"]
    f = f.assign(fkey=f["freq_mhz"].round(6)).drop(columns="freq_mhz")
    q = p[["model", "gpu", "tp", "pp", "k"]].assign(fkey=p["freq_mhz"].round(6).to_numpy())
    m = q.merge(f, on=keycols, how="left")
    return m["factor"].fillna(1.0).to_numpy(float)


def mean_output_tokens(sc, k: int) -> float:
    """Mean output tokens of class k: its shape's distribution's mean, or the shape's point."""
    kc = sc.spec.classes[k]
    dist = sc.shape_distribution(kc.shape)
    if dist is None:
        return float(next(s.output_tokens for s in sc.spec.shapes if s.name == kc.shape))
    return float((dist["output_tokens"] * dist["weight"]).sum())


def prune_dominated(cfg: pd.DataFrame, pairs: pd.DataFrame, pruning: Pruning,
                    bursty: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Drop configs dominated by another config of the same model, GPU type and GPU count.

    c' dominates c when, for every class k that c can serve, c' can serve k too with
    ``cap_c'k >= cap_ck`` (usable capacity: ``mu`` times any capacity factor), ``slack_c'k >= slack_ck``,
    ``marg_c'k <= marg_ck`` and (``bursty``) ``resid_c'k <= resid_ck``, and ``floor_c' <= floor_c``,
    ``base_c' <= base_c`` and (``bursty``) ``base_c' - floor_c' <= base_c - floor_c``: any load c carries,
    c' carries on no more replicas at no more power (``floor x replicas + sum (marg + act) x rate``,
    ``constraints.activity_power``), the same price and the same GPUs, within every SLO c meets. Exact
    ties keep the config that sorts first.
    """
    cfg = cfg[cfg["c"].isin(pairs["c"])]
    dropped: set[int] = set()
    piv = {col: pairs.pivot(index="c", columns="k", values=col)
           for col in ("cap", "slack_ms", "marg_w", "resid_s")}
    for _, grp in cfg.groupby(["m", "g", "gpus"], sort=True):
        cs = list(grp["c"])
        if len(cs) < 2:
            continue
        mu = piv["cap"].loc[cs].to_numpy()
        sl = piv["slack_ms"].loc[cs].to_numpy()
        mg = piv["marg_w"].loc[cs].to_numpy()
        gi = grp.set_index("c")
        base = gi.loc[cs, "base_w"].to_numpy()
        floor = gi.loc[cs, "floor_w"].to_numpy()
        rs = piv["resid_s"].loc[cs].to_numpy() if bursty else np.zeros_like(mu)
        gap = (base - floor).clip(min=0.0) if bursty else np.zeros_like(base)
        valid = ~np.isnan(mu)
        for i, ci in enumerate(cs):
            for j, cj in enumerate(cs):
                if i == j or cj in dropped:
                    continue
                vi, vj = valid[i], valid[j]
                if np.any(vi & ~vj):
                    continue
                m = vi
                if not (
                    base[j] <= base[i] + TOL
                    and np.all(mu[j, m] >= mu[i, m] - TOL)
                    and np.all(sl[j, m] >= sl[i, m] - TOL)
                    and np.all(mg[j, m] <= mg[i, m] + TOL)
                    and floor[j] <= floor[i] + TOL
                    and np.all(rs[j, m] <= rs[i, m] + TOL)
                    and gap[j] <= gap[i] + TOL
                ):
                    continue
                strictly = (
                    base[j] < base[i] - TOL
                    or np.any(mu[j, m] > mu[i, m] + TOL)
                    or np.any(sl[j, m] > sl[i, m] + TOL)
                    or np.any(mg[j, m] < mg[i, m] - TOL)
                    or floor[j] < floor[i] - TOL
                    or np.any(rs[j, m] < rs[i, m] - TOL)
                    or np.any(vj & ~vi)
                )
                if strictly or j < i:
                    dropped.add(ci)
                    break
    pruning.pruned_dominated = len(dropped)
    keep = ~cfg["c"].isin(dropped)
    cfg = cfg[keep]
    pairs = pairs[pairs["c"].isin(cfg["c"])]
    pruning.kept = len(cfg)
    return cfg.reset_index(drop=True), pairs.reset_index(drop=True)


def markets(sc, cfg: pd.DataFrame, pairs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Configs per market. Every config gets ``market`` 0 (on demand) and its ``item``: the GPUs that must
    share one VM (``tp x pp``, or ``tp`` when its model allows ``pipeline_across_vms``). When some region
    rents spot VMs of a config's GPU type, the config gets a spot twin (``market`` 1, key suffix
    ``|spot``) whose pairs are those of classes with ``spot: true``."""
    cfg = cfg.assign(market=0)
    across = {m.name: m.pipeline_across_vms for m in sc.spec.models}
    cfg["item"] = np.where(cfg["model"].map(across).fillna(False).astype(bool), cfg["tp"], cfg["gpus"]).astype(np.int64)
    vo = sc.vm_offers
    if vo is None or not (vo["market"] == "spot").any():
        return cfg, pairs
    spot_g = set(vo.loc[vo["market"] == "spot", "g"])
    ok_k = [k for k, kc in enumerate(sc.spec.classes) if kc.spot]
    twins = cfg[cfg["g"].isin(spot_g)]
    sp = pairs[pairs["c"].isin(twins["c"]) & pairs["k"].isin(ok_k)]
    twins = twins[twins["c"].isin(sp["c"])]
    if twins.empty:
        return cfg, pairs
    off = int(cfg["c"].max()) + 1
    key = twins["key"].str.replace(r"^(.*?)(#[a-z]+)?$", r"\1|spot\2", regex=True)  # before a pool's suffix
    tw = twins.assign(market=1, key=key, c=twins["c"] + off)
    cfg = pd.concat([cfg, tw], ignore_index=True)
    pairs = pd.concat([pairs, sp.assign(c=sp["c"] + off)], ignore_index=True)
    order = cfg.sort_values(["model", "gpu", "tp", "pp", "freq_mhz", "pool", "market"], kind="stable")["c"]
    return cfg.set_index("c").loc[order].reset_index(), pairs


def supply(sc) -> np.ndarray:
    """[R, G, 2, T] GPUs available per market: the per-GPU availability (on demand), or with VMs the
    GPUs of every offer's VMs."""
    R, G, T = sc.availability.shape
    out = np.zeros((R, G, 2, T))
    vo = sc.vm_offers
    if vo is None:
        out[:, :, 0, :] = sc.availability
        return out
    for row in vo.itertuples(index=False):
        out[row.r, row.g, 1 if row.market == "spot" else 0] += row.gpus * np.asarray(row.avail, float)
    return out


def vm_table(sc, md: "ModelData") -> pd.DataFrame | None:
    """The VM offers (``Scenario.vm_offers``) numbered ``v``, each with its price per GPU-hour and the hours
    a reclaimed spot VM's GPUs are down (``spot_restart_s``, else provisioning plus the longest loading)."""
    vo = sc.vm_offers
    if vo is None:
        return None
    vo = vo.reset_index(drop=True).assign(v=np.arange(len(vo)))
    vo["mk"] = (vo["market"] == "spot").astype(np.int64)
    vo["gpu_price"] = vo["price"] / vo["gpus"]
    vo["restart_h"] = vo["restart_s"].fillna(max((sc.spot_restart_seconds(m) for m in sc.models), default=0.0)) / 3600.0
    return vo


def spot_loss(sc, md: "ModelData") -> np.ndarray:
    """[R, C] expected share of time a replica of spot config c in region r is down: the largest
    ``spot_interruptions_per_hour x restart hours`` among the region's spot VMs of c's GPU type (restart:
    ``spot_restart_s``, else the config's model's startup time). 0 for on-demand configs."""
    R, C = len(sc.regions), len(md.configs)
    out = np.zeros((R, C))
    vo = md.vms
    if vo is None or C == 0 or not (vo["mk"] == 1).any():
        return out
    start = np.array([sc.spot_restart_seconds(m) for m in md.configs["model"]]) / 3600.0
    for row in vo[vo["mk"] == 1].itertuples(index=False):
        sel = ((md.configs["g"] == row.g) & (md.configs["market"] == 1)).to_numpy()
        rh = row.restart_s / 3600.0 if np.isfinite(row.restart_s) else start[sel]
        out[row.r, sel] = np.maximum(out[row.r, sel], np.minimum(row.rate * rh, 0.99))
    return out


def placements(sc, cfg: pd.DataFrame, sup: np.ndarray, vms: pd.DataFrame | None = None) -> pd.DataFrame:
    """(region r, config c) pairs where r offers c's GPU type on c's market with at least gpus_c GPUs in
    some slot, and (with VMs) some VM type of that GPU and market holds c's ``item`` GPUs (or the GPU is
    offered per GPU)."""
    maxav = sup.max(axis=3)  # [R, G, 2]
    R = len(sc.regions)
    rr = np.repeat(np.arange(R), len(cfg))
    cc = np.tile(cfg["c"].to_numpy(), R)
    gg = np.tile(cfg["g"].to_numpy(), R)
    mk = np.tile(cfg["market"].to_numpy(), R)
    need = np.tile(cfg["gpus"].to_numpy(), R)
    ok = maxav[rr, gg, mk] >= need
    if vms is None:
        ok &= ~np.isnan(sc.gpu_price[rr, gg])
    else:
        big = np.zeros((R, len(sc.gpus), 2))
        for row in vms.itertuples(index=False):
            big[row.r, row.g, row.mk] = max(big[row.r, row.g, row.mk], np.inf if row.flexible else row.gpus)
        ok &= big[rr, gg, mk] >= np.tile(cfg["item"].to_numpy(), R)
    return pd.DataFrame({"r": rr[ok], "c": cc[ok]})


def routes(sc, pairs: pd.DataFrame, place: pd.DataFrame) -> pd.DataFrame:
    """(class k, origin o, region r) routes: o may be served in r (data residency, RTT known),
    k has demand from o in some slot, and some config placeable in r serves k within
    the network budget: ``rtt_or <= slack_ck``."""
    K, O = sc.demand.shape[:2]
    kk, oo = np.nonzero(sc.demand.sum(axis=2) > 0)
    ko = pd.DataFrame({"k": kk, "o": oo})
    orr = pd.DataFrame([(o, r) for o, r in zip(*np.nonzero(sc.allowed))], columns=["o", "r"])
    kor = ko.merge(orr, on="o")
    kor["rtt"] = sc.rtt[kor["o"].to_numpy(), kor["r"].to_numpy()]
    best = place.merge(pairs[["c", "k", "slack_ms"]], on="c").groupby(["k", "r"], as_index=False)["slack_ms"].max()
    kor = kor.merge(best, on=["k", "r"])
    kor = kor[kor["rtt"] <= kor["slack_ms"] + TOL]
    return kor[["k", "o", "r", "rtt"]].sort_values(["k", "o", "r"]).reset_index(drop=True)


def initial_fleet(sc, md: ModelData) -> tuple[pd.DataFrame, np.ndarray]:
    """``options.scaling``'s initial replicas as (r, c, n0) rows of kept, placeable configs (a split
    config's count goes to its saturated pool), and each config's startup time in hours
    (``provision_s`` plus its model's weights at ``load_gb_per_s``). Initial replicas of configs the
    model does not keep are stopped at the first slot (named in the plan's warnings)."""
    cfg = md.configs
    start_h = np.array([sc.startup_seconds(m) / 3600.0 for m in cfg["model"]]) if len(cfg) else np.zeros(0)
    if md.vms is not None and sc.options.scaling is not None:
        start_h = start_h - float(sc.options.scaling.provision_s) / 3600.0  # provisioning is paid per VM started
    empty = pd.DataFrame({"r": np.zeros(0, np.int64), "c": np.zeros(0, np.int64), "n0": np.zeros(0)})
    scal = sc.options.scaling
    if scal is None or not scal.initial:
        return empty, start_h
    rix = {r: i for i, r in enumerate(sc.regions)}
    key = {(m, g, int(tp), int(pp), float(f"{f:.10g}"), int(mk)): int(c)
           for m, g, tp, pp, f, c, pool, mk in cfg[["model", "gpu", "tp", "pp", "freq_mhz", "c", "pool", "market"]]
           .itertuples(index=False) if pool != "light"}
    placed = set(zip(md.placements["r"], md.placements["c"]))
    rows, lost = [], []
    for x in scal.initial:
        c = key.get((x.model, x.gpu, int(x.tp), int(x.pp), float(f"{x.freq_mhz:.10g}"), int(x.market == "spot")))
        r = rix.get(x.region)
        if x.replicas == 0:
            continue
        if c is None or r is None or (r, c) not in placed:
            lost.append(f"{x.region}/{x.model}|{x.gpu}|tp{x.tp}|pp{x.pp}|{x.freq_mhz:g}MHz x{x.replicas}")
            continue
        rows.append((r, c, float(x.replicas)))
    if lost:
        md.warnings.append(f"{len(lost)} initial deployment(s) run configs the model does not keep (no SLO met, "
                           f"dominated or not offered) and are stopped at the first slot: {'; '.join(lost[:5])}")
    return (pd.DataFrame(rows, columns=["r", "c", "n0"]) if rows else empty), start_h


def base_key(model, gpu, tp, pp, spot) -> str:
    """Label of a deployment base (what a replica is, whatever its clock and pool): ``model|gpu|tpN|ppN``,
    with ``|spot`` on the spot market. Scaling actions name ``region/base key``."""
    return f"{model}|{gpu}|tp{int(tp)}|pp{int(pp)}" + ("|spot" if spot else "")


def deployment_bases(sc, cfg: pd.DataFrame, startup_h: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Group configs into deployment bases ``b`` = (model, GPU type, TP, PP, market): the replicas the
    fleet over time starts, stops and carries over. A replica changes its GPU clock or latency pool from
    one slot to the next for free (a clock is set in milliseconds, with no reload), so only a base's
    replica count carries a startup cost. Returns the configs with column ``b`` and the bases table
    (b, model, gpu, tp, pp, market, m, g, gpus, item, key, idle_w: the largest ``idle_power_w`` among the
    profile rows of its model, GPU, TP and PP, startup_h)."""
    keys = ["model", "gpu", "tp", "pp", "market"]
    first = cfg.sort_values("c").drop_duplicates(keys)[keys + ["m", "g", "gpus", "item", "c"]]
    first = first.sort_values(["m", "g", "tp", "pp", "market"]).reset_index(drop=True)
    first["b"] = np.arange(len(first))
    out = cfg.drop(columns=[c for c in ("b",) if c in cfg]).merge(first[keys + ["b"]], on=keys, how="left")
    prof = sc.profiles
    idle = (prof.groupby(["model", "gpu", "tp", "pp"])["idle_power_w"].max() if len(prof)
            else pd.Series(dtype=float))
    first["idle_w"] = [float(idle.get((m, g, int(tp), int(pp)), np.nan))
                       for m, g, tp, pp in first[["model", "gpu", "tp", "pp"]].itertuples(index=False)]
    first["key"] = [base_key(m, g, tp, pp, mk == 1) for m, g, tp, pp, mk in first[keys].itertuples(index=False)]
    first["startup_h"] = startup_h[first["c"].to_numpy()] if len(first) else np.zeros(0)
    return out, first.drop(columns="c")


def limit_matches(md: ModelData, limit) -> pd.DataFrame:
    """The placements (r, c) an ``options.replica_limits`` entry counts."""
    p = md.placements.merge(md.configs[["c", "model", "gpu", "tp", "pp"]], on="c")
    sel = p["model"] == limit.model
    if limit.region is not None:
        sel &= p["r"] == md.scenario.regions.index(limit.region)
    for f in ("gpu", "tp", "pp"):
        if getattr(limit, f) is not None:
            sel &= p[f] == getattr(limit, f)
    return p.loc[sel, ["r", "c"]]


def _kept_warm(md: ModelData) -> pd.DataFrame:
    """Placements counted by a replica limit with a minimum above 0 (they get replica variables in every
    slot, demand or not). ModelInputError when such a limit matches no placement."""
    out = []
    for i, lim in enumerate(md.scenario.options.replica_limits):
        if lim.min > 0:
            m = limit_matches(md, lim)
            if m.empty:
                raise ModelInputError(f"options.replica_limits[{i}]: min {lim.min} replicas of {lim.model} but no "
                                      f"deployment matches it (none of its configs meets an SLO and is offered there)")
            out.append(m)
    return pd.concat(out).drop_duplicates() if out else pd.DataFrame({"r": [], "c": []}, dtype=np.int64)


def initial_vms(sc, md: ModelData) -> pd.DataFrame:
    """VMs running before the horizon (with VMs and ``options.scaling``): per (region, GPU type, market), the
    fewest VMs of the largest type offered there that hold the initial replicas' GPUs (per-GPU offers:
    exactly those GPUs). Columns v, count."""
    empty = pd.DataFrame({"v": np.zeros(0, np.int64), "count": np.zeros(0)})
    if md.vms is None or md.initial is None or not len(md.initial):
        return empty
    ini = md.initial.merge(md.configs[["c", "g", "market", "gpus"]], on="c")
    ini["need"] = ini["n0"] * ini["gpus"]
    rows = []
    for (r, g, mk), grp in ini.groupby(["r", "g", "market"]):
        offers = md.vms[(md.vms["r"] == r) & (md.vms["g"] == g) & (md.vms["mk"] == mk)]
        if offers.empty:
            continue
        best = offers.sort_values(["gpus", "v"], ascending=[False, True]).iloc[0]
        rows.append((int(best["v"]), float(np.ceil(grp["need"].sum() / best["gpus"] - 1e-9))))
    return pd.DataFrame(rows, columns=["v", "count"]) if rows else empty


def restrict_slots(md: ModelData, slots) -> ModelData:
    """The same sets restricted to some slots (for solving slot by slot when nothing couples them)."""
    import copy

    out = copy.copy(md)
    slots = set(int(t) for t in slots)
    for name in ("n_index", "x_index", "y_index", "u_index"):
        df = getattr(md, name)
        setattr(out, name, df[df["t"].isin(slots)].reset_index(drop=True))
    return out


def build_sets(sc) -> ModelData:
    """All index sets and parameters, pruned, for a validated scenario."""
    cfg, pairs, pruning = config_class_pairs(sc)
    cfg, pairs = prune_dominated(cfg, pairs, pruning, sc.bursty)
    md = ModelData(scenario=sc, configs=cfg, pairs=pairs, pruning=pruning, warnings=list(pruning.warnings))
    # renumber configs 0..C-1 so that labels index by c
    remap = {old: new for new, old in enumerate(cfg["c"])}
    md.configs = cfg.assign(c=cfg["c"].map(remap))
    md.pairs = pairs.assign(c=pairs["c"].map(remap))
    md.configs, md.pairs = markets(sc, md.configs, md.pairs)
    remap = {old: new for new, old in enumerate(md.configs["c"])}
    md.configs = md.configs.assign(c=md.configs["c"].map(remap))
    md.pairs = md.pairs.assign(c=md.pairs["c"].map(remap)).sort_values(["c", "k"]).reset_index(drop=True)
    md.supply = supply(sc)
    md.vms = vm_table(sc, md)
    md.spot_loss = spot_loss(sc, md)
    md.placements = placements(sc, md.configs, md.supply, md.vms)
    md.routes = routes(sc, md.pairs, md.placements)
    md.initial, md.startup_h = initial_fleet(sc, md)
    md.configs, md.bases = deployment_bases(sc, md.configs, md.startup_h)
    md.initial_vms = initial_vms(sc, md)
    _time_indices(md)
    return md


def _time_indices(md: ModelData) -> None:
    """Variable domains over slots.

    * ``route_index`` x[k,o,r,t]: a route (k,o,r) in a slot where ``demand[k,o,t] > 0``; ub = demand.
    * ``unserved_index`` u[k,o,t]: only when unserved demand is allowed; ub = demand.
    * ``assignment_index`` y[k,r,c,t]: (r,c) placed, (c,k) valid, some route (k,o,r) with
      demand in t and ``rtt_or <= slack_ck``, and c's GPU type has at least gpus_c GPUs in (r, t).
    * ``replica_index`` n[r,c,t]: wherever some y[., r, c, t] exists;
      ub = floor(availability[r,g,t] / gpus_c).
    """
    sc = md.scenario
    T = sc.n_slots
    D = sc.demand
    rt = md.routes
    # x
    xs = []
    for t in range(T):
        d = D[rt["k"].to_numpy(), rt["o"].to_numpy(), t]
        sel = d > 0
        xs.append(pd.DataFrame({"k": rt["k"].to_numpy()[sel], "o": rt["o"].to_numpy()[sel],
                                "r": rt["r"].to_numpy()[sel], "t": t, "ub": d[sel],
                                "rtt": rt["rtt"].to_numpy()[sel]}))
    md.x_index = pd.concat(xs, ignore_index=True) if xs else pd.DataFrame(columns=["k", "o", "r", "t", "ub", "rtt"])
    # y: for each (k, r, t) the smallest rtt among routes with demand
    minrtt = md.x_index.groupby(["k", "r", "t"], as_index=False)["rtt"].min()
    cand = md.placements.merge(md.pairs[["c", "k", "slack_ms"]], on="c").merge(minrtt, on=["k", "r"])
    cand = cand[cand["rtt"] <= cand["slack_ms"] + TOL]
    cfg = md.configs.set_index("c")
    g = cfg.loc[cand["c"].to_numpy(), "g"].to_numpy()
    mk = cfg.loc[cand["c"].to_numpy(), "market"].to_numpy()
    need = cfg.loc[cand["c"].to_numpy(), "gpus"].to_numpy()
    av = md.supply[cand["r"].to_numpy(), g, mk, cand["t"].to_numpy()]
    cand = cand[av >= need]
    md.y_index = cand[["k", "r", "c", "t"]].sort_values(["t", "r", "c", "k"]).reset_index(drop=True)
    n = md.y_index[["r", "c", "t"]].drop_duplicates().sort_values(["t", "r", "c"]).reset_index(drop=True)
    if sc.options.scaling is not None:
        # replicas carry over: every (region, config) that serves in some slot, or runs at the start,
        # has a replica count in every slot
        rc = pd.concat([n[["r", "c"]], md.initial[["r", "c"]], _kept_warm(md)]).drop_duplicates()
        n = rc.merge(pd.DataFrame({"t": np.arange(T)}), how="cross").sort_values(["t", "r", "c"]).reset_index(drop=True)
    else:
        warm = _kept_warm(md)
        if len(warm):  # a replica minimum holds in slots without demand too
            n = pd.concat([n, warm.merge(pd.DataFrame({"t": np.arange(T)}), how="cross")]).drop_duplicates()
            n = n.sort_values(["t", "r", "c"]).reset_index(drop=True)
    g = cfg.loc[n["c"].to_numpy(), "g"].to_numpy()
    mk = cfg.loc[n["c"].to_numpy(), "market"].to_numpy()
    need = cfg.loc[n["c"].to_numpy(), "gpus"].to_numpy()
    n["ub"] = md.supply[n["r"].to_numpy(), g, mk, n["t"].to_numpy()] // need
    md.n_index = n
    md.x_index = md.x_index.sort_values(["t", "k", "o", "r"]).reset_index(drop=True)
    # demand
    kk, oo, tt = np.nonzero(D > 0)
    dem = pd.DataFrame({"k": kk, "o": oo, "t": tt, "ub": D[kk, oo, tt]})
    has = md.x_index[["k", "o", "t"]].drop_duplicates()
    m = dem.merge(has, on=["k", "o", "t"], how="left", indicator=True)
    md.unroutable = m[m["_merge"] == "left_only"].drop(columns="_merge").reset_index(drop=True)
    if sc.options.unserved.allowed:
        md.u_index = dem.sort_values(["t", "k", "o"]).reset_index(drop=True)
    else:
        md.u_index = dem.iloc[0:0]

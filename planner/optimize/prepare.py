"""Before any solver runs: the scenario with the call's options, demand below the planner's resolution
left out, the model's size checked against the limit, the sets and the neutral model built."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from formulations import build, build_sets
from formulations.sets import ModelInputError
from planner.errors import InfeasibleError, InputError
from planner.limits import limits
from planner.optimize.explain import explain_unroutable
from planner.scenario.loading import Scenario, _replace
from planner.scenario.schema import RATE_RESOLUTION


def estimate_nonzeros(sc: Scenario) -> int:
    """An upper estimate of the MILP's coefficients, from the scenario's sizes alone (before any set
    is built): every (profile row, class) pair in every region offering its GPU and every slot gives an
    assignment column with about 4 coefficients; every (class, origin, region, slot) a routing column
    with about 3."""
    prof = sc.profiles
    cls = pd.DataFrame({"model": [k.model for k in sc.spec.classes], "shape": [k.shape for k in sc.spec.classes]})
    per_gpu = prof.merge(cls, on=["model", "shape"]).groupby("gpu").size()
    offered = {g: int((~np.isnan(sc.gpu_price[:, i])).sum()) for i, g in enumerate(sc.gpus)}
    if sc.vm_offers is not None:  # VM offers: regions x markets
        vo = sc.vm_offers[["r", "gpu", "market"]].drop_duplicates()
        offered = vo.groupby("gpu").size().to_dict()
    y = sum(int(n) * offered.get(g, 0) for g, n in per_gpu.items()) * sc.n_slots
    x = len(sc.classes) * len(sc.origins) * len(sc.regions) * sc.n_slots
    return 4 * y + 3 * x


def check_model_size(sc: Scenario) -> None:
    """Refuse (InputError) a model above PLANNER_MAX_MODEL_NONZEROS before building it."""
    lim = limits().max_model_nonzeros
    est = estimate_nonzeros(sc)
    if est > lim:
        raise InputError(f"the model would have about {est:,} coefficients, above the limit of {lim:,} "
                         "(PLANNER_MAX_MODEL_NONZEROS): fewer slots, regions, profile rows or classes, or raise the limit")


def _tiny_demand(sc: Scenario) -> tuple[Scenario, list[str]]:
    """Demand below the planner's resolution (RATE_RESOLUTION req/s) is left out of the model and named.

    HiGHS meets rows to about 1e-7, so such a rate would be "served" by nothing while the plan said
    otherwise; the checker's tolerance (1e-6 req/s) accepts the difference, and the plan says so."""
    tiny = (sc.demand > 0) & (sc.demand < RATE_RESOLUTION)
    if not tiny.any():
        return sc, []
    K, O, T = np.nonzero(tiny)
    ex = ", ".join(f"{sc.classes[k]} from {sc.origins[o]} in slot {t} ({sc.demand[k, o, t]:.3g} req/s)"
                   for k, o, t in list(zip(K, O, T))[:5])
    more = f" and {len(K) - 5} more" if len(K) > 5 else ""
    d = sc.demand.copy()
    d[tiny] = 0.0
    total = float(sc.demand[tiny].sum() * sc.slot_seconds)
    msg = (f"{len(K)} demand value(s) below {RATE_RESOLUTION:g} req/s are not planned (about {total:.3g} requests in "
           f"all, below the solver's resolution): {ex}{more}")
    return Scenario(**_replace(sc, demand=d)), [msg]


def prepare(scenario: Scenario, objective: str | None, option_overrides: dict):
    if objective is not None:
        option_overrides["objective"] = objective
    sc = scenario.with_options(**option_overrides)
    t0 = time.perf_counter()
    sc, notes = _tiny_demand(sc)
    check_model_size(sc)
    try:
        md = build_sets(sc)
        md.warnings = notes + md.warnings
        if len(md.unroutable) and not sc.options.unserved.allowed:
            raise InfeasibleError(explain_unroutable(md))
        lm, v = build(md)
    except ModelInputError as e:
        raise InputError(str(e)) from None
    return sc, md, lm, v, time.perf_counter() - t0

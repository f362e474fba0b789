"""Fill a scenario's profile table with rows estimated by the performance model.

:func:`estimate_profiles` takes a scenario document (models, GPU types, shapes, classes) and the
profile rows it already has, and adds, for every (model, GPU type, tp, pp, clock, shape) the
scenario can use and the table lacks, the row that :func:`planner.perf.rows.profile_rows` predicts.
Rows already in the table (measured, imported) are never changed. Each shape is profiled at the
tightest SLO of the classes that use it with that model, so every added row is usable by each of
those classes' latency checks whenever the model says the SLO can be met at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from planner.errors import InputError, Problem
from planner.perf import model as perfmodel
from planner.perf.rows import profile_rows
from planner.scenario.loading import PROFILE_KEY
from planner.scenario.schema import ScenarioSpec, slo_statistic, statistic_rank


@dataclass(frozen=True)
class EstimateReport:
    """What :func:`estimate_profiles` did: rows kept, rows added, pairs it could not estimate."""

    kept: int
    added: int
    added_by_pair: dict[tuple[str, str], int]
    skipped: list[str]


def shape_targets(spec: ScenarioSpec, network_ms: float | None = None) -> dict[str, dict[str, tuple]]:
    """model -> shape -> (ttft_ms, tbt_ms, e2e_ms or None, statistic or None, attainment or None): the
    tightest targets among the classes.

    The class SLOs count the network round trip, which the profile does not: the planner adds each
    route's RTT to the profiled TTFT. So the TTFT and end-to-end targets are the class's minus the
    smallest RTT from any origin to any region it may use (the nearest route keeps its full slack;
    farther routes need the faster configurations). ``network_ms`` replaces that smallest RTT by a
    network allowance of your choice: a row sized for TTFT target ``SLO - network_ms`` can serve every
    route up to that RTT (a p99 row's TTFT sits near its target at capacity). TTFT, TBT and
    end-to-end targets are then the minimum over the classes of that (model, shape); the statistic the
    strictest any of them states (``slo.percentile``; None when none states one) and the attainment
    the largest stated.
    """
    rtts = [v for o in spec.origins for r, v in o.rtt_ms.items()
            if o.allowed_regions is None or r in o.allowed_regions]
    rtt0 = (min(rtts) if rtts else 0.0) if network_ms is None else float(network_ms)
    out: dict[str, dict[str, list]] = {}
    for k in spec.classes:
        slo = k.slo
        cur = out.setdefault(k.model, {}).get(k.shape)
        ttft = max(slo.ttft_ms - rtt0, 0.5 * slo.ttft_ms)
        e2e = None if slo.e2e_ms is None else max(slo.e2e_ms - rtt0, 0.5 * slo.e2e_ms)
        stat = slo_statistic(slo)
        if cur is None:
            out[k.model][k.shape] = [ttft, slo.tbt_ms, e2e, stat, slo.attainment]
        else:
            cur[0] = min(cur[0], ttft)
            cur[1] = min(cur[1], slo.tbt_ms)
            if e2e is not None:
                cur[2] = e2e if cur[2] is None else min(cur[2], e2e)
            if stat is not None and (cur[3] is None or statistic_rank(stat) > statistic_rank(cur[3])):
                cur[3] = stat
            if slo.attainment is not None:
                cur[4] = slo.attainment if cur[4] is None else max(cur[4], slo.attainment)
    return {m: {s: tuple(v) for s, v in d.items()} for m, d in out.items()}


def estimate_profiles(spec: ScenarioSpec, existing: pd.DataFrame | None = None, *,
                      models: list[str] | None = None, gpus: list[str] | None = None,
                      model_map: dict[str, str] | None = None, gpu_map: dict[str, str] | None = None,
                      skip_unknown: bool = False,
                      distributions: dict[str, pd.DataFrame] | None = None,
                      network_ms: float | None = None) -> tuple[pd.DataFrame, EstimateReport]:
    """The profile table with estimated rows added where ``existing`` has none.

    ``models``/``gpus`` restrict which scenario models and GPU types are estimated (default: all
    that the scenario's classes and regions use). ``model_map``/``gpu_map`` name the performance
    model's entry for a scenario name that differs (e.g. ``{"my-llama": "llama-3.1-8b"}``).
    Unknown names are an error listing the known ones, unless ``skip_unknown``.
    ``distributions``: shape -> its (input_tokens, output_tokens, weight) table; a shape profiled at a
    stated statistic is sized for its distribution (else for its representative pair).
    ``network_ms``: the network allowance subtracted from the TTFT targets (:func:`shape_targets`).
    """
    model_map, gpu_map = dict(model_map or {}), dict(gpu_map or {})
    targets = shape_targets(spec, network_ms)
    shapes = {s.name: (float(s.input_tokens), float(s.output_tokens)) for s in spec.shapes}
    scen_models = [m.name for m in spec.models if m.name in targets]
    scen_gpus = [g.name for g in spec.gpu_types]
    problems: list[Problem] = []
    for flag, asked, known in (("--model", models, [m.name for m in spec.models]), ("--gpu", gpus, scen_gpus)):
        for name in asked or []:
            if name not in known:
                problems.append(Problem(flag, f"{name!r} is not in the scenario (it has: {', '.join(known)})"))
    for flag, mapping, known in (("--model-map", model_map, [m.name for m in spec.models]),
                                 ("--gpu-map", gpu_map, scen_gpus)):
        for name in mapping:
            if name not in known:
                problems.append(Problem(flag, f"{name!r} is not in the scenario (it has: {', '.join(known)})"))
    if problems:
        raise InputError(problems, "cannot estimate profiles")
    use_models = [m for m in scen_models if models is None or m in models]
    use_gpus = [g for g in scen_gpus if gpus is None or g in gpus]

    known_m, known_g = set(perfmodel.known_models()), set(perfmodel.known_gpus())
    skipped: list[str] = []
    for what, names, mapping, known, flag in (("model", use_models, model_map, known_m, "--model-map"),
                                              ("GPU type", use_gpus, gpu_map, known_g, "--gpu-map")):
        for n in names:
            target = mapping.get(n, n)
            if target not in known:
                msg = (f"the performance model does not know {what} {target!r}; map it with {flag} "
                       f"{n}=NAME (known: {', '.join(sorted(known))})")
                if skip_unknown:
                    skipped.append(msg)
                else:
                    problems.append(Problem(f"scenario {what} {n!r}", msg))
    if problems:
        raise InputError(problems, "cannot estimate profiles")

    frames = []
    by_pair: dict[tuple[str, str], int] = {}
    have = set()
    if existing is not None and len(existing):
        have = _norm(existing[PROFILE_KEY].astype(object).itertuples(index=False, name=None))
    for m in use_models:
        pm = model_map.get(m, m)
        if pm not in known_m:
            continue
        m_shapes = {s: shapes[s] for s in sorted(targets[m])}
        for g in use_gpus:
            pg = gpu_map.get(g, g)
            if pg not in known_g:
                continue
            rows = profile_rows(pm, pg, m_shapes, targets[m], distributions=distributions)
            if rows.empty:
                continue
            rows = rows.assign(model=m, gpu=g)
            keys = list(rows[PROFILE_KEY].astype(object).itertuples(index=False, name=None))
            new = [k not in have for k in _norm_list(keys)]
            rows = rows[new]
            if len(rows):
                frames.append(rows)
                by_pair[(m, g)] = len(rows)
    kept = 0 if existing is None else len(existing)
    added = pd.concat(frames, ignore_index=True) if frames else None
    parts = [p for p in (existing, added) if p is not None and len(p)]
    if not parts:
        raise InputError([Problem("profiles", "nothing to estimate: no (model, GPU type) pair of the scenario has "
                                  "an SLO-meeting configuration in the performance model")],
                         "cannot estimate profiles")
    table = pd.concat(parts, ignore_index=True)
    table = table.sort_values(PROFILE_KEY, kind="stable").reset_index(drop=True)
    return table, EstimateReport(kept=kept, added=0 if added is None else len(added), added_by_pair=by_pair,
                                 skipped=skipped)


def _norm_list(keys) -> list[tuple]:
    """Profile keys with the numeric parts as int/float, so 1 == 1.0 and '1980' never meets 1980.0."""
    return [(str(k[0]), str(k[1]), int(k[2]), int(k[3]), float(k[4]), str(k[5])) for k in keys]


def _norm(keys) -> set:
    return set(_norm_list(keys))

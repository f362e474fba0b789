"""Bursty arrivals: a class's ``arrivals`` table and its burst factor.

A class's ``arrivals`` table (written by ``plan data shapes TRACE --arrivals CLASS``,
:func:`planner.datatools.traces.arrival_ratios`) describes its traffic in units that do not change
when the traffic is compressed or stretched in time: for windows expected to hold ``N`` requests,
quantiles of the count in the window divided by ``N``, weighted by ``request`` (windows ending at an
arrival: the burst a request finds ahead of it) and, optionally, by ``time`` (windows ending at
random instants: how the rate varies, e.g. silences).

:func:`burst_factors` gives each class's burst factor in each slot (docs/formulation.md, "Bursty
arrivals")::

    beta[k,t] = max(1, max_N e_k(N) N / (N + lambda[k,t] theta TTFT_k)),   e_k(N) = a_k(N) - p(N) + 1

with ``a_k(N)`` the table's ratio at the class's level (:func:`class_level`; the nearest stricter level
the table has when it lacks that one), ``p(N)`` the same ratio for Poisson arrivals (the fluctuations
the profile rows' ``max_rps`` already holds, so they are not counted twice), ``lambda[k,t]`` the
class's demand in the slot (req/s, all origins) and ``theta TTFT_k`` the queueing a burst may add
(``options.burst_absorption`` times the TTFT target). It is a fluid bound: a fleet whose usable
capacity is ``C = beta lambda`` clears the ``a_k(N) N`` requests of any such window within its
length plus ``theta TTFT_k``, since ``a_k(N) N <= C (N / lambda + theta TTFT_k)``. Poisson traffic
(no table, or a table measured on Poisson arrivals) has ``beta = 1``: the profile rows' ``max_rps``
already holds its fluctuations.

:func:`busy_share` gives the share of time a replica has work when it carries ``m`` requests on
average (``m = x R``: ``x`` req/s, each resident ``R`` s) under the class's rate fluctuations:
``E_t[min(1, m r_t)]`` over the time-weighted ratios ``r_t`` (``min(1, m)`` without them): requests
rarely overlap while the replica is lightly loaded, and a saturated replica still idles through the
traffic's silences.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

import math

from planner.errors import Problem

ARRIVAL_COLUMNS = {"window_requests": "float", "weighting": "str", "quantile": "float", "ratio": "float"}
"""Columns of a class's ``arrivals`` table (plus an optional ``source``)."""

WEIGHTINGS = ("request", "time")

MAX_ARRIVAL_ROWS = 100_000


def class_level(slo) -> float:
    """The quantile a class's bursts are sized at: its percentile (``mean``: the median), or its
    attainment target (default 0.99) when it states no percentile."""
    p = slo.percentile
    if p == "mean":
        return 0.5
    if p is not None:
        return float(p) / 100.0
    return float(slo.attainment) if slo.attainment is not None else 0.99


def validate_arrivals(frame: pd.DataFrame, where: str, label, level: float, problems: list[Problem],
                      row_problems) -> pd.DataFrame | None:
    """A class's arrivals table, checked: its request-weighted rows at quantile ``level`` (the class's;
    the nearest stricter level the table has, when it lacks that one) and its time-weighted rows, sorted (other request levels are not used and do not count in the
    scenario's fingerprint); None (with ``problems`` added, naming rows) when it is not usable."""
    if len(frame) > MAX_ARRIVAL_ROWS:
        problems.append(Problem(where, f"{len(frame):,} rows, above the limit of {MAX_ARRIVAL_ROWS:,}"))
        return None
    n0 = len(problems)
    nq = frame["window_requests"].to_numpy(float)
    w = frame["weighting"].astype(str).str.strip().str.lower()
    q = frame["quantile"].to_numpy(float)
    r = frame["ratio"].to_numpy(float)
    for bad, msg in ((~(nq > 0), lambda i: "window_requests: must be above 0"),
                     (~w.isin(WEIGHTINGS).to_numpy(), lambda i: f"weighting: {w.iloc[i]!r} is not request or time"),
                     (~((q > 0) & (q < 1)), lambda i: "quantile: must lie strictly between 0 and 1"),
                     (~(r >= 0), lambda i: "ratio: must be a number >= 0")):
        if bad.any():
            row_problems(problems, label, bad, msg)
    if len(problems) > n0:
        return None
    out = pd.DataFrame({"window_requests": nq, "weighting": w.to_numpy(), "quantile": q, "ratio": r})
    dup = out.duplicated(["window_requests", "weighting", "quantile"]).to_numpy()
    if dup.any():
        row_problems(problems, label, dup, lambda i: "repeats an earlier (window_requests, weighting, quantile)")
        return None
    req_levels = sorted(set(out.loc[out["weighting"] == "request", "quantile"]))
    use = next((q for q in req_levels if q >= level - 1e-9), None)
    if use is None:
        have = ", ".join(f"{q:g}" for q in req_levels) or "none"
        problems.append(Problem(where, f"no request-weighted rows at quantile {level:g} or above, the level the "
                                       f"class's percentile (or attainment) needs (the table has: {have})"))
        return None
    keep = (out["weighting"] == "time") | np.isclose(out["quantile"], use, rtol=0, atol=1e-12)
    return out[keep].sort_values(["weighting", "window_requests", "quantile"], kind="stable").reset_index(drop=True)


def poisson_ratio(N: float, level: float) -> float:
    """The request-weighted ratio of Poisson arrivals: ``(1 + Q(level)) / N`` with ``Q`` the quantile of a
    Poisson count of mean ``N`` (the window ending at an arrival holds it and, by the Poisson property,
    a Poisson(N) count of others)."""
    N = float(N)
    if N > 2000:  # normal approximation, continuity-corrected
        from statistics import NormalDist

        return (1.0 + math.ceil(N + NormalDist().inv_cdf(level) * math.sqrt(N) - 0.5)) / N
    k = np.arange(0, int(N + 12 * math.sqrt(N) + 30))
    logp = k * math.log(N) - N - np.array([math.lgamma(x + 1.0) for x in k])
    cdf = np.cumsum(np.exp(logp))
    return (1.0 + float(np.searchsorted(cdf, level - 1e-12))) / N


def burst_factor(curve: pd.DataFrame | None, rate_rps, allowance_s: float) -> np.ndarray:
    """``max(1, max_N (a(N) - p(N) + 1) N / (N + rate x allowance))`` for each rate (1 without a curve or
    demand): ``a`` the curve's request-weighted ratios, ``p`` Poisson's at the same level."""
    rate = np.asarray(rate_rps, dtype=float)
    if curve is None:
        return np.ones_like(rate)
    curve = curve[curve["weighting"] == "request"]
    N = curve["window_requests"].to_numpy(float)
    a = (curve["ratio"].to_numpy(float)
         - np.array([poisson_ratio(n, q) for n, q in zip(N, curve["quantile"].to_numpy(float))]) + 1.0)
    beta = (a * N / (N + np.maximum(rate, 0.0)[..., None] * allowance_s)).max(axis=-1)
    return np.where(rate > 0, np.maximum(beta, 1.0), 1.0)


def burst_factors(sc) -> np.ndarray:
    """[K, T] burst factor of every class in every slot (see the module docstring)."""
    theta = float(sc.spec.options.burst_absorption)
    lam = sc.demand.sum(axis=1)
    out = np.ones_like(lam, dtype=float)
    for k, kc in enumerate(sc.spec.classes):
        curve = sc.class_arrivals(kc.name)
        if curve is not None:
            out[k] = burst_factor(curve, lam[k], theta * kc.slo.ttft_ms / 1000.0)
    return out


def busy_share(table: pd.DataFrame | None, m, window_requests) -> np.ndarray:
    """Share of time a replica holding ``m`` requests on average has work: ``E_t[min(1, m r)]`` over the
    table's time-weighted ratios at the window nearest (in log) to ``window_requests`` (the class's
    arrivals during one request's residence); ``min(1, m)`` without time-weighted rows. Arrays broadcast."""
    m, nw = np.broadcast_arrays(np.asarray(m, dtype=float), np.asarray(window_requests, dtype=float))
    tw = None if table is None else table[table["weighting"] == "time"]
    if tw is None or tw.empty:
        return np.minimum(1.0, np.maximum(m, 0.0))
    windows = np.array(sorted(tw["window_requests"].unique()), dtype=float)
    # each level stands for the probability mass between the midpoints to its neighbours (equal
    # weights for the 20 evenly spaced levels plan data shapes writes)
    j = np.abs(np.log(windows)[None, :] - np.log(np.maximum(nw.reshape(-1), 1e-12))[:, None]).argmin(axis=1)
    j = j.reshape(m.shape)
    out = np.empty(m.shape)
    for i, n in enumerate(windows):
        sel = j == i
        if sel.any():
            rows = tw[tw["window_requests"] == n].sort_values("quantile")
            r, q = rows["ratio"].to_numpy(float), rows["quantile"].to_numpy(float)
            edges = np.concatenate([[0.0], (q[1:] + q[:-1]) / 2.0, [1.0]])
            w = np.diff(edges)
            out[sel] = np.minimum(1.0, np.maximum(m[sel], 0.0)[:, None] * r[None, :]) @ (w / w.sum())
    return out

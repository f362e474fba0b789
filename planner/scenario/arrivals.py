"""Bursty arrivals: a class's ``arrivals`` table and its burst factor.

A class's ``arrivals`` table (written by ``plan data shapes TRACE --arrivals CLASS``,
:func:`planner.datatools.traces.arrival_ratios`) describes its traffic in units that do not change
when the traffic is compressed or stretched in time: for windows expected to hold ``N`` requests,
quantiles of the count in the window divided by ``N``, weighted by ``request`` (windows ending at an
arrival: the burst a request finds ahead of it) and, optionally, by ``time`` (windows ending at
random instants: how the rate varies, e.g. silences).

:func:`burst_factors` gives each class's burst factor in each slot (docs/formulation.md, "Bursty
arrivals")::

    beta[k,t] = max(1, max_N a_k(N) N / (N + lambda[k,t] theta TTFT_k))

with ``a_k(N)`` the table's ratio at the class's level (:func:`class_level`), ``lambda[k,t]`` the
class's demand in the slot (req/s, all origins) and ``theta TTFT_k`` the queueing a burst may add
(``options.burst_absorption`` times the TTFT target). It is a fluid bound: a fleet whose usable
capacity is ``C = beta lambda`` clears the ``a_k(N) N`` requests of any such window within its
length plus ``theta TTFT_k``, since ``a_k(N) N <= C (N / lambda + theta TTFT_k)``. Poisson traffic
(no table) has ``beta = 1``: the profile rows' ``max_rps`` already holds its fluctuations.

:func:`busy_share` gives the share of time a replica has work when it carries ``m`` requests on
average (``m = x R``: ``x`` req/s, each resident ``R`` s) under the class's rate fluctuations:
``E_t[min(1, m r_t)]`` over the time-weighted ratios ``r_t`` (``min(1, m)`` without them): requests
rarely overlap while the replica is lightly loaded, and a saturated replica still idles through the
traffic's silences.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

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
    """A class's arrivals table, checked: its request-weighted rows at quantile ``level`` (the class's)
    and its time-weighted rows, sorted (other request levels are not used and do not count in the
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
    keep = (out["weighting"] == "time") | np.isclose(out["quantile"], level, rtol=0, atol=1e-9)
    if not (keep & (out["weighting"] == "request")).any():
        problems.append(Problem(where, f"no request-weighted rows at quantile {level:g}, the level the class's "
                                       "percentile (or attainment) needs"))
        return None
    return out[keep].sort_values(["weighting", "window_requests", "quantile"], kind="stable").reset_index(drop=True)


def burst_factor(curve: pd.DataFrame | None, rate_rps, allowance_s: float) -> np.ndarray:
    """``max(1, max_N a(N) N / (N + rate x allowance))`` for each rate (1 without a curve or demand)."""
    rate = np.asarray(rate_rps, dtype=float)
    if curve is None:
        return np.ones_like(rate)
    curve = curve[curve["weighting"] == "request"]
    N = curve["window_requests"].to_numpy(float)
    a = curve["ratio"].to_numpy(float)
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
    j = np.abs(np.log(windows)[None, :] - np.log(np.maximum(nw.reshape(-1), 1e-12))[:, None]).argmin(axis=1)
    j = j.reshape(m.shape)
    out = np.empty(m.shape)
    for i, n in enumerate(windows):
        sel = j == i
        if sel.any():
            r = tw.loc[tw["window_requests"] == n, "ratio"].to_numpy(float)
            out[sel] = np.minimum(1.0, np.maximum(m[sel], 0.0)[:, None] * r[None, :]).mean(axis=1)
    return out

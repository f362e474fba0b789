"""Aligning timestamped series to the planning slots.

A series is a set of (timestamp, value) points for one key (a region, a (class, origin) pair, ...).
It is read as a step function: each value holds from its timestamp until the next one. The step of
a table is the smallest spacing between consecutive timestamps of any of its series; any larger
spacing within a series is a gap, and a gap is an error, never filled silently. The series must cover the horizon: first timestamp at or before the
horizon start, last timestamp + step at or after the horizon end.

A slot's value is the time-weighted mean of the series over the slot (rates, intensities, prices),
its minimum (availability: a GPU counts for a slot only if it is there the whole slot), its maximum
or a time-weighted percentile (demand with ``options.demand_statistic`` peak or pNN).
"""

from __future__ import annotations

import numpy as np

from planner.errors import Problem


def _fmt(ns: int) -> str:
    return np.datetime_as_string(np.datetime64(int(ns), "ns"), unit="m") + "Z"


def align_series(
    ts_ns: np.ndarray,
    values: np.ndarray,
    slot_edges_ns: np.ndarray,
    slot_ns: int,
    how: str,
    where: str,
    step_ns: int | None = None,
) -> tuple[np.ndarray | None, list[Problem]]:
    """Align one series to slots.

    ``ts_ns``: timestamps (int64 ns since epoch), any order; ``values``: float values;
    ``slot_edges_ns``: the T+1 slot boundaries; ``how``: ``"mean"``, ``"min"``, ``"max"`` or ``"pNN"``
(time-weighted NN-th percentile); ``step_ns``: the
    table's step (default: this series' smallest spacing, or the slot length for a single point).
    Returns the T slot values, or ``None`` with the problems found.
    """
    order = np.argsort(ts_ns, kind="stable")
    ts = ts_ns[order]
    v = values[order].astype(float)
    dup = np.nonzero(np.diff(ts) == 0)[0]
    if dup.size:
        return None, [Problem(where, f"timestamp {_fmt(ts[dup[0]])} appears more than once")]
    if ts.size >= 2:
        diffs = np.diff(ts)
        step = int(step_ns) if step_ns else int(diffs.min())
        bad = np.nonzero(diffs != step)[0]
        if bad.size:
            i = int(bad[0])
            return None, [
                Problem(
                    where,
                    f"gap in the series: {_fmt(ts[i])} is followed by {_fmt(ts[i + 1])} but the series "
                    f"step is {step // 60_000_000_000} min",
                )
            ]
    else:
        step = int(step_ns) if step_ns else slot_ns
    start, end = int(slot_edges_ns[0]), int(slot_edges_ns[-1])
    covered_end = int(ts[-1]) + step
    if ts[0] > start or covered_end < end:
        return None, [
            Problem(
                where,
                f"series covers {_fmt(ts[0])} to {_fmt(covered_end)} but the horizon is "
                f"{_fmt(start)} to {_fmt(end)}",
            )
        ]
    if how == "mean":
        # integral of the step function from ts[0]; F(t) = cum[i] + v[i] * (t - ts[i])
        cum = np.concatenate([[0.0], np.cumsum(v[:-1] * np.diff(ts).astype(float))])
        idx = np.searchsorted(ts, slot_edges_ns, side="right") - 1
        idx = np.clip(idx, 0, ts.size - 1)
        F = cum[idx] + v[idx] * (slot_edges_ns - ts[idx]).astype(float)
        out = np.diff(F) / np.diff(slot_edges_ns).astype(float)
    elif how in ("min", "max"):
        first = np.searchsorted(ts, slot_edges_ns[:-1], side="right") - 1
        last = np.searchsorted(ts, slot_edges_ns[1:], side="left")  # exclusive
        pick = np.min if how == "min" else np.max
        out = np.array([pick(v[a:b]) for a, b in zip(first, last)])
    elif how.startswith("p") and how[1:].isdigit():
        # time-weighted percentile: the smallest value v such that the step function is <= v for at
        # least q of the slot's time
        q = int(how[1:]) / 100.0
        first = np.searchsorted(ts, slot_edges_ns[:-1], side="right") - 1
        last = np.searchsorted(ts, slot_edges_ns[1:], side="left")
        bounds = np.append(ts, np.iinfo(np.int64).max)
        out = np.empty(len(first))
        for j, (a, b) in enumerate(zip(first, last)):
            lo = np.maximum(bounds[a:b], slot_edges_ns[j])
            hi = np.minimum(bounds[a + 1:b + 1], slot_edges_ns[j + 1])
            dur = (hi - lo).astype(float)
            vals = v[a:b]
            order = np.argsort(vals, kind="stable")
            cum = np.cumsum(dur[order]) / dur.sum()
            out[j] = vals[order][min(int(np.searchsorted(cum, q - 1e-12, side="left")), len(vals) - 1)]
    else:  # pragma: no cover - programming error
        raise ValueError(how)
    return out, []


def table_step(groups: list[np.ndarray]) -> int | None:
    """Smallest spacing between consecutive distinct timestamps of any series (None if none has two)."""
    best = None
    for ts in groups:
        u = np.unique(ts)
        if u.size >= 2:
            d = int(np.diff(u).min())
            best = d if best is None else min(best, d)
    return best

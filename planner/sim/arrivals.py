"""The requests a simulation sees: Poisson arrivals at the planned rates, or replayed request traces
(compressed to the planned rate of their classes and tiled, classes matched by output-length rank,
origins drawn by the planned demand)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from planner.datatools.traces import load_trace
from planner.errors import InputError, Problem


@dataclass(frozen=True)
class TraceSource:
    """A trace file to replay and the classes its requests may take (None: every class)."""

    path: str
    classes: tuple[str, ...] | None = None

    @classmethod
    def parse(cls, text: str) -> "TraceSource":
        """``PATH`` or ``PATH=CLASS[,CLASS...]``."""
        if "=" in text and not Path(text).exists():
            path, _, rest = text.rpartition("=")
            names = tuple(c.strip() for c in rest.split(",") if c.strip())
            if not path or not names:
                raise InputError([Problem(repr(text), "expected PATH or PATH=CLASS[,CLASS...]")], "invalid --trace")
            return cls(path, names)
        return cls(text, None)

    def label(self) -> str:
        return self.path + ("" if self.classes is None else "=" + ",".join(self.classes))


@dataclass
class _Arrivals:
    t_ms: np.ndarray     # send time at the origin
    k: np.ndarray
    o: np.ndarray
    inp: np.ndarray
    out: np.ndarray


def poisson_arrivals(sc, t: int, window_ms: float, scale: float, rng: np.random.Generator) -> _Arrivals:
    """Poisson arrivals at the planned rates; each request's (input, output) tokens are the class's shape,
    or drawn from the shape's distribution when it has one."""
    parts = []
    shapes = {s.name: s for s in sc.spec.shapes}
    for k, kc in enumerate(sc.spec.classes):
        sh = shapes[kc.shape]
        dist = sc.shape_distribution(kc.shape)
        if dist is not None:
            d_in, d_out, d_w = (dist[c].to_numpy() for c in ("input_tokens", "output_tokens", "weight"))
        for o in range(len(sc.origins)):
            lam = float(sc.demand[k, o, t]) * scale
            if lam <= 0:
                continue
            n = int(rng.poisson(lam * window_ms / 1000.0))
            if n == 0:
                continue
            ts = np.sort(rng.uniform(0.0, window_ms, n))
            if dist is None:
                inp, out = np.full(n, sh.input_tokens), np.full(n, sh.output_tokens)
            else:
                j = rng.choice(len(d_w), size=n, p=d_w)
                inp, out = d_in[j], d_out[j]
            parts.append((ts, np.full(n, k), np.full(n, o), inp, out))
    return _concat(parts)


def _concat(parts) -> _Arrivals:
    if not parts:
        e = np.zeros(0)
        ei = np.zeros(0, dtype=np.int64)
        return _Arrivals(e, ei, ei, ei, ei)
    t = np.concatenate([p[0] for p in parts])
    order = np.argsort(t, kind="stable")
    cols = [np.concatenate([p[j] for p in parts]).astype(np.int64) for j in range(1, 5)]
    return _Arrivals(t[order], *(c[order] for c in cols))


@dataclass
class _LoadedTrace:
    source: TraceSource
    t: np.ndarray          # seconds since the first request
    inp: np.ndarray
    out: np.ndarray
    k: np.ndarray | None   # class index per request (trace column), else None
    o: np.ndarray | None
    allowed: list[int]
    duration_s: float


def load_traces(sources: Sequence[TraceSource], sc) -> list[_LoadedTrace]:
    ci = {k: i for i, k in enumerate(sc.classes)}
    oi = {o: i for i, o in enumerate(sc.origins)}
    out = []
    for src in sources:
        if src.classes is not None:
            bad = [c for c in src.classes if c not in ci]
            if bad:
                raise InputError([Problem(f"--trace {src.label()}", f"unknown class(es) {', '.join(bad)}; "
                                          f"the scenario has {', '.join(sc.classes)}")], "invalid --trace")
            allowed = sorted({ci[c] for c in src.classes})
        else:
            allowed = list(range(len(sc.classes)))
        tr = load_trace(src.path)
        df = tr.df
        keep = np.ones(len(df), dtype=bool)
        k = o = None
        if "class" in df.columns:
            k = _name_column(df, "class", ci, src.path)
            keep &= np.isin(k, allowed)
        if "origin" in df.columns:
            o = _name_column(df, "origin", oi, src.path)
        t = df["t"].to_numpy(dtype=float)[keep]
        if len(t) < 2 or t[-1] <= t[0]:
            raise InputError([Problem(src.path, "a trace to replay needs at least two requests at different times"
                                      + ("" if keep.all() else " of the classes given"))], "invalid trace")
        n = len(t)
        span = float(t[-1] - t[0])
        out.append(_LoadedTrace(src, t - t[0], df["input_tokens"].to_numpy(dtype=np.int64)[keep],
                                df["output_tokens"].to_numpy(dtype=np.int64)[keep],
                                None if k is None else k[keep], None if o is None else o[keep], allowed,
                                span * n / (n - 1)))
    return out


def _name_column(df, col: str, index: dict[str, int], path: str) -> np.ndarray:
    """Indices of the scenario names in trace column ``col``; an unknown name is an error naming the line."""
    names = df[col].astype(str).str.strip()
    unknown = ~names.isin(list(index))
    if unknown.any():
        i = int(np.flatnonzero(unknown.to_numpy())[0])
        raise InputError([Problem(f"{path}: line {int(df['line'].iloc[i])}, column {col!r}",
                                  f"unknown {col} {names.iloc[i]!r}; the scenario has {', '.join(index)}")])
    return names.map(index).to_numpy(dtype=np.int64)


def replay_traces(trs: list[_LoadedTrace], sc, t: int, window_ms: float, scale: float, rate: str,
            rng: np.random.Generator, notes: list[str]) -> _Arrivals:
    """Tile each trace over the window, compressed so its rate is the planned rate of its classes
    (``rate="plan"``) or its own (``"trace"``), times ``scale``; give requests classes and origins."""
    shapes = {s.name: s for s in sc.spec.shapes}
    parts = []
    for tr in trs:
        n = len(tr.t)
        own_rate = n / tr.duration_s
        if rate == "plan":
            target = float(sc.demand[tr.allowed, :, t].sum()) * scale
            if target <= 0:
                notes.append(f"slot {t}: the plan has no demand for the classes of {tr.source.label()}; not replayed")
                continue
            f = target / own_rate
        else:
            f = scale
        period_ms = tr.duration_s / f * 1000.0
        base_ms = tr.t / f * 1000.0
        copies = int(math.ceil(window_ms / period_ms))
        if copies * n > 50_000_000:
            raise InputError([Problem(f"--trace {tr.source.label()}", f"slot {t} would replay {copies * n:,} requests; "
                                      "shorten --minutes or lower --load-scale")], "trace replay too large")
        ts = (np.arange(copies)[:, None] * period_ms + base_ms[None, :]).ravel()
        sel = ts < window_ms
        ts = ts[sel]
        idx = np.tile(np.arange(n), copies)[sel]
        inp, out = tr.inp[idx], tr.out[idx]
        # classes
        if tr.k is not None:
            k = tr.k[idx]
        else:
            k = _assign_classes(tr, sc, t, shapes, rng, idx)
        if tr.o is not None:
            o = tr.o[idx]
        else:
            o = _assign_origins(sc, t, k, rng)
        parts.append((ts, k, o, inp, out))
    return _concat(parts)


def _assign_classes(tr: _LoadedTrace, sc, t: int, shapes, rng, idx) -> np.ndarray:
    """Rank matching: the trace's requests ranked by (output, input) tokens are cut into bands, one per
    shape of the allowed classes (ordered by the shape's output, then input tokens), each band as wide
    as its classes' share of the planned demand; classes sharing a shape split their band at random
    in proportion to their demand. Without demand in the slot, classes share equally."""
    rates = sc.demand[:, :, t].sum(axis=1)
    cls = tr.allowed
    w = np.array([rates[k] for k in cls], dtype=float)
    if w.sum() <= 0:
        w = np.ones(len(cls))
    groups: dict[str, list[int]] = {}
    for j, k in enumerate(cls):
        groups.setdefault(sc.spec.classes[k].shape, []).append(j)
    order = sorted(groups, key=lambda s: (shapes[s].output_tokens, shapes[s].input_tokens, s))
    n = len(tr.t)
    rank = np.empty(n, dtype=float)
    rank[np.lexsort((np.arange(n), tr.inp, tr.out))] = (np.arange(n) + 0.5) / n
    gw = np.array([w[groups[s]].sum() for s in order]) / w.sum()
    bounds = np.cumsum(gw)
    band = np.minimum(np.searchsorted(bounds, rank, side="right"), len(order) - 1)[idx]
    k = np.empty(len(idx), dtype=np.int64)
    for g, s in enumerate(order):
        sel = np.flatnonzero(band == g)
        members = groups[s]
        if len(members) == 1:
            k[sel] = cls[members[0]]
        else:
            p = w[members] / w[members].sum() if w[members].sum() > 0 else np.full(len(members), 1 / len(members))
            pick = rng.choice(len(members), size=len(sel), p=p)
            k[sel] = np.array([cls[m] for m in members])[pick]
    return k


def _assign_origins(sc, t: int, k: np.ndarray, rng) -> np.ndarray:
    o = np.zeros(len(k), dtype=np.int64)
    n_o = len(sc.origins)
    for kk in np.unique(k):
        sel = np.flatnonzero(k == kk)
        w = sc.demand[kk, :, t].astype(float)
        p = w / w.sum() if w.sum() > 0 else np.full(n_o, 1.0 / n_o)
        o[sel] = rng.choice(n_o, size=len(sel), p=p)
    return o

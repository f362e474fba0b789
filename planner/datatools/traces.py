"""Request traces as the scenario's ``demand`` table and request shapes.

:func:`load_trace`, :func:`demand_table`, :func:`trace_shapes`: a request trace with one row per
request (arrival time, input tokens, output tokens, optional class and origin) becomes the
``demand`` table (``timestamp, class, origin, rate_rps, source``): requests per slot / seconds of
the slot the trace covers (first to last request), for classes defined by token buckets
(:func:`parse_bucket`).

Every problem in an input raises :class:`~planner.errors.InputError` naming the file, the line
(the header is line 1) and the column.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from planner.datatools.common import TS_FMT, format_utc, numeric_column, parse_utc, time_column
from planner.errors import InputError, Problem
from planner.io import read_csv_strings, token, tokens

TRACE_HEADERS = {
    # canonical -> accepted spellings (lower case)
    "timestamp": ("timestamp", "time", "arrival_time"),
    "input_tokens": ("input_tokens", "contexttokens", "context_tokens", "prompt_tokens"),
    "output_tokens": ("output_tokens", "generatedtokens", "generated_tokens", "completion_tokens"),
    "class": ("class",),
    "origin": ("origin",),
}


@dataclass(frozen=True)
class Trace:
    """A request trace: one row per request, sorted by arrival."""

    df: pd.DataFrame
    """Columns: t (seconds since the first request), input_tokens, output_tokens, class?, origin?, line."""
    path: str
    absolute_start: pd.Timestamp | None
    """UTC time of the first request when the timestamps are absolute, else None (relative seconds)."""

    def __len__(self) -> int:
        return len(self.df)


def load_trace(path: str | Path) -> Trace:
    """Read a request trace CSV.

    Accepted headers: the Azure LLM inference trace 2023 (``TIMESTAMP,ContextTokens,GeneratedTokens``)
    or ``timestamp,input_tokens,output_tokens``, optionally with ``class`` and ``origin`` columns.
    Timestamps are absolute (ISO 8601 or ``YYYY-MM-DD HH:MM:SS.fffffff``; naive means UTC) or numbers
    of seconds (relative to any origin). Token counts must be whole numbers >= 0.
    """
    path = Path(path)
    df, where = read_csv_strings(path)
    low = {c.lower(): c for c in df.columns}
    cols = {}
    for canon, names in TRACE_HEADERS.items():
        c = next((low[n] for n in names if n in low), None)
        if c is not None:
            cols[canon] = c
    missing = [c for c in ("timestamp", "input_tokens", "output_tokens") if c not in cols]
    if missing:
        raise InputError([Problem(where, f"missing column(s) {', '.join(missing)} (expected TIMESTAMP,ContextTokens,"
                                  f"GeneratedTokens or timestamp,input_tokens,output_tokens; found "
                                  f"{', '.join(df.columns)})")])
    tcol = cols["timestamp"]
    raw_t = df[tcol].astype(str).str.strip()
    as_num = pd.to_numeric(raw_t, errors="coerce")
    absolute = None
    if as_num.notna().all():
        t = as_num.to_numpy(dtype=float)
        if not np.isfinite(t).all():
            i = int(np.nonzero(~np.isfinite(t))[0][0])
            raise InputError([Problem(f"{where}: line {i + 2}, column {tcol!r}", f"not a time: {token(raw_t.iloc[i])}")])
    else:
        idx = time_column(df[tcol], where, tcol, "UTC")
        absolute = idx.min()
        t = (idx.asi8 - absolute.value) / 1e9
    tok = {}
    for c in ("input_tokens", "output_tokens"):
        v = numeric_column(df[cols[c]], where, cols[c], allow_empty=False)
        bad = (v < 0) | (v != np.round(v))
        if bad.any():
            i = int(np.nonzero(bad)[0][0])
            raise InputError([Problem(f"{where}: line {i + 2}, column {cols[c]!r}",
                                      f"token count must be a whole number >= 0, not {token(df[cols[c]].iloc[i])}")])
        tok[c] = v.astype(np.int64)
    out = pd.DataFrame({"t": t - (t.min() if absolute is None else 0.0), "input_tokens": tok["input_tokens"],
                        "output_tokens": tok["output_tokens"], "line": np.arange(len(df)) + 2})
    for c in ("class", "origin"):
        if c in cols:
            v = df[cols[c]].astype(str).str.strip()
            if (v == "").any():
                i = int(np.nonzero((v == "").to_numpy())[0][0])
                raise InputError([Problem(f"{where}: line {i + 2}, column {cols[c]!r}", "empty value")])
            out[c] = v.to_numpy()
    out = out.sort_values(["t", "line"], kind="mergesort").reset_index(drop=True)
    return Trace(out, where, absolute)


_COND = re.compile(r"^\s*(in|out)\s*(<=|>=|<|>|==|=)\s*(\d+)\s*$")


@dataclass(frozen=True)
class Bucket:
    """A named token bucket: ``name:cond[,cond...]``, conditions on ``in`` and ``out`` token counts."""

    name: str
    conds: tuple[tuple[str, str, int], ...]
    text: str

    def mask(self, df: pd.DataFrame) -> np.ndarray:
        m = np.ones(len(df), bool)
        for var, op, n in self.conds:
            x = df["input_tokens" if var == "in" else "output_tokens"].to_numpy()
            m &= {"<": x < n, "<=": x <= n, ">": x > n, ">=": x >= n, "==": x == n, "=": x == n}[op]
        return m


def parse_bucket(text: str) -> Bucket:
    """Parse ``NAME:COND[,COND...]`` (COND like ``out<256``, ``in>=1024``) or ``NAME`` / ``NAME:all``."""
    name, sep, rest = text.partition(":")
    name = name.strip()
    if not name:
        raise InputError([Problem(f"--class {text!r}", "expected NAME:COND[,COND...], e.g. chat-short:out<256")])
    conds = []
    if sep and rest.strip() and rest.strip().lower() not in ("all", "*"):
        for part in rest.split(","):
            m = _COND.match(part)
            if not m:
                raise InputError([Problem(f"--class {text!r}", f"bad condition {part.strip()!r} (use in or out, "
                                          "one of < <= > >= ==, a whole number: out<256, in>=1024)")])
            conds.append((m.group(1), m.group(2), int(m.group(3))))
    return Bucket(name, tuple(conds), text.strip())


def assign_classes(trace: Trace, buckets: list[Bucket] | None) -> np.ndarray:
    """The class of every request: its bucket, or the trace's ``class`` column when no buckets are given.

    Every request must fall into exactly one bucket.
    """
    df = trace.df
    if not buckets:
        if "class" not in df:
            raise InputError([Problem(trace.path, "no class column and no --class buckets given")])
        return df["class"].to_numpy()
    names = [b.name for b in buckets]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise InputError([Problem(f"--class {dup}", "class defined twice (combine its conditions in one bucket)")])
    masks = np.vstack([b.mask(df) for b in buckets])
    hits = masks.sum(axis=0)
    problems = []
    for bad, what in ((hits == 0, "falls into no bucket"), (hits > 1, "falls into several buckets")):
        if bad.any():
            i = int(np.nonzero(bad)[0][0])
            r = df.iloc[i]
            which = ", ".join(b.name for b, m in zip(buckets, masks[:, i]) if m)
            problems.append(Problem(f"{trace.path}: line {int(r['line'])}",
                                    f"request with {int(r['input_tokens'])} input / {int(r['output_tokens'])} output "
                                    f"tokens {what}{' (' + which + ')' if which else ''}; {int(bad.sum())} "
                                    f"request(s) like it"))
    if problems:
        raise InputError(problems, "class buckets do not partition the trace")
    return np.array(names, dtype=object)[masks.argmax(axis=0)]


def trace_shapes(trace: Trace, buckets: list[Bucket] | None = None) -> pd.DataFrame:
    """Per class: count, share of requests, median and mean input and output tokens.

    Columns ``class, count, share, median_input_tokens, median_output_tokens, mean_input_tokens,
    mean_output_tokens``; classes in bucket order (or sorted when taken from the trace's column).
    """
    cls = assign_classes(trace, buckets)
    order = [b.name for b in buckets] if buckets else sorted(set(cls))
    rows = []
    n = len(trace.df)
    for c in order:
        sub = trace.df[cls == c]
        k = len(sub)
        rows.append(dict(
            **{"class": c}, count=k, share=k / n if n else 0.0,
            median_input_tokens=float(sub["input_tokens"].median()) if k else float("nan"),
            median_output_tokens=float(sub["output_tokens"].median()) if k else float("nan"),
            mean_input_tokens=float(sub["input_tokens"].mean()) if k else float("nan"),
            mean_output_tokens=float(sub["output_tokens"].mean()) if k else float("nan"),
        ))
    return pd.DataFrame(rows)


BINS_PER_OCTAVE = 4
"""Length bins of :func:`trace_distribution`: 4 per doubling (each about 19 % wide)."""


def trace_distribution(trace: Trace, buckets: list[Bucket] | None, name: str,
                       bins_per_octave: int = BINS_PER_OCTAVE) -> pd.DataFrame:
    """The joint (input, output) token distribution of class ``name``'s requests, as a shape's
    ``distribution`` table: ``input_tokens, output_tokens, weight, source``.

    Bucket rule: each length falls in bin ``floor(log2(tokens) x bins_per_octave)`` (lengths of 1 to
    2 tokens in bin 0, ...); every non-empty (input bin, output bin) cell is one row whose lengths
    are the means of its requests' lengths (rounded to whole tokens) and whose weight is its share of
    the class's requests. The mean lengths are kept to rounding; the spread within a cell is lost
    (at most one bin, about 19 %)."""
    if not (isinstance(bins_per_octave, int) and 1 <= bins_per_octave <= 64):
        raise InputError([Problem("bins_per_octave", "must be a whole number from 1 to 64")])
    cls = assign_classes(trace, buckets)
    known = [b.name for b in buckets] if buckets else sorted(set(cls))
    if name not in known:
        raise InputError([Problem("--distribution", f"unknown class {token(name, 32)} (classes: {tokens(known, 8)})")])
    sub = trace.df[cls == name]
    if sub.empty:
        raise InputError([Problem("--distribution", f"class {token(name, 32)} has no requests in {trace.path}")])
    inp = sub["input_tokens"].to_numpy(np.int64).clip(min=1)
    out = sub["output_tokens"].to_numpy(np.int64).clip(min=1)
    bi = np.floor(np.log2(inp) * bins_per_octave).astype(np.int64)
    bo = np.floor(np.log2(out) * bins_per_octave).astype(np.int64)
    g = pd.DataFrame({"bi": bi, "bo": bo, "inp": inp, "out": out}).groupby(["bi", "bo"], sort=True)
    cells = g.agg(n=("inp", "size"), inp=("inp", "mean"), out=("out", "mean")).reset_index()
    src = (f"{Path(trace.path).name}: {len(sub):,} requests of class {name}, "
           f"{bins_per_octave} length bins per octave")
    df = pd.DataFrame({"input_tokens": np.maximum(np.rint(cells["inp"]), 1).astype(np.int64),
                       "output_tokens": np.maximum(np.rint(cells["out"]), 1).astype(np.int64),
                       "weight": cells["n"] / len(sub)})
    df = df.groupby(["input_tokens", "output_tokens"], as_index=False, sort=True)["weight"].sum()
    df["weight"] = [float(f"{w:.10g}") for w in df["weight"]]
    df["source"] = src
    return df


ARRIVAL_WINDOWS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000)
"""Window lengths of :func:`arrival_ratios`, in expected requests (windows longer than half the trace are left out)."""

ARRIVAL_QUANTILES = (0.5, 0.9, 0.95, 0.99, 0.999)
"""Request-weighted levels of :func:`arrival_ratios` (the burst a request finds ahead of it)."""

ARRIVAL_TIME_QUANTILES = tuple(round((i + 0.5) / 20, 3) for i in range(20))
"""Time-weighted levels of :func:`arrival_ratios`: the midpoints of 20 equal bins (the rate at a random instant)."""


def arrival_ratios(t: np.ndarray, duration: float) -> pd.DataFrame:
    """The burstiness of arrival times ``t`` (seconds, sorted, within ``[0, duration)``), read as periodic
    with period ``duration`` (as a replay tiles a trace): for windows expected to hold ``N`` requests
    (length ``N / rate``), the count of arrivals in the window divided by ``N``, at quantiles

    * weighted by ``request``: windows ending at each arrival (itself included), the load a request
      finds arriving just before it (for Poisson arrivals about ``1 + z_q / sqrt(N)``);
    * weighted by ``time``: windows ending at 20,000 or more evenly spaced instants, the rate at a
      random moment (1 throughout for evenly spaced arrivals; often 0 in an on/off trace).

    Counted in expected requests, the ratios do not change when the trace is compressed or stretched
    in time (they describe the same traffic at any rate). Columns ``window_requests, weighting,
    quantile, ratio``."""
    t = np.asarray(t, dtype=float)
    n = len(t)
    rate = n / duration
    tt = np.concatenate([t - duration, t])
    m = max(20_000, 4 * n)
    s = (np.arange(m) + 0.5) * (duration / m)
    rows = []
    for N in ARRIVAL_WINDOWS:
        if N > n / 2:
            break
        w = N / rate
        c_req = (np.arange(n) + n + 1) - np.searchsorted(tt, t - w, side="right")
        c_time = np.searchsorted(tt, s, side="right") - np.searchsorted(tt, s - w, side="right")
        for weighting, counts, levels in (("request", c_req, ARRIVAL_QUANTILES),
                                          ("time", c_time, ARRIVAL_TIME_QUANTILES)):
            q = np.quantile(counts, levels, method="inverted_cdf")
            rows += [(N, weighting, lv, float(f"{v / N:.6g}")) for lv, v in zip(levels, q)]
    return pd.DataFrame(rows, columns=["window_requests", "weighting", "quantile", "ratio"])


def trace_arrivals(trace: Trace, buckets: list[Bucket] | None, name: str) -> pd.DataFrame:
    """The arrival burstiness of class ``name``'s requests, as a class's ``arrivals`` table:
    :func:`arrival_ratios` over the class's arrival times, the trace's span read as one period (first
    to last request, plus one mean gap, as a replay tiles it), with a ``source`` column."""
    cls = assign_classes(trace, buckets)
    known = [b.name for b in buckets] if buckets else sorted(set(cls))
    if name not in known:
        raise InputError([Problem("--arrivals", f"unknown class {token(name, 32)} (classes: {tokens(known, 8)})")])
    t_all = trace.df["t"].to_numpy(float)
    n_all = len(t_all)
    if n_all < 2 or t_all[-1] <= t_all[0]:
        raise InputError([Problem(trace.path, "needs at least two requests at different times")])
    duration = (t_all[-1] - t_all[0]) * n_all / (n_all - 1)
    t = np.sort(t_all[cls == name] - t_all[0])
    if len(t) < 4:
        raise InputError([Problem("--arrivals", f"class {token(name, 32)} has {len(t)} request(s) in {trace.path}; "
                                                "at least 4 are needed")])
    df = arrival_ratios(t, duration)
    df["source"] = (f"{Path(trace.path).name}: arrival times of {len(t):,} requests of class {name} over "
                    f"{_duration(duration)}, read as periodic")
    return df


MAX_SLOTS = 100_000
"""Most slots :func:`demand_table` builds (a trace spanning more is an error suggesting --slots/--slot-minutes)."""


MAX_ROWS = 5_000_000
"""Most rows (classes x origins x slots) :func:`demand_table` builds."""


def _duration(seconds: float) -> str:
    if seconds < 600:
        return f"{seconds:.0f} s"
    if seconds < 48 * 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 1000 * 86400:
        return f"{seconds / 86400:.1f} days"
    return f"{seconds / (365.25 * 86400):.3g} years"


def demand_table(trace: Trace, buckets: list[Bucket] | None, *, origin: str | None = None, slot_minutes: int = 60,
                 start=None, slots: int | None = None, scale: float = 1.0) -> pd.DataFrame:
    """The scenario's ``demand`` table from a trace: ``timestamp, class, origin, rate_rps, source``.

    Time: with ``start``, the first request is placed at ``start`` and every request keeps its offset
    from it (the trace is shifted onto the scenario horizon), so the slot grid starts at the first
    request and every slot but the last is fully covered. Without it, absolute trace timestamps are
    kept and the grid starts at the first request floored to the slot length (so slots line up with a
    scenario horizon on round times); the first slot is then partly covered. Relative-second traces
    need ``start``.

    The trace covers the time from its first to its last request. Slot ``k`` covers
    ``[grid + k*slot, grid + (k+1)*slot)`` (the last request belongs to the slot it ends, even when it
    falls exactly on a slot boundary) and ``rate = requests in the slot / seconds of the slot the trace
    covers x scale``: a partly covered first or last slot is not diluted. Slots after the end of the
    trace (with a larger ``slots``) cover nothing and get rate 0.

    ``slots`` defaults to the number of slots the trace spans; requests after the last slot are left
    out (and counted in the source text). Every (class, origin, slot) gets a row, 0 when empty, so each
    series is complete. More than :data:`MAX_SLOTS` slots is an error.
    """
    if slot_minutes <= 0:
        raise InputError([Problem("--slot-minutes", "must be > 0")])
    if scale < 0 or not math.isfinite(scale):
        raise InputError([Problem("--scale", "must be a finite number >= 0")])
    if slots is not None and slots < 1:
        raise InputError([Problem("--slots", "must be >= 1")])
    df = trace.df
    cls = assign_classes(trace, buckets)
    if origin is not None:
        org = np.full(len(df), origin, dtype=object)
    elif "origin" in df:
        org = df["origin"].to_numpy()
    else:
        raise InputError([Problem(trace.path, "no origin column: give --origin NAME")])
    slot_s = slot_minutes * 60.0
    t = df["t"].to_numpy(dtype=float)
    t = t - t.min()  # seconds since the first request
    span_s = float(t.max())
    name = Path(trace.path).name
    if span_s <= 0:
        raise InputError([Problem(trace.path, f"all {len(df)} request(s) arrive at the same time: the trace covers no "
                                  "time, so no rate can be derived")])
    if start is not None:
        grid = parse_utc(start, "--start")
        lead = 0.0  # seconds from the grid start to the first request
        shift = "first request placed at " + format_utc(grid)
        when = ""
    elif trace.absolute_start is not None:
        first = trace.absolute_start
        grid = first.floor(pd.Timedelta(minutes=slot_minutes)) if slot_minutes <= 1440 else first.floor("D")
        lead = (first - grid).total_seconds()
        shift = "trace timestamps kept"
        when = f" ({format_utc(first)} to {format_utc(first + pd.Timedelta(seconds=span_s))})"
    else:
        raise InputError([Problem(trace.path, "timestamps are relative seconds: give --start to place the trace")])
    end_s = lead + span_s  # the trace covers [lead, end_s] from the grid start
    need = max(1, math.ceil(end_s / slot_s))  # slots the trace touches
    if slots is None and need > MAX_SLOTS:
        n_txt = f"{need:,}" if need < 10**12 else f"{float(need):.3g}"
        raise InputError([Problem(trace.path, f"the trace spans {_duration(span_s)}, {n_txt} slots of {slot_minutes} "
                                  f"min, more than the limit of {MAX_SLOTS:,}: give longer slots (--slot-minutes) or "
                                  f"keep only the first slots (--slots N)")])
    n_slots = int(slots) if slots is not None else need
    if n_slots > MAX_SLOTS:
        raise InputError([Problem("--slots", f"{n_slots:,} slots is more than the limit of {MAX_SLOTS:,}")])
    classes = [b.name for b in buckets] if buckets else sorted(set(cls))
    origins = sorted(set(org))
    n_c, n_o = len(classes), len(origins)
    if n_c * n_o * n_slots > MAX_ROWS:
        raise InputError([Problem(trace.path, f"the table would have {n_c * n_o * n_slots:,} rows ({n_c} classes x "
                                  f"{n_o} origins x {n_slots:,} slots), more than the limit of {MAX_ROWS:,}")])
    # slot of each request; the last request closes the last slot it touches, even on a boundary
    k = np.minimum(np.floor((t + lead) / slot_s), float(need - 1))
    inside = k < n_slots
    dropped = int((~inside).sum())
    ci = pd.Categorical(cls[inside], categories=classes).codes.astype(np.int64)
    oi = pd.Categorical(org[inside], categories=origins).codes.astype(np.int64)
    flat = (ci * n_o + oi) * n_slots + k[inside].astype(np.int64)
    counts = np.bincount(flat, minlength=n_c * n_o * n_slots).reshape(n_c, n_o, n_slots)
    lo = np.arange(n_slots) * slot_s
    cover = np.clip(np.minimum(lo + slot_s, end_s) - np.maximum(lo, lead), 0.0, slot_s)  # seconds covered
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(cover > 0, counts / np.where(cover > 0, cover, 1.0), 0.0) * scale
    stamps = (grid + pd.to_timedelta(lo, unit="s")).strftime(TS_FMT).to_numpy(dtype=object)
    src = (f"trace {name}: {len(df)} requests over {_duration(span_s)}{when}, {shift}, {slot_minutes}-min slots, "
           f"rate = requests / seconds of the slot covered by the trace (first to last request) x {scale:g}")
    partial = [(j, cover[j]) for j in sorted({0, min(need, n_slots) - 1}) if 0 < cover[j] < slot_s]
    if partial:
        src += "; partly covered: " + ", ".join(f"{stamps[j]} {_duration(c)}" for j, c in partial)
    if n_slots > need:
        extra = n_slots - need
        src += f"; {extra} slot{'s' if extra != 1 else ''} from {stamps[need]} after the end of the trace: rate 0"
    if dropped:
        src += f"; {dropped} request{'s' if dropped != 1 else ''} after the last slot left out"
    return pd.DataFrame({
        "timestamp": np.tile(stamps, n_c * n_o),
        "class": np.repeat(np.array(classes, dtype=object), n_o * n_slots),
        "origin": np.tile(np.repeat(np.array(origins, dtype=object), n_slots), n_c),
        "rate_rps": np.round(rate.reshape(-1), 6),
        "source": src,
    })

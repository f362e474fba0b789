"""Turn users' own carbon-intensity exports and request traces into scenario tables.

Carbon (:func:`carbon_table`): hourly grid carbon intensity exports, one file per scenario region,
become the ``carbon_intensity`` table (``timestamp, region, gco2_per_kwh, source``) for a window.
Two formats are read, detected from the header (or forced with ``fmt``):

* ``electricitymaps``: the Electricity Maps CSV export (``Datetime (UTC)``, ``Zone Id``,
  ``Carbon Intensity gCO₂eq/kWh (direct)``, ``... (LCA)``, ...; the newer "Carbon intensity ...
  (Life cycle)" spelling is accepted too). ``signal`` picks the direct or the life-cycle column.
* ``eia930``: US EIA-930 hourly data, either the official balance file (``Balancing Authority``,
  ``UTC Time at End of Hour``, ``Net Generation (MW) from Coal`` ... ``from Wind``) or the
  pre-computed variant with short fuel columns (``timestamp, WND, SUN, WAT, OIL, NG, COL, NUC, OTH,
  avg_CI``). Intensity = generation-weighted mean of per-fuel emission factors
  (:data:`EIA_FACTORS`); negative net generation (storage charging) counts as 0.

Demand (:func:`load_trace`, :func:`demand_table`, :func:`trace_shapes`): a request trace with one
row per request (arrival time, input tokens, output tokens, optional class and origin) becomes the
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

from .errors import InputError, Problem
from .io import read_csv_strings, token, tokens

TS_FMT = "%Y-%m-%dT%H:%M:%SZ"
SIGNALS = ("direct", "lifecycle")
FORMATS = ("electricitymaps", "eia930")

# Emission factors per fuel, gCO2eq per kWh generated.
# lifecycle: IPCC AR5 WG3 Annex III (2014) life-cycle medians (coal 820, gas 490, oil 650 as used by
#   Electricity Maps for oil, biomass/other 230, solar 41, hydro 24, nuclear 12, wind 11); these
#   reproduce the avg_CI column of the shared eia-930-2022 files exactly.
# direct: combustion only, approximate US fleet output emission rates (EPA eGRID 2022: coal
#   ~2,200 lb/MWh, natural gas ~900 lb/MWh, oil ~1,700 lb/MWh, rounded); zero for non-combustion
#   sources and for "other" (mostly biomass, counted as biogenic).
EIA_FACTORS = {
    "lifecycle": {"COL": 820.0, "NG": 490.0, "OIL": 650.0, "OTH": 230.0, "SUN": 41.0, "WAT": 24.0,
                  "NUC": 12.0, "WND": 11.0},
    "direct": {"COL": 1000.0, "NG": 410.0, "OIL": 770.0, "OTH": 0.0, "SUN": 0.0, "WAT": 0.0,
               "NUC": 0.0, "WND": 0.0},
}
EIA_FUELS = ("WND", "SUN", "WAT", "OIL", "NG", "COL", "NUC", "OTH")
EIA_OFFICIAL_FUELS = {  # "Net Generation (MW) from <X>" -> short fuel code
    "coal": "COL", "natural gas": "NG", "nuclear": "NUC", "all petroleum products": "OIL", "petroleum": "OIL",
    "hydropower and pumped storage": "WAT", "hydro": "WAT", "solar": "SUN", "wind": "WND",
    "other fuel sources": "OTH", "other": "OTH", "unknown fuel sources": "OTH", "unknown": "OTH",
}


# --------------------------------------------------------------------------------------------
# small helpers


def _utc(value, what: str) -> pd.Timestamp:
    """Parse a window bound (ISO 8601; naive means UTC)."""
    if isinstance(value, pd.Timestamp):
        ts = value
    else:
        try:
            ts = pd.Timestamp(value)
        except (ValueError, TypeError):
            raise InputError([Problem(what, f"not an ISO 8601 time: {value!r}")]) from None
    if ts is pd.NaT:
        raise InputError([Problem(what, f"not an ISO 8601 time: {value!r}")])
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _numbers(s: pd.Series, where: str, col: str, allow_empty: bool) -> np.ndarray:
    """Parse a column of numbers (thousands separators allowed); errors name line and column."""
    t = s.astype(str).str.strip().str.replace(",", "", regex=False)
    empty = t == ""
    num = pd.to_numeric(t.where(~empty, "nan"), errors="coerce").to_numpy(dtype=float)
    bad = np.isnan(num) & ~empty.to_numpy() | np.isinf(num)
    if not allow_empty:
        bad |= empty.to_numpy()
    if bad.any():
        i = int(np.nonzero(bad)[0][0])
        what = "empty value" if t.iloc[i] == "" else f"not a number: {token(s.iloc[i])}"
        n = int(bad.sum())
        more = f" ({n - 1} more row{'s' if n > 2 else ''} like it)" if n > 1 else ""
        raise InputError([Problem(f"{where}: line {i + 2}, column {col!r}", what + more)])
    return num


_OFFSET = re.compile(r"\d\s*(?:Z|UTC|GMT|[+-]\d\d:?\d\d)$", re.IGNORECASE)  # a time ending in a UTC offset


def _parse_times(t: pd.Series, fmt: str | None, utc: bool) -> pd.Series:
    parsed = pd.to_datetime(t, errors="coerce", format=fmt or "ISO8601", utc=utc)
    if parsed.isna().any() and fmt is None:
        parsed = pd.to_datetime(t, errors="coerce", format="mixed", utc=utc)
    return parsed


def _first_unparsable(t: pd.Series) -> int | None:
    """Index of the first value pandas cannot read on its own (for an error message), or None."""
    for i, v in enumerate(t):
        try:
            if pd.isna(pd.to_datetime(v, utc=True, format="mixed")):
                return i
        except (ValueError, OverflowError, TypeError):
            return i
    return None


def _times(s: pd.Series, where: str, col: str, tz: str, fmt: str | None = None) -> pd.DatetimeIndex:
    """Parse a time column to UTC.

    Values with a UTC offset (``Z``, ``+01:00``) are converted to UTC each by its own offset, so a column
    may mix offsets (local time across a DST change, or ``Z`` next to ``+05:00``). Naive values are
    local time in ``tz``; naive values next to offset ones are accepted only when ``tz`` is UTC.
    """
    t = s.astype(str).str.strip()
    try:
        try:
            parsed = _parse_times(t, fmt, utc=False)
        except ValueError:  # "Mixed timezones detected": offsets differ, or naive values next to offset ones
            has_off = t.str.contains(_OFFSET).to_numpy()
            if has_off.any() and not has_off.all() and str(tz).upper() not in ("UTC", "ETC/UTC", "GMT", "Z"):
                i = int(np.nonzero(~has_off)[0][0])
                j = int(np.nonzero(has_off)[0][0])
                raise InputError([Problem(f"{where}: line {i + 2}, column {col!r}",
                                          f"{token(s.iloc[i])} has no UTC offset but line {j + 2} ({token(s.iloc[j])}) has "
                                          f"one: give every time an offset, or none (naive times are read as {tz})")])
            parsed = _parse_times(t, fmt, utc=True)  # each value converted to UTC by its own offset
    except (ValueError, OverflowError, TypeError) as e:
        i = _first_unparsable(t)
        loc = f"{where}: line {i + 2}, column {col!r}" if i is not None else f"{where}: column {col!r}"
        raise InputError([Problem(loc, f"cannot read the times: {str(e).strip()}")]) from None
    bad = parsed.isna().to_numpy()
    if bad.any():
        i = int(np.nonzero(bad)[0][0])
        raise InputError([Problem(f"{where}: line {i + 2}, column {col!r}", f"not a date/time: {token(s.iloc[i])}")])
    idx = pd.DatetimeIndex(parsed)
    if idx.tz is None:
        try:
            idx = idx.tz_localize(tz, ambiguous="infer", nonexistent="raise")
        except Exception as e:  # ambiguous/nonexistent local times (DST), unknown zone
            raise InputError([Problem(f"{where}: column {col!r}",
                                      f"cannot read the naive times as {tz}: {e} (give offsets, or --tz)")]) from None
    return idx.tz_convert("UTC").as_unit("ns")


# --------------------------------------------------------------------------------------------
# carbon


def _find(cols: list[str], *needles: str) -> str | None:
    for c in cols:
        lc = c.lower()
        if all(n in lc for n in needles):
            return c
    return None


def detect_carbon_format(columns: list[str]) -> str | None:
    """``electricitymaps``, ``eia930`` or None, from a header."""
    low = [c.lower() for c in columns]
    if any("carbon intensity" in c for c in low) and any(c.startswith("datetime") for c in low):
        return "electricitymaps"
    if any(c.startswith("net generation (mw) from") for c in low) and any("utc time" in c for c in low):
        return "eia930"
    if "avg_ci" in low or all(f.lower() in low for f in EIA_FUELS):
        return "eia930"
    return None


def _select_key(df: pd.DataFrame, col: str | None, key: str | None, where: str, what: str) -> pd.DataFrame:
    if col is None:
        if key:
            raise InputError([Problem(where, f"@{key} given but the file has no {what} column")])
        return df
    vals = df[col].astype(str).str.strip()
    found = sorted(set(vals))
    if key:
        if key not in found:
            raise InputError([Problem(f"{where}: column {col!r}", f"{what} {key!r} not in the file (found: "
                                      f"{tokens(found, 10)})")])
        return df[vals == key]
    if len(found) > 1:
        raise InputError([Problem(f"{where}: column {col!r}", f"the file holds several {what.replace('authority', 'authoritie')}s ({tokens(found, 10)}); "
                                  f"pick one with REGION=FILE@{token(found[0], 32)[1:-1]}")])
    return df


def _series_em(df: pd.DataFrame, where: str, signal: str, key: str | None, tz: str):
    cols = list(df.columns)
    tcol = next((c for c in cols if c.lower().startswith("datetime")), None)
    zcol = _find(cols, "zone id")
    df = _select_key(df, zcol, key, where, "zone")
    if signal == "direct":
        vcol = _find(cols, "carbon intensity", "direct")
    else:
        vcol = _find(cols, "carbon intensity", "lca") or _find(cols, "carbon intensity", "life")
    if vcol is None:
        raise InputError([Problem(where, f"no {signal} carbon-intensity column (header: {', '.join(cols)})")])
    zone = str(df[zcol].iloc[0]).strip() if zcol else Path(where).stem
    naive_tz = "UTC" if "utc" in tcol.lower() else tz
    ts = _times(df[tcol], where, tcol, naive_tz)
    vals = _numbers(df[vcol], where, vcol, allow_empty=True)
    src = f"Electricity Maps export {Path(where).name}, zone {zone}, {signal} intensity"
    return ts, vals, df.index.to_numpy(), src


def _series_eia(df: pd.DataFrame, where: str, signal: str, key: str | None, tz: str):
    cols = list(df.columns)
    official = any(c.lower().startswith("net generation (mw) from") for c in cols)
    if official:
        bcol = _find(cols, "balancing authority")
        df = _select_key(df, bcol, key, where, "balancing authority")
        tcol = _find(cols, "utc time at end of hour")
        ts = (_times(df[tcol], where, tcol, "UTC", fmt=None) - pd.Timedelta(hours=1)).as_unit("ns")  # end -> start of hour
        fuels: dict[str, np.ndarray] = {}
        adjusted = any("adjusted" in c.lower() for c in cols if c.lower().startswith("net generation (mw) from"))
        for c in cols:
            lc = c.lower()
            if not lc.startswith("net generation (mw) from"):
                continue
            if adjusted and "adjusted" not in lc:
                continue
            name = lc[len("net generation (mw) from"):].replace("(adjusted)", "").replace("(imputed)", "").strip()
            code = EIA_OFFICIAL_FUELS.get(name)
            if code is None:
                continue
            v = _numbers(df[c], where, c, allow_empty=True)
            fuels[code] = np.where(np.isnan(v), np.nan, np.clip(v, 0, None)) + fuels.get(code, 0.0)
        ba = str(df[bcol].iloc[0]).strip() if bcol else Path(where).stem
        label = f"EIA-930 balancing authority {ba} ({Path(where).name})"
    else:
        tcol = "timestamp" if "timestamp" in cols else cols[0]
        ts = _times(df[tcol], where, tcol or "(first column)", tz)
        missing = [f for f in EIA_FUELS if f not in cols]
        if signal == "lifecycle" and "avg_CI" in cols:
            vals = _numbers(df["avg_CI"], where, "avg_CI", allow_empty=True)
            return ts, vals, df.index.to_numpy(), (f"EIA-930 {Path(where).stem} pre-computed avg_CI "
                                                   f"({Path(where).name}; IPCC life-cycle factors)")
        if missing:
            raise InputError([Problem(where, f"missing fuel column(s) {', '.join(missing)} needed for the "
                                      f"{signal} signal")])
        fuels = {f: np.clip(_numbers(df[f], where, f, allow_empty=True), 0, None) for f in EIA_FUELS}
        label = f"EIA-930 {Path(where).stem} ({Path(where).name})"
    if not fuels:
        raise InputError([Problem(where, "no net generation by fuel columns")])
    fac = EIA_FACTORS[signal]
    gen = np.vstack([fuels[f] for f in fuels])
    w = np.array([fac[f] for f in fuels])
    tot = gen.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        vals = (w[:, None] * gen).sum(axis=0) / tot
    vals[~np.isfinite(vals)] = np.nan  # an empty row or zero total generation is a missing value
    src = f"{label}, {signal} intensity from net generation by fuel x emission factors (docs/data-tools.md)"
    return ts, vals, df.index.to_numpy(), src


def _fmt(t: pd.Timestamp) -> str:
    return t.strftime(TS_FMT)


def carbon_series(path: str | Path, start, end, signal: str = "direct", fmt: str | None = None,
                  key: str | None = None, tz: str = "UTC", fill_hours: int = 0) -> tuple[pd.Series, str]:
    """One file's carbon-intensity series over ``[start, end)``: (values indexed by UTC time, source text).

    The series keeps the file's own step, its most common spacing between rows (hourly for both
    formats); a row off that grid is an error. It starts at the last point at or before ``start`` and
    must cover ``end`` (the last point before ``end`` holds for one step). Duplicated timestamps (a DST change in a local-time
    export, a repeated row) are dropped when their values agree and are an error when they differ.
    A missing or empty value is a gap: an error naming the file and line, unless it spans at most
    ``fill_hours`` hours, in which case it is filled by linear interpolation (and the source says so).
    """
    path = Path(path)
    if signal not in SIGNALS:
        raise InputError([Problem("--signal", f"must be one of {', '.join(SIGNALS)}, not {signal!r}")])
    df, where = read_csv_strings(path)
    f = fmt or detect_carbon_format(list(df.columns))
    if f is None:
        raise InputError([Problem(where, "unrecognised header (expected an Electricity Maps export or EIA-930 "
                                  f"data; use --format): {', '.join(df.columns[:8])}")])
    if f not in FORMATS:
        raise InputError([Problem("--format", f"must be one of {', '.join(FORMATS)}, not {f!r}")])
    if f == "electricitymaps":
        if detect_carbon_format(list(df.columns)) != "electricitymaps":
            raise InputError([Problem(where, "not an Electricity Maps export (no 'Datetime' and 'Carbon Intensity' "
                                      "columns)")])
        ts, vals, rows, src = _series_em(df, where, signal, key, tz)
    else:
        if detect_carbon_format(list(df.columns)) != "eia930":
            raise InputError([Problem(where, "not EIA-930 data (no net generation by fuel or avg_CI columns)")])
        ts, vals, rows, src = _series_eia(df, where, signal, key, tz)
    lines = rows + 2
    neg = np.nonzero(vals < 0)[0]
    if neg.size:
        raise InputError([Problem(f"{where}: line {lines[neg[0]]}", f"negative carbon intensity {vals[neg[0]]:g}")])
    order = np.argsort(ts.asi8, kind="stable")
    ts, vals, lines = ts[order], vals[order], lines[order]
    dup = np.nonzero(np.diff(ts.asi8) == 0)[0]
    keep = np.ones(len(ts), bool)
    for i in dup:
        a, b = vals[i], vals[i + 1]
        if not (a == b or (np.isnan(a) and np.isnan(b))):
            raise InputError([Problem(f"{where}: lines {lines[i]} and {lines[i + 1]}",
                                      f"two different values ({a:g}, {b:g}) for {_fmt(ts[i])} (UTC)")])
        keep[i + 1] = False
    ts, vals, lines = ts[keep], vals[keep], lines[keep]
    start, end = _utc(start, "--start").as_unit("ns"), _utc(end, "--end").as_unit("ns")
    if end <= start:
        raise InputError([Problem("--end", "must be after --start")])
    if len(ts) < 2:
        raise InputError([Problem(where, "needs at least two timestamps")])
    # the file's step is its most common spacing between rows (the smallest one on a tie), so that one
    # irregular row is reported as off the grid rather than shrinking the step
    spacings, freq = np.unique(np.diff(ts.asi8), return_counts=True)
    step = int(spacings[np.argmax(freq)])
    step_h = step / 3.6e12
    first = np.searchsorted(ts.asi8, start.value, side="right") - 1
    if first < 0:
        raise InputError([Problem(where, f"starts at {_fmt(ts[0])}, after the window start {_fmt(start)}")])
    last = np.searchsorted(ts.asi8, end.value, side="left")  # exclusive
    covered = pd.Timestamp(ts[last - 1].value + step, tz="UTC")  # a point holds for one step
    if covered < end:
        if last == len(ts):
            msg = (f"ends at {_fmt(ts[last - 1])} (line {lines[last - 1]}), which holds until {_fmt(covered)} with "
                   f"the file's {step_h:g}-hour step, before the window end {_fmt(end)}")
        else:
            msg = (f"no value from {_fmt(covered)} to {_fmt(ts[last])} (the window ends {_fmt(end)}): the last point "
                   f"before the window end is {_fmt(ts[last - 1])} (line {lines[last - 1]}), which holds for one "
                   f"{step_h:g}-hour step, and the next is {_fmt(ts[last])} (line {lines[last]})")
        raise InputError([Problem(where, msg)])
    ts, vals, lines = ts[first:last], vals[first:last], lines[first:last]
    # gaps: missing timestamps or empty values
    full = pd.date_range(ts[0], ts[-1], freq=pd.Timedelta(step)).as_unit("ns")
    s = pd.Series(vals, index=ts).reindex(full)
    odd = ts.asi8[~np.isin(ts.asi8, full.asi8)]
    if odd.size:
        i = int(np.nonzero(ts.asi8 == odd[0])[0][0])
        raise InputError([Problem(f"{where}: line {lines[i]}",
                                  f"timestamp {_fmt(ts[i])} is off the file's {step_h:g}-hour grid (its most common "
                                  f"spacing between rows): an irregular row?")])
    if s.isna().any():
        line_of = dict(zip(ts.asi8, lines))
        na = s.isna().to_numpy()
        # runs of missing points
        runs, i = [], 0
        while i < len(na):
            if na[i]:
                j = i
                while j < len(na) and na[j]:
                    j += 1
                runs.append((i, j))
                i = j
            else:
                i += 1
        too_long = [(i, j) for i, j in runs if (j - i) * step_h > fill_hours or i == 0 or j == len(na)]
        if too_long:
            i, j = too_long[0]
            t0 = full[i]
            ln = line_of.get(t0.value)
            loc = f"{where}: line {ln}" if ln is not None else f"{where}: after line {line_of.get(full[i - 1].value, '?')}"
            span = f"{_fmt(t0)} to {_fmt(full[j - 1])}" if j - i > 1 else _fmt(t0)
            hint = (f"; --fill {math.ceil((j - i) * step_h)} would interpolate it" if 0 < i and j < len(na) else "")
            raise InputError([Problem(loc, f"no value for {span} ({(j - i) * step_h:g} h gap{hint})")])
        s = s.interpolate(method="time", limit_area="inside")
        n = int(na.sum())
        src += f"; {n} missing hour{'s' if n != 1 else ''} linearly interpolated"
    return s, src


def carbon_table(sources: dict[str, str | Path | tuple], start, end, signal: str = "direct", fmt: str | None = None,
                 tz: str = "UTC", fill_hours: int = 0) -> pd.DataFrame:
    """The scenario's ``carbon_intensity`` table for ``[start, end)`` from one export per region.

    ``sources`` maps a scenario region to a file path, or to ``(path, key)`` where ``key`` picks the
    zone (Electricity Maps) or balancing authority (EIA-930) in a file holding several.
    Returns columns ``timestamp, region, gco2_per_kwh, source`` (ISO 8601 UTC, values rounded to
    0.01), rows sorted by region order given, then time. See :func:`carbon_series` for the rules.
    """
    if not sources:
        raise InputError([Problem("sources", "give at least one REGION=FILE")])
    frames, problems = [], []
    for region, spec in sources.items():
        path, key = (spec if isinstance(spec, tuple) else (spec, None))
        try:
            s, src = carbon_series(path, start, end, signal=signal, fmt=fmt, key=key, tz=tz, fill_hours=fill_hours)
        except InputError as e:
            problems.extend(e.problems)
            continue
        frames.append(pd.DataFrame({"timestamp": [_fmt(t) for t in s.index], "region": region,
                                    "gco2_per_kwh": np.round(s.to_numpy(dtype=float), 2), "source": src}))
    if problems:
        raise InputError(problems)
    return pd.concat(frames, ignore_index=True)


def parse_region_map(items: list[str]) -> dict[str, str | tuple[str, str]]:
    """``["us-west=US-CAL-CISO.csv", "us-east=eia.csv@PJM"]`` -> {region: path or (path, key)}."""
    out: dict[str, str | tuple[str, str]] = {}
    problems = []
    for it in items:
        region, sep, rest = it.partition("=")
        region = region.strip()
        if not sep or not region or not rest.strip():
            problems.append(Problem(repr(it), "expected REGION=FILE (or REGION=FILE@ZONE_OR_BA)"))
            continue
        if region in out:
            problems.append(Problem(repr(it), f"region {region!r} given twice"))
            continue
        rest = rest.strip()
        if "@" in rest and not Path(rest).exists():
            path, _, key = rest.rpartition("@")
            if path and key and "/" not in key:
                out[region] = (path, key)
                continue
        out[region] = rest
    if problems:
        raise InputError(problems, "invalid region mapping")
    return out


def table_csv(df: pd.DataFrame) -> str:
    return df.to_csv(index=False, lineterminator="\n", float_format="%.10g")


# --------------------------------------------------------------------------------------------
# demand

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
        idx = _times(df[tcol], where, tcol, "UTC")
        absolute = idx.min()
        t = (idx.asi8 - absolute.value) / 1e9
    tok = {}
    for c in ("input_tokens", "output_tokens"):
        v = _numbers(df[cols[c]], where, cols[c], allow_empty=False)
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
        grid = _utc(start, "--start")
        lead = 0.0  # seconds from the grid start to the first request
        shift = "first request placed at " + _fmt(grid)
        when = ""
    elif trace.absolute_start is not None:
        first = trace.absolute_start
        grid = first.floor(pd.Timedelta(minutes=slot_minutes)) if slot_minutes <= 1440 else first.floor("D")
        lead = (first - grid).total_seconds()
        shift = "trace timestamps kept"
        when = f" ({_fmt(first)} to {_fmt(first + pd.Timedelta(seconds=span_s))})"
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

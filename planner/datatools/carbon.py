"""Users' own carbon-intensity exports as the scenario's ``carbon_intensity`` table.

:func:`carbon_table`: hourly grid carbon intensity exports, one file per scenario region, become the
``carbon_intensity`` table (``timestamp, region, gco2_per_kwh, source``) for a window. Two formats
are read, detected from the header (or forced with ``fmt``):

* ``electricitymaps``: the Electricity Maps CSV export (``Datetime (UTC)``, ``Zone Id``,
  ``Carbon Intensity gCO₂eq/kWh (direct)``, ``... (LCA)``, ...; the newer "Carbon intensity ...
  (Life cycle)" spelling is accepted too). ``signal`` picks the direct or the life-cycle column.
* ``eia930``: US EIA-930 hourly data, either the official balance file (``Balancing Authority``,
  ``UTC Time at End of Hour``, ``Net Generation (MW) from Coal`` ... ``from Wind``) or the
  pre-computed variant with short fuel columns (``timestamp, WND, SUN, WAT, OIL, NG, COL, NUC, OTH,
  avg_CI``). Intensity = generation-weighted mean of per-fuel emission factors
  (:data:`EIA_FACTORS`); negative net generation (storage charging) counts as 0.

Every problem in an input raises :class:`~planner.errors.InputError` naming the file, the line
(the header is line 1) and the column.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from planner.datatools.common import find_column, format_utc, numeric_column, parse_utc, time_column
from planner.errors import InputError, Problem
from planner.io import read_csv_strings, token, tokens

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
    zcol = find_column(cols, "zone id")
    df = _select_key(df, zcol, key, where, "zone")
    if signal == "direct":
        vcol = find_column(cols, "carbon intensity", "direct")
    else:
        vcol = find_column(cols, "carbon intensity", "lca") or find_column(cols, "carbon intensity", "life")
    if vcol is None:
        raise InputError([Problem(where, f"no {signal} carbon-intensity column (header: {', '.join(cols)})")])
    zone = str(df[zcol].iloc[0]).strip() if zcol else Path(where).stem
    naive_tz = "UTC" if "utc" in tcol.lower() else tz
    ts = time_column(df[tcol], where, tcol, naive_tz)
    vals = numeric_column(df[vcol], where, vcol, allow_empty=True)
    src = f"Electricity Maps export {Path(where).name}, zone {zone}, {signal} intensity"
    return ts, vals, df.index.to_numpy(), src


def _series_eia(df: pd.DataFrame, where: str, signal: str, key: str | None, tz: str):
    cols = list(df.columns)
    official = any(c.lower().startswith("net generation (mw) from") for c in cols)
    if official:
        bcol = find_column(cols, "balancing authority")
        df = _select_key(df, bcol, key, where, "balancing authority")
        tcol = find_column(cols, "utc time at end of hour")
        ts = (time_column(df[tcol], where, tcol, "UTC", fmt=None) - pd.Timedelta(hours=1)).as_unit("ns")  # end -> start of hour
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
            v = numeric_column(df[c], where, c, allow_empty=True)
            fuels[code] = np.where(np.isnan(v), np.nan, np.clip(v, 0, None)) + fuels.get(code, 0.0)
        ba = str(df[bcol].iloc[0]).strip() if bcol else Path(where).stem
        label = f"EIA-930 balancing authority {ba} ({Path(where).name})"
    else:
        tcol = "timestamp" if "timestamp" in cols else cols[0]
        ts = time_column(df[tcol], where, tcol or "(first column)", tz)
        missing = [f for f in EIA_FUELS if f not in cols]
        if signal == "lifecycle" and "avg_CI" in cols:
            vals = numeric_column(df["avg_CI"], where, "avg_CI", allow_empty=True)
            return ts, vals, df.index.to_numpy(), (f"EIA-930 {Path(where).stem} pre-computed avg_CI "
                                                   f"({Path(where).name}; IPCC life-cycle factors)")
        if missing:
            raise InputError([Problem(where, f"missing fuel column(s) {', '.join(missing)} needed for the "
                                      f"{signal} signal")])
        fuels = {f: np.clip(numeric_column(df[f], where, f, allow_empty=True), 0, None) for f in EIA_FUELS}
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
                                      f"two different values ({a:g}, {b:g}) for {format_utc(ts[i])} (UTC)")])
        keep[i + 1] = False
    ts, vals, lines = ts[keep], vals[keep], lines[keep]
    start, end = parse_utc(start, "--start").as_unit("ns"), parse_utc(end, "--end").as_unit("ns")
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
        raise InputError([Problem(where, f"starts at {format_utc(ts[0])}, after the window start {format_utc(start)}")])
    last = np.searchsorted(ts.asi8, end.value, side="left")  # exclusive
    covered = pd.Timestamp(ts[last - 1].value + step, tz="UTC")  # a point holds for one step
    if covered < end:
        if last == len(ts):
            msg = (f"ends at {format_utc(ts[last - 1])} (line {lines[last - 1]}), which holds until {format_utc(covered)} with "
                   f"the file's {step_h:g}-hour step, before the window end {format_utc(end)}")
        else:
            msg = (f"no value from {format_utc(covered)} to {format_utc(ts[last])} (the window ends {format_utc(end)}): the last point "
                   f"before the window end is {format_utc(ts[last - 1])} (line {lines[last - 1]}), which holds for one "
                   f"{step_h:g}-hour step, and the next is {format_utc(ts[last])} (line {lines[last]})")
        raise InputError([Problem(where, msg)])
    ts, vals, lines = ts[first:last], vals[first:last], lines[first:last]
    # gaps: missing timestamps or empty values
    full = pd.date_range(ts[0], ts[-1], freq=pd.Timedelta(step)).as_unit("ns")
    s = pd.Series(vals, index=ts).reindex(full)
    odd = ts.asi8[~np.isin(ts.asi8, full.asi8)]
    if odd.size:
        i = int(np.nonzero(ts.asi8 == odd[0])[0][0])
        raise InputError([Problem(f"{where}: line {lines[i]}",
                                  f"timestamp {format_utc(ts[i])} is off the file's {step_h:g}-hour grid (its most common "
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
            span = f"{format_utc(t0)} to {format_utc(full[j - 1])}" if j - i > 1 else format_utc(t0)
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
        frames.append(pd.DataFrame({"timestamp": [format_utc(t) for t in s.index], "region": region,
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

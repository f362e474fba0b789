"""Shared parsing for the data tools: UTC timestamps, numeric columns with every bad cell named, and
the CSV form of a finished table."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from planner.errors import InputError, Problem
from planner.io import token

TS_FMT = "%Y-%m-%dT%H:%M:%SZ"


def parse_utc(value, what: str) -> pd.Timestamp:
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


def numeric_column(s: pd.Series, where: str, col: str, allow_empty: bool) -> np.ndarray:
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


def time_column(s: pd.Series, where: str, col: str, tz: str, fmt: str | None = None) -> pd.DatetimeIndex:
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


def find_column(cols: list[str], *needles: str) -> str | None:
    for c in cols:
        lc = c.lower()
        if all(n in lc for n in needles):
            return c
    return None


def format_utc(t: pd.Timestamp) -> str:
    return t.strftime(TS_FMT)


def table_csv(df: pd.DataFrame) -> str:
    return df.to_csv(index=False, lineterminator="\n", float_format="%.10g")

"""``plan data``: turn users' own carbon exports and request traces into scenario tables."""

from __future__ import annotations

import json
import math
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

from planner.cli.console import err
from planner.errors import InputError, Problem
from planner.io import atomic_write_text, check_outputs, write_stdout

data_app = typer.Typer(help="Build scenario tables (carbon, demand) from your own exports and traces.",
                       no_args_is_help=True, rich_markup_mode=None)


class SignalOpt(str, Enum):
    direct = "direct"
    lifecycle = "lifecycle"


class CarbonFormatOpt(str, Enum):
    auto = "auto"
    electricitymaps = "electricitymaps"
    eia930 = "eia930"


def _write(text: str, output: Optional[Path], what: str) -> None:
    if output is None:
        write_stdout(text)
    else:
        atomic_write_text(output, text)
        err.print(f"{what} written to {output}")


def _check_out(output: Optional[Path], inputs=()) -> None:
    if output is not None:
        check_outputs({"-o": output}, [str(p).split("=", 1)[-1].split("@")[0] for p in inputs])


MAX_HOURS = 24 * 366 * 20
"""The longest window ``plan data carbon`` builds (20 years of hours)."""


@data_app.command("carbon")
def carbon(
    sources: List[str] = typer.Argument(..., metavar="REGION=FILE[@ZONE|@BA]...",
                                        help="One export per scenario region, e.g. us-west=US-CAL-CISO.csv; "
                                             "@KEY picks the zone or balancing authority in a file holding several."),
    start: str = typer.Option(..., "--start", help="Window start, ISO 8601 (naive = UTC)."),
    end: Optional[str] = typer.Option(None, "--end", help="Window end (exclusive), ISO 8601."),
    hours: Optional[int] = typer.Option(None, "--hours", min=1, help="Window length in hours (instead of --end)."),
    signal: SignalOpt = typer.Option(SignalOpt.direct, "--signal", help="direct (combustion) or lifecycle intensity."),
    fmt: CarbonFormatOpt = typer.Option(CarbonFormatOpt.auto, "--format", help="Input format (default: from the header)."),
    tz: str = typer.Option("UTC", "--tz", help="Time zone of naive timestamps in columns not marked UTC."),
    fill: int = typer.Option(0, "--fill", min=0, help="Interpolate gaps of at most this many hours (default 0: a gap is an error)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Output CSV (default: stdout)."),
):
    """Carbon-intensity table (timestamp,region,gco2_per_kwh,source) from Electricity Maps or EIA-930 exports."""
    import pandas as pd

    from planner.datatools.carbon import carbon_table, parse_region_map
    from planner.datatools.common import table_csv

    if (end is None) == (hours is None):
        raise InputError([Problem("--end/--hours", "give exactly one of --end and --hours")])
    if hours is not None and hours > MAX_HOURS:
        raise InputError([Problem("--hours", f"{hours} is more than {MAX_HOURS:,} hours (20 years)")])
    _check_out(output, sources)
    if hours is not None:
        from planner.datatools.common import parse_utc

        end = parse_utc(start, "--start") + pd.Timedelta(hours=hours)
    df = carbon_table(parse_region_map(sources), start, end, signal=signal.value,
                      fmt=None if fmt == CarbonFormatOpt.auto else fmt.value, tz=tz, fill_hours=fill)
    _write(table_csv(df), output, f"carbon table ({len(df)} rows)")


@data_app.command("demand")
def demand(
    trace: Path = typer.Argument(..., metavar="TRACE.csv", help="Request trace: TIMESTAMP,ContextTokens,GeneratedTokens "
                                 "(Azure 2023) or timestamp,input_tokens,output_tokens [,class][,origin]."),
    classes: Optional[List[str]] = typer.Option(None, "--class", metavar="NAME:COND[,COND]",
                                                help="A class bucket, e.g. chat-short:out<256 (repeat; default: the trace's class column)."),
    origin: Optional[str] = typer.Option(None, "--origin", help="Origin of every request (default: the trace's origin column)."),
    slot_minutes: int = typer.Option(60, "--slot-minutes", min=1, help="Slot length in minutes."),
    start: Optional[str] = typer.Option(None, "--start", help="Place the first request at this time (ISO 8601; the slots then start at it); default: keep absolute trace times, slots on the clock."),
    slots: Optional[int] = typer.Option(None, "--slots", min=1, help="Number of slots (default: as many as the trace spans; at most 100,000)."),
    scale: float = typer.Option(1.0, "--scale", help="Multiply every rate by this factor."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Output CSV (default: stdout)."),
):
    """Demand table (timestamp,class,origin,rate_rps,source) from a request trace and token buckets.

    rate_rps = requests in the slot / seconds of the slot the trace covers (first to last request).
    """
    import math as _m

    from planner.datatools.common import table_csv
    from planner.datatools.traces import demand_table, load_trace, parse_bucket

    if not (_m.isfinite(scale) and scale > 0):
        raise InputError([Problem("--scale", f"must be a positive finite number, got {scale}")])
    buckets = [parse_bucket(c) for c in classes] if classes else None
    _check_out(output, [trace])
    tr = load_trace(trace)
    df = demand_table(tr, buckets, origin=origin, slot_minutes=slot_minutes, start=start, slots=slots, scale=scale)
    _write(table_csv(df), output, f"demand table ({len(df)} rows)")


@data_app.command("shapes")
def shapes(
    trace: Path = typer.Argument(..., metavar="TRACE.csv"),
    classes: Optional[List[str]] = typer.Option(None, "--class", metavar="NAME:COND[,COND]", help="Class bucket (repeat)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    distribution: Optional[str] = typer.Option(None, "--distribution", metavar="CLASS", help="Write the class's joint (input, output) token distribution as a shape distribution table (CSV: input_tokens, output_tokens, weight, source) instead of the summary."),
    arrivals: Optional[str] = typer.Option(None, "--arrivals", metavar="CLASS", help="Write the burstiness of the class's arrival times as a class's arrivals table (CSV: window_requests, weighting, quantile, ratio, source) instead of the summary."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="With --distribution or --arrivals: the CSV file (default: stdout)."),
):
    """Per class bucket: request count, share, median and mean input/output tokens (or, with
    --distribution, one class's length distribution for a shape's ``distribution``; with --arrivals,
    one class's arrival burstiness for a class's ``arrivals``)."""
    from planner.datatools.common import table_csv
    from planner.datatools.traces import load_trace, parse_bucket, trace_arrivals, trace_distribution, trace_shapes

    if distribution is not None and arrivals is not None:
        raise InputError("--distribution and --arrivals exclude each other (run twice)")
    if output is not None and distribution is None and arrivals is None:
        raise InputError("-o needs --distribution or --arrivals")
    if (distribution is not None or arrivals is not None) and as_json:
        raise InputError("--json and --distribution/--arrivals exclude each other")
    buckets = [parse_bucket(c) for c in classes] if classes else None
    if arrivals is not None:
        _check_out(output, [trace])
        df = trace_arrivals(load_trace(trace), buckets, arrivals)
        _write(table_csv(df), output, f"arrivals of {arrivals} ({len(df)} rows)")
        return
    if distribution is not None:
        _check_out(output, [trace])
        df = trace_distribution(load_trace(trace), buckets, distribution)
        _write(table_csv(df), output, f"distribution of {distribution} ({len(df)} rows)")
        return
    df = trace_shapes(load_trace(trace), buckets)
    if as_json:
        # an empty bucket has no median or mean: null (NaN is not valid JSON)
        records = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
                   for r in df.to_dict("records")]
        write_stdout(json.dumps(records, indent=1, allow_nan=False) + "\n")
    else:
        write_stdout(df.to_string(index=False, float_format=lambda v: f"{v:.3f}") + "\n")

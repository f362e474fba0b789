"""`plan data carbon|demand|shapes` and planner.datatools, on small hand-made fixtures.

Fixtures (tests/fixtures/datatools) and the expected values, derived by hand:

em_zone.csv (Electricity Maps header, UTC): 00:00 100/150, 01:00 200/260, 02:00 empty (line 4),
03:00 400/480 twice (lines 5 and 6, identical: the second is dropped), 04:00 500/600.
  window 2024-03-01T00:00Z + 5 h, direct: the empty 02:00 is a 1-hour gap -> error naming line 4;
  with --fill 1: 100, 200, (200+400)/2 = 300, 400, 500. Lifecycle with fill: 150, 260, 370, 480, 600.
em_bad_value.csv: line 3, direct column holds "n/a" -> error naming line and column.
em_local.csv (naive local times, --tz Europe/Berlin; DST ends 2024-10-27 03:00 CEST -> 02:00 CET, so
  02:00 appears twice): 01:00 CEST = 23:00Z(26th) 300, 02:00 CEST = 00:00Z 310, 02:00 CET = 01:00Z 320,
  03:00 CET = 02:00Z 330, 04:00 CET = 03:00Z 340.
eia_balance.csv (official EIA-930 layout, two BAs, UTC time at END of hour 06:00..08:00 -> slots
  05:00..07:00Z). AAA: hour 1 coal 1000 + gas 1000 MW -> lifecycle (820+490)/2 = 655, direct
  (1000+410)/2 = 705; hour 2 gas 1000 + nuclear 1000 -> 251 / 205; hour 3 hydro -100 (counted 0) +
  wind 2000 -> 11 / 0. BBB: all coal -> 820 / 1000.
trace_plain.csv: requests at 10:00:05, :20, :40, 10:01:10, :30, :50 (offsets from 10:00:00 = 5, 20,
  40, 70, 90, 110 s -> 1-minute slots 0,0,0,1,1,1); outputs 50, 300, 20, 400, 10, 256; origins eu, eu,
  na, eu, na, eu. Buckets short:out<256, long:out>=256 -> short = rows 1, 3, 5; long = rows 2, 4, 6.
  Counts per slot: eu/short [1, 0], eu/long [1, 2], na/short [1, 1], na/long [0, 0]. The trace covers
  10:00:05 to 10:01:50, so slot 10:00 is covered 55 s and slot 10:01 50 s: rate = count / 55, count / 50.
trace_partial.csv (rates = requests / seconds of the slot the trace covers, first to last request):
  requests at 10:00:30, :45, 10:01:00, :20, :40, 10:02:15 (6 requests over 105 s), 1-minute slots.
  Without --start the grid starts at 10:00 (floored): slot 10:00 covers 10:00:30-10:01:00 = 30 s with
  2 requests -> 2/30 = 0.066667; slot 10:01 is full, 60 s, 3 requests -> 0.05; slot 10:02 covers
  10:02:00-10:02:15 = 15 s, 1 request -> 1/15 = 0.066667 (the old rule, count / 60, gave 0.033333,
  0.05, 0.016667). With --start the grid starts at the first request: offsets 0, 15, 30, 50, 70, 105 s
  -> slot 0 full, 4 requests -> 4/60 = 0.066667; slot 1 covers 60-105 s = 45 s, 2 requests -> 2/45 =
  0.044444.
trace_mixed_tz.csv: 15:00:00+05:00, 10:00:30Z, 12:01:00+02:00 = 10:00:00, 10:00:30, 10:01:00 UTC: 60 s,
  one 1-minute slot (the last request, on the 10:01 boundary, closes slot 10:00) -> 3/60 = 0.05.
eia_offsets.csv (pre-computed EIA layout, offsets +00:00 then +01:00): 00:00+00:00, 02:00+01:00,
  03:00+01:00 = 00:00, 01:00, 02:00 UTC; all coal, all gas, all wind -> lifecycle (avg_CI) 820, 490,
  11; direct 1000, 410, 0.
em_irregular.csv: hourly 00:00..04:00 plus an irregular 00:30 row (line 3); the step is the most
  common spacing (1 h), so 00:30 is off the grid.
  Shapes: short count 3, share 0.5, median in 150, median out 20, mean in 3250/3 = 1083.33, mean out
  80/3 = 26.67; long: median in 120, median out 300, mean in 2200/3 = 733.33, mean out 956/3 = 318.67.
"""

from __future__ import annotations

import io
import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from builders import scenario
from conftest import SHARED

import planner
from planner.cli import main
from planner.datatools.carbon import carbon_table, parse_region_map
from planner.datatools.traces import Trace, demand_table, load_trace, parse_bucket, trace_shapes
from planner.errors import InputError

FX = Path(__file__).parent / "fixtures" / "datatools"


def run(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def values(df):
    return [float(v) for v in df["gco2_per_kwh"]]


def hourly(start, n):
    return [t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in pd.date_range(start, periods=n, freq="h")]


# ---------------------------------------------------------------- carbon: library


def test_em_gap_is_an_error_naming_the_line():
    with pytest.raises(InputError) as e:
        carbon_table({"r": FX / "em_zone.csv"}, "2024-03-01T00:00Z", "2024-03-01T05:00Z")
    msg = str(e.value)
    assert "em_zone.csv: line 4" in msg and "2024-03-01T02:00:00Z" in msg and "--fill 1" in msg


def test_em_fill_direct_and_lifecycle():
    d = carbon_table({"r": FX / "em_zone.csv"}, "2024-03-01T00:00Z", "2024-03-01T05:00Z", fill_hours=1)
    assert list(d.columns) == ["timestamp", "region", "gco2_per_kwh", "source"]
    assert list(d.timestamp) == hourly("2024-03-01T00:00Z", 5)
    assert values(d) == [100, 200, 300, 400, 500]
    assert "interpolated" in d.source[0] and "TT-ONE" in d.source[0]
    lc = carbon_table({"r": FX / "em_zone.csv"}, "2024-03-01T00:00Z", "2024-03-01T05:00Z", signal="lifecycle",
                      fill_hours=1)
    assert values(lc) == [150, 260, 370, 480, 600]


def test_em_window_inside_the_file_and_coverage_errors():
    d = carbon_table({"r": FX / "em_zone.csv"}, "2024-03-01T03:30Z", "2024-03-01T05:00Z")
    # the value holding at 03:30 is the 03:00 one; the series must start at or before the window
    assert list(d.timestamp) == hourly("2024-03-01T03:00Z", 2) and values(d) == [400, 500]
    with pytest.raises(InputError, match="after the window start"):
        carbon_table({"r": FX / "em_zone.csv"}, "2024-02-29T23:00Z", "2024-03-01T02:00Z")
    with pytest.raises(InputError, match="before the window end"):
        carbon_table({"r": FX / "em_zone.csv"}, "2024-03-01T03:00Z", "2024-03-01T06:00Z")


def test_non_numeric_value_names_file_line_column():
    with pytest.raises(InputError) as e:
        carbon_table({"r": FX / "em_bad_value.csv"}, "2024-03-01T00:00Z", "2024-03-01T03:00Z")
    msg = str(e.value)
    assert "em_bad_value.csv: line 3" in msg and "(direct)" in msg and "'n/a'" in msg


def test_local_time_dst_fallback_converted_to_utc():
    d = carbon_table({"de": FX / "em_local.csv"}, "2024-10-26T23:00Z", "2024-10-27T04:00Z", tz="Europe/Berlin")
    assert list(d.timestamp) == hourly("2024-10-26T23:00Z", 5)
    assert values(d) == [300, 310, 320, 330, 340]
    lc = carbon_table({"de": FX / "em_local.csv"}, "2024-10-26T23:00Z", "2024-10-27T04:00Z", tz="Europe/Berlin",
                      signal="lifecycle")
    assert values(lc) == [350, 360, 370, 380, 390]


def test_conflicting_duplicate_is_an_error(tmp_path):
    p = tmp_path / "dup.csv"
    p.write_text((FX / "em_local.csv").read_text(encoding="utf-8"), encoding="utf-8")
    # read as UTC, the two 02:00 rows are the same instant with different values
    with pytest.raises(InputError, match=r"lines 3 and 4.*two different values"):
        carbon_table({"de": p}, "2024-10-27T01:00Z", "2024-10-27T04:00Z")


def test_eia_official_balance_file():
    with pytest.raises(InputError, match="several balancing authorities"):
        carbon_table({"a": FX / "eia_balance.csv"}, "2022-01-01T05:00Z", "2022-01-01T08:00Z")
    src = {"a": (FX / "eia_balance.csv", "AAA"), "b": (FX / "eia_balance.csv", "BBB")}
    lc = carbon_table(src, "2022-01-01T05:00Z", "2022-01-01T08:00Z", signal="lifecycle")
    assert list(lc.timestamp[:3]) == hourly("2022-01-01T05:00Z", 3)
    assert values(lc) == [655, 251, 11, 820, 820, 820]
    dr = carbon_table(src, "2022-01-01T05:00Z", "2022-01-01T08:00Z", signal="direct")
    assert values(dr) == [705, 205, 0, 1000, 1000, 1000]
    with pytest.raises(InputError, match="'ZZZ' not in the file"):
        carbon_table({"a": (FX / "eia_balance.csv", "ZZZ")}, "2022-01-01T05:00Z", "2022-01-01T08:00Z")


def test_format_detection_and_forcing():
    with pytest.raises(InputError, match="unrecognised header"):
        carbon_table({"r": FX / "trace_plain.csv"}, "2024-03-01T00:00Z", "2024-03-01T01:00Z")
    with pytest.raises(InputError, match="not EIA-930"):
        carbon_table({"r": FX / "em_zone.csv"}, "2024-03-01T00:00Z", "2024-03-01T01:00Z", fmt="eia930")


def test_region_map_parsing(tmp_path):
    assert parse_region_map(["a=x.csv", "b=y.csv@PJM"]) == {"a": "x.csv", "b": ("y.csv", "PJM")}
    with pytest.raises(InputError, match="REGION=FILE"):
        parse_region_map(["nofile"])
    with pytest.raises(InputError, match="given twice"):
        parse_region_map(["a=x.csv", "a=y.csv"])


# ---------------------------------------------------------------- carbon: CLI and scenario


def test_cli_carbon_writes_atomically_and_loads_in_a_scenario(tmp_path, capsys):
    out = tmp_path / "carbon.csv"
    code, _, err = run(["data", "carbon", f"x={FX / 'em_zone.csv'}", f"y={FX / 'eia_balance.csv'}@BBB",
                        "--start", "2024-03-01T00:00:00Z", "--hours", "5", "--fill", "1", "-o", out], capsys)
    # BBB has 2022 data only: the whole run fails, names the file, and writes nothing
    assert code == 2 and "eia_balance.csv" in err and not out.exists()
    code, _, err = run(["data", "carbon", f"x={FX / 'em_zone.csv'}", "--start", "2024-03-01T00:00:00Z",
                        "--hours", "5", "--fill", "1", "-o", out], capsys)
    assert code == 0, err
    df = pd.read_csv(out)
    assert values(df) == [100, 200, 300, 400, 500]
    doc = scenario(regions={"x": {"pue": 1.0, "gpus": [{"type": "G", "count": 10, "price_usd_per_gpu_hour": 1.0}]}},
                   slots=5)
    doc["horizon"]["start"] = "2024-03-01T00:00:00Z"
    doc["carbon_intensity"] = str(out)
    for i, r in enumerate(doc["demand"]):
        r["timestamp"] = hourly("2024-03-01T00:00Z", 5)[i]
    sc = planner.scenario_from_dict(doc, allow_dirs=[tmp_path])
    assert list(sc.carbon[0]) == [100, 200, 300, 400, 500]
    # a failing run never replaces a good file
    before = out.read_bytes()
    code, _, err = run(["data", "carbon", f"x={FX / 'em_zone.csv'}", "--start", "2024-03-01T00:00:00Z",
                        "--hours", "5", "-o", out], capsys)
    assert code == 2 and "line 4" in err and out.read_bytes() == before


def test_cli_carbon_usage_errors(tmp_path, capsys):
    code, _, err = run(["data", "carbon", f"x={FX / 'em_zone.csv'}", "--start", "2024-03-01"], capsys)
    assert code == 2 and "--end" in err
    code, _, err = run(["data", "carbon", f"x={tmp_path / 'missing.csv'}", "--start", "2024-03-01", "--hours", "1"],
                       capsys)
    assert code == 2 and "file not found" in err
    code, _, err = run(["data", "carbon", f"x={FX / 'em_zone.csv'}", "--start", "yesterday", "--hours", "1"], capsys)
    assert code == 2 and "ISO 8601" in err


# ---------------------------------------------------------------- demand


BUCKETS = ["short:out<256", "long:out>=256"]


def test_trace_shapes_by_hand():
    sh = trace_shapes(load_trace(FX / "trace_plain.csv"), [parse_bucket(b) for b in BUCKETS])
    s, l_ = sh.iloc[0], sh.iloc[1]
    assert (s["class"], s["count"], s["share"]) == ("short", 3, 0.5)
    assert (s.median_input_tokens, s.median_output_tokens) == (150, 20)
    assert s.mean_input_tokens == pytest.approx(3250 / 3) and s.mean_output_tokens == pytest.approx(80 / 3)
    assert (l_.median_input_tokens, l_.median_output_tokens) == (120, 300)
    assert l_.mean_input_tokens == pytest.approx(2200 / 3) and l_.mean_output_tokens == pytest.approx(956 / 3)


def test_demand_table_by_hand():
    tr = load_trace(FX / "trace_plain.csv")
    d = demand_table(tr, [parse_bucket(b) for b in BUCKETS], slot_minutes=1)
    assert list(d.columns) == ["timestamp", "class", "origin", "rate_rps", "source"]
    got = {(r["class"], r.origin, r.timestamp): r.rate_rps for _, r in d.iterrows()}
    t0, t1 = "2024-05-01T10:00:00Z", "2024-05-01T10:01:00Z"
    exp = {("short", "eu"): [1, 0], ("long", "eu"): [1, 2], ("short", "na"): [1, 1], ("long", "na"): [0, 0]}
    for (c, o), counts in exp.items():  # the trace covers 55 s of slot 10:00 and 50 s of slot 10:01
        assert got[(c, o, t0)] == pytest.approx(round(counts[0] / 55, 6))
        assert got[(c, o, t1)] == pytest.approx(round(counts[1] / 50, 6))
    assert len(d) == 8
    # shifted onto another horizon, scaled x60 (rates = counts), one slot only: 3 requests left out
    d2 = demand_table(tr, [parse_bucket(b) for b in BUCKETS], slot_minutes=1, start="2024-01-01T00:00:00Z",
                      slots=1, scale=60)
    assert set(d2.timestamp) == {"2024-01-01T00:00:00Z"}
    assert dict(zip(zip(d2["class"], d2.origin), d2.rate_rps)) == {("short", "eu"): 1, ("short", "na"): 1,
                                                                   ("long", "eu"): 1, ("long", "na"): 0}
    assert "3 requests after the last slot left out" in d2.source[0]


def test_bucket_errors():
    tr = load_trace(FX / "trace_plain.csv")
    with pytest.raises(InputError) as e:
        demand_table(tr, [parse_bucket("a:out<100"), parse_bucket("b:out>300")], origin="x")
    msg = str(e.value)
    assert "falls into no bucket" in msg and "line 3" in msg  # 2000 in / 300 out
    with pytest.raises(InputError, match="several buckets"):
        demand_table(tr, [parse_bucket("a:out<300"), parse_bucket("b:in>100")], origin="x")
    with pytest.raises(InputError, match="bad condition"):
        parse_bucket("a:tokens<3")


def test_trace_errors(tmp_path):
    with pytest.raises(InputError) as e:
        load_trace(FX / "trace_bad.csv")
    assert "trace_bad.csv: line 3, column 'input_tokens'" in str(e.value) and "'abc'" in str(e.value)
    p = tmp_path / "t.csv"
    p.write_text("when,in,out\n1,2,3\n")
    with pytest.raises(InputError, match="missing column"):
        load_trace(p)
    rel = load_trace(FX / "trace_plain.csv")
    assert rel.absolute_start is not None
    p.write_text("timestamp,input_tokens,output_tokens\n0,1,1\n30,1,1\n")
    with pytest.raises(InputError, match="give --start"):
        demand_table(load_trace(p), [parse_bucket("k")], origin="o")
    with pytest.raises(InputError, match="origin"):
        demand_table(load_trace(p), [parse_bucket("k")], start="2024-01-01T00:00Z")


def test_cli_demand_azure_header_loads_in_a_scenario(tmp_path, capsys):
    out = tmp_path / "demand.csv"
    # Azure header; 4 requests at 18:15:46.68, :50.99, 18:16:10, 18:16:59.5; outputs 44, 109, 300, 256.
    # --start places the first at 00:00:00; offsets 0, 4.3, 23.3, 72.81941 s -> 1-min slots 0, 0, 0, 1.
    # Slot 0 is fully covered (x60 -> counts); slot 1 only 12.81941 s: 1 / 12.81941 x 60 = 4.680402.
    code, _, err = run(["data", "demand", FX / "trace_azure.csv", "--class", "chat-short:out<256",
                        "--class", "chat-long:out>=256", "--origin", "o", "--slot-minutes", "1",
                        "--start", "2024-01-01T00:00:00Z", "--scale", "60", "-o", out], capsys)
    assert code == 0, err
    df = pd.read_csv(out)
    assert df[df["class"] == "chat-short"].rate_rps.tolist() == [2, 0]
    assert df[df["class"] == "chat-long"].rate_rps.tolist() == pytest.approx([1, 4.680402])
    doc = scenario(classes=[{"name": "chat-short", "model": "m", "shape": "s", "slo": {"ttft_ms": 500, "tbt_ms": 50}},
                            {"name": "chat-long", "model": "m", "shape": "s", "slo": {"ttft_ms": 500, "tbt_ms": 50}}],
                   slots=2, slot_minutes=1)
    doc["demand"] = str(out)
    sc = planner.scenario_from_dict(doc, allow_dirs=[tmp_path])
    assert sc.demand[:, 0, :].ravel().tolist() == pytest.approx([2, 0, 1, 4.680402])
    code, outp, _ = run(["data", "shapes", FX / "trace_azure.csv", "--class", "a:out<256", "--class", "b:out>=256",
                         "--json"], capsys)
    assert code == 0 and '"count": 2' in outp


def test_cli_demand_errors(tmp_path, capsys):
    out = tmp_path / "d.csv"
    code, _, err = run(["data", "demand", FX / "trace_plain.csv", "--class", "x:out<10", "-o", out], capsys)
    assert code == 2 and "falls into no bucket" in err and not out.exists()
    code, _, err = run(["data", "demand", FX / "trace_bad.csv", "--class", "k", "--origin", "o", "--start",
                        "2024-01-01"], capsys)
    assert code == 2 and "line 3" in err


# ---------------------------------------------------------------- time zones, spans, partial slots, JSON


def test_mixed_utc_offsets_are_converted_each_to_utc(tmp_path, capsys):
    tr = load_trace(FX / "trace_mixed_tz.csv")
    assert tr.absolute_start == pd.Timestamp("2024-05-01T10:00:00Z")
    assert tr.df.t.tolist() == [0, 30, 60]
    code, out, err = run(["data", "demand", FX / "trace_mixed_tz.csv", "--class", "a:all", "--origin", "o",
                          "--slot-minutes", "1"], capsys)
    assert code == 0, err
    df = pd.read_csv(io.StringIO(out))
    assert df.timestamp.tolist() == ["2024-05-01T10:00:00Z"] and df.rate_rps.tolist() == [0.05]
    # EIA pre-computed file whose offsets change from +00:00 to +01:00
    lc = carbon_table({"r": FX / "eia_offsets.csv"}, "2022-03-27T00:00Z", "2022-03-27T03:00Z", signal="lifecycle")
    assert list(lc.timestamp) == hourly("2022-03-27T00:00Z", 3) and values(lc) == [820, 490, 11]
    dr = carbon_table({"r": FX / "eia_offsets.csv"}, "2022-03-27T00:00Z", "2022-03-27T03:00Z", signal="direct")
    assert values(dr) == [1000, 410, 0]
    # naive times next to offset ones cannot be read in a local zone: exit 2 naming line and column
    p = tmp_path / "local.csv"
    p.write_text("Datetime,Zone Id,Carbon intensity gCO₂eq/kWh (direct),Carbon intensity gCO₂eq/kWh (Life cycle)\n"
                 "2024-10-27 01:00:00,DE,1,2\n2024-10-27 02:00:00+01:00,DE,1,2\n", encoding="utf-8")
    code, _, err = run(["data", "carbon", f"x={p}", "--start", "2024-10-26T23:00Z", "--hours", "2", "--tz",
                        "Europe/Berlin"], capsys)
    assert code == 2 and "local.csv: line 2, column 'Datetime'" in err and "no UTC offset" in err
    # ... but they can in UTC (naive = UTC)
    p.write_text("timestamp,input_tokens,output_tokens\n2024-05-01T10:00:00,1,1\n2024-05-01T11:00:00+01:00,1,1\n"
                 "2024-05-01T10:01:00Z,1,1\n")
    assert load_trace(p).df.t.tolist() == [0, 0, 60]


def test_huge_span_is_refused_and_counting_is_vectorised(tmp_path):
    p = tmp_path / "t.csv"
    # 200,000 one-minute slots: more than the limit (this used to loop over every slot)
    p.write_text("timestamp,input_tokens,output_tokens\n0,10,5\n12000000,10,5\n")
    with pytest.raises(InputError) as e:
        demand_table(load_trace(p), [parse_bucket("a:all")], origin="o", slot_minutes=1, start="2024-01-01")
    msg = str(e.value)
    assert "200,000 slots" in msg and "limit of 100,000" in msg and "--slot-minutes" in msg and "--slots" in msg
    # 1e12 s (277,777,778 hourly slots): used to run forever
    p.write_text("timestamp,input_tokens,output_tokens\n0,10,5\n1e12,10,5\n")
    with pytest.raises(InputError, match="years, 277,777,778 slots of 60 min"):
        demand_table(load_trace(p), [parse_bucket("a:all")], origin="o", start="2024-01-01")
    with pytest.raises(InputError, match="more than the limit"):
        demand_table(load_trace(p), [parse_bucket("a:all")], origin="o", start="2024-01-01", slots=100_001)
    d = demand_table(load_trace(p), [parse_bucket("a:all")], origin="o", start="2024-01-01", slots=3)
    assert d.rate_rps.tolist() == [round(1 / 3600, 6), 0, 0] and "1 request after the last slot" in d.source[0]
    # 100,000 slots x 2 classes x 3 origins = 600,000 rows: fast, and equal to a plain group-by count
    rng = np.random.default_rng(1)
    n = 300_000
    t = np.sort(rng.uniform(0, 100_000 * 60, n))
    t[0], t[-1] = 0.0, 100_000 * 60.0
    tr = Trace(pd.DataFrame({"t": t, "input_tokens": 10, "output_tokens": rng.integers(0, 100, n),
                             "origin": rng.choice(["a", "b", "c"], n), "line": np.arange(n) + 2}), "big.csv", None)
    b = [parse_bucket("s:out<50"), parse_bucket("l:out>=50")]
    t0 = time.perf_counter()
    d = demand_table(tr, b, slot_minutes=1, start="2024-01-01", scale=60)
    assert time.perf_counter() - t0 < 5
    assert len(d) == 600_000
    k = np.minimum(t // 60, 99_999).astype(int)
    ref = pd.Series(1, index=pd.MultiIndex.from_arrays(
        [np.where(tr.df.output_tokens < 50, "s", "l"), tr.df.origin, k])).groupby(level=[0, 1, 2]).sum()
    got = d.set_index(["class", "origin", d.groupby(["class", "origin"]).cumcount()]).rate_rps
    assert got[got > 0].sort_index().astype(int).tolist() == ref.sort_index().tolist()
    assert got.sum() == n


def test_partial_slots_are_rated_by_the_time_the_trace_covers(tmp_path):
    """Hand-derived in the module docstring (trace_partial.csv)."""
    tr = load_trace(FX / "trace_partial.csv")
    d = demand_table(tr, [parse_bucket("a:all")], origin="o", slot_minutes=1)
    assert d.timestamp.tolist() == ["2024-05-01T10:00:00Z", "2024-05-01T10:01:00Z", "2024-05-01T10:02:00Z"]
    assert d.rate_rps.tolist() == [0.066667, 0.05, 0.066667]
    src = d.source[0]
    assert "6 requests over 105 s (2024-05-01T10:00:30Z to 2024-05-01T10:02:15Z)" in src
    assert "partly covered: 2024-05-01T10:00:00Z 30 s, 2024-05-01T10:02:00Z 15 s" in src
    # --start: the grid starts at the first request, so only the last slot is partial
    d = demand_table(tr, [parse_bucket("a:all")], origin="o", slot_minutes=1, start="2024-01-01T00:00Z")
    assert d.timestamp.tolist() == ["2024-01-01T00:00:00Z", "2024-01-01T00:01:00Z"]
    assert d.rate_rps.tolist() == [0.066667, 0.044444]
    # more slots than the trace: the extra ones cover nothing and say so
    d = demand_table(tr, [parse_bucket("a:all")], origin="o", slot_minutes=1, start="2024-01-01T00:00Z", slots=4)
    assert d.rate_rps.tolist() == [0.066667, 0.044444, 0, 0]
    assert "2 slots from 2024-01-01T00:02:00Z after the end of the trace: rate 0" in d.source[0]
    # the last request exactly on a slot boundary closes the slot before: one slot, 3 requests / 60 s
    p = tmp_path / "t.csv"
    p.write_text("timestamp,input_tokens,output_tokens\n0,1,1\n30,1,1\n60,1,1\n")
    d = demand_table(load_trace(p), [parse_bucket("a:all")], origin="o", slot_minutes=1, start="2024-01-01")
    assert d.rate_rps.tolist() == [0.05]
    # a trace covering no time has no rate
    p.write_text("timestamp,input_tokens,output_tokens\n5,1,1\n5,1,1\n")
    with pytest.raises(InputError, match="covers no time"):
        demand_table(load_trace(p), [parse_bucket("a:all")], origin="o", start="2024-01-01")


def test_shapes_json_empty_bucket_is_null(capsys):
    def no_nan(name):
        raise ValueError(f"invalid JSON constant {name}")

    code, out, err = run(["data", "shapes", FX / "trace_plain.csv", "--class", "a:out<100000", "--class",
                          "b:out>=100000", "--json"], capsys)
    assert code == 0, err
    rows = json.loads(out, parse_constant=no_nan)
    assert rows[1]["class"] == "b" and rows[1]["count"] == 0 and rows[1]["share"] == 0
    assert all(rows[1][k] is None for k in ("median_input_tokens", "median_output_tokens", "mean_input_tokens",
                                            "mean_output_tokens"))
    assert rows[0]["count"] == 6 and rows[0]["median_output_tokens"] == 153


def test_carbon_end_of_coverage_messages(tmp_path):
    # an irregular 30-min row: reported as such, not as "ends at 04:00, before the window end 02:00"
    with pytest.raises(InputError) as e:
        carbon_table({"r": FX / "em_irregular.csv"}, "2024-03-01T00:00Z", "2024-03-01T02:00Z")
    msg = str(e.value)
    assert "em_irregular.csv: line 3" in msg and "2024-03-01T00:30:00Z is off the file's 1-hour grid" in msg
    assert "ends at" not in msg
    # a missing row just before the window end: the message names the real last covered time
    p = tmp_path / "hole.csv"
    p.write_text("Datetime (UTC),Zone Id,Carbon Intensity gCO₂eq/kWh (direct),Carbon Intensity gCO₂eq/kWh (LCA)\n"
                 "2024-03-01 00:00:00,Z,1,2\n2024-03-01 01:00:00,Z,1,2\n2024-03-01 03:00:00,Z,1,2\n", encoding="utf-8")
    with pytest.raises(InputError) as e:
        carbon_table({"r": p}, "2024-03-01T00:00Z", "2024-03-01T03:00Z")
    msg = str(e.value)
    assert "no value from 2024-03-01T02:00:00Z to 2024-03-01T03:00:00Z" in msg
    assert "last point before the window end is 2024-03-01T01:00:00Z (line 3)" in msg
    assert "ends at 2024-03-01T03:00:00Z" not in msg
    # a file that really ends early says where its last point is and what it covers
    with pytest.raises(InputError) as e:
        carbon_table({"r": p}, "2024-03-01T03:00Z", "2024-03-01T05:00Z")
    msg = str(e.value)
    assert "ends at 2024-03-01T03:00:00Z (line 4), which holds until 2024-03-01T04:00:00Z" in msg
    assert "before the window end 2024-03-01T05:00:00Z" in msg



# ---------------------------------------------------------------- real shared files


@pytest.mark.skipif(not (SHARED / "carbon" / "electricitymaps-2023" / "US-CAL-CISO.csv").is_file(),
                    reason="shared data missing")
def test_shared_files_reproduce_default_scenario_carbon():
    d = carbon_table({"us-west": SHARED / "carbon" / "electricitymaps-2023" / "US-CAL-CISO.csv",
                      "ca-central": SHARED / "carbon" / "electricitymaps-2023" / "CA-ON.csv"},
                     "2023-06-15T00:00Z", "2023-06-16T00:00Z")
    ref = pd.read_csv(Path(__file__).resolve().parents[1] / "data" / "default" / "carbon.csv")
    for region in ("us-west", "ca-central"):
        a = d[d.region == region].gco2_per_kwh.tolist()
        b = ref[ref.region == region].gco2_per_kwh.tolist()
        assert a == pytest.approx(b), region
    e = carbon_table({"ciso": SHARED / "carbon" / "eia-930-2022" / "CISO.csv"}, "2022-06-15T00:00Z",
                     "2022-06-16T00:00Z", signal="lifecycle")
    assert len(e) == 24 and all(0 < v < 1000 for v in values(e))
    with pytest.raises(InputError, match="PJM.csv: line 1713"):  # empty rows on 2022-03-13
        carbon_table({"pjm": SHARED / "carbon" / "eia-930-2022" / "PJM.csv"}, "2022-03-13T00:00Z",
                     "2022-03-14T00:00Z", signal="lifecycle")


@pytest.mark.skipif(not (SHARED / "traces" / "azure-llm-2023" / "conv.csv").is_file(), reason="shared data missing")
def test_shared_trace_shapes_match_default_scenario():
    sh = trace_shapes(load_trace(SHARED / "traces" / "azure-llm-2023" / "conv.csv"),
                      [parse_bucket("conv-short:out<=256"), parse_bucket("conv-long:out>256")])
    assert sh["count"].tolist() == [12835, 6531]
    assert (sh.median_input_tokens.tolist(), sh.median_output_tokens.tolist()) == ([409, 1070], [94, 408])
    d = demand_table(load_trace(SHARED / "traces" / "azure-llm-2023" / "conv.csv"),
                     [parse_bucket("chat:all")], origin="na", slot_minutes=60, start="2023-06-15T00:00Z")
    span = (pd.Timestamp("2023-11-16 19:14:08.4025270") - pd.Timestamp("2023-11-16 18:15:46.6805900")).total_seconds()
    assert len(d) == 1 and math.isclose(d.rate_rps[0], round(19366 / span, 6))  # 5.530422, not 19366 / 3600
    assert "over 58.4 min" in d.source[0]
    # without --start: slots 18:00 and 19:00 on the clock, covered 44.2 and 14.1 min; their rates are the
    # counts (15606 and 3760) over those seconds, and together they reproduce every request
    d = demand_table(load_trace(SHARED / "traces" / "azure-llm-2023" / "conv.csv"), [parse_bucket("chat:all")],
                     origin="na", slot_minutes=60)
    first, last = pd.Timestamp("2023-11-16 18:15:46.6805900"), pd.Timestamp("2023-11-16 19:14:08.4025270")
    cover = [(pd.Timestamp("2023-11-16 19:00") - first).total_seconds(),
             (last - pd.Timestamp("2023-11-16 19:00")).total_seconds()]
    assert d.rate_rps.tolist() == pytest.approx([15606 / cover[0], 3760 / cover[1]], abs=1e-6)  # 5.8817, 4.4319
    assert "over 58.4 min" in d.source[0] and "74.1" not in d.source[0]

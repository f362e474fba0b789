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
  Counts per slot: eu/short [1, 0], eu/long [1, 2], na/short [1, 1], na/long [0, 0]; rate = count / 60.
  Shapes: short count 3, share 0.5, median in 150, median out 20, mean in 3250/3 = 1083.33, mean out
  80/3 = 26.67; long: median in 120, median out 300, mean in 2200/3 = 733.33, mean out 956/3 = 318.67.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from builders import scenario
from conftest import SHARED

import planner
from planner.cli import main
from planner.datatools import (
    carbon_table,
    demand_table,
    load_trace,
    parse_bucket,
    parse_region_map,
    trace_shapes,
)
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
    sc = planner.scenario_from_dict(doc)
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
    for (c, o), counts in exp.items():
        assert got[(c, o, t0)] == pytest.approx(round(counts[0] / 60, 6))
        assert got[(c, o, t1)] == pytest.approx(round(counts[1] / 60, 6))
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
    # --start places the first at 00:00:00; offsets 0, 4.3, 23.3, 72.8 s -> 1-min slots 0, 0, 0, 1.
    code, _, err = run(["data", "demand", FX / "trace_azure.csv", "--class", "chat-short:out<256",
                        "--class", "chat-long:out>=256", "--origin", "o", "--slot-minutes", "1",
                        "--start", "2024-01-01T00:00:00Z", "--scale", "60", "-o", out], capsys)
    assert code == 0, err
    df = pd.read_csv(out)
    assert df[df["class"] == "chat-short"].rate_rps.tolist() == [2, 0]
    assert df[df["class"] == "chat-long"].rate_rps.tolist() == [1, 1]
    doc = scenario(classes=[{"name": "chat-short", "model": "m", "shape": "s", "slo": {"ttft_ms": 500, "tbt_ms": 50}},
                            {"name": "chat-long", "model": "m", "shape": "s", "slo": {"ttft_ms": 500, "tbt_ms": 50}}],
                   slots=2, slot_minutes=1)
    doc["demand"] = str(out)
    sc = planner.scenario_from_dict(doc)
    assert sc.demand[:, 0, :].tolist() == [[2, 0], [1, 1]]
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
    assert len(d) == 1 and math.isclose(d.rate_rps[0], round(19366 / 3600, 6))

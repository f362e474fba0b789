"""`plan profile import`: benchmark results -> profile rows (planner/perf/importers.py, docs/profiles.md).

Fixtures in tests/fixtures/profile_import were written by hand:

* ``vllm_qps{1,2,4,8}.json``: a vLLM benchmark_serving sweep of one deployment (200 prompts,
  512 input tokens each) at offered rates 1, 2, 4, 8 req/s:

  ======  ============  ===========  ===========
  rate    throughput    p99 TTFT     p99 TPOT
  ======  ============  ===========  ===========
  1       0.98          120          22
  2       1.95          160          28
  4       3.90          300          40
  8       6.40          1400         75
  ======  ============  ===========  ===========

  With the SLO TTFT <= 500 ms, TBT <= 50 ms at p99, 1, 2, 4 pass and 8 fails (both statistics),
  so max_rps = the *measured* throughput at 4 req/s = 3.90 (not the offered 4), TTFT 300, TBT 40.
  Interpolated: TTFT crosses at f = (500-300)/(1400-300) = 2/11, TPOT at (50-40)/(75-40) = 2/7;
  the first crossing is f = 2/11, so max_rps = 3.90 + 2/11 * (6.40-3.90) = 4.354545..., TTFT 500,
  TBT = 40 + 2/11 * 35 = 46.3636...
* ``mlenergy_v2_bs{32,64,128}+tp1+pp1.json``: one model on H100, average TPOT 20/30/60 ms, token
  throughput 1000/1600/2000 tok/s, 200 output tokens, 60/45/40 J per request. TBT <= 50 ms: batch
  64 is the largest passing, max_rps = 1600/200 = 8, busy power = 45 J x 8 req/s = 360 W.
* ``mlenergy_v3_tiny.json``: configurations on H100 (1 GPU: batch 8/16/32, p99 ITL 10/18/35 ms,
  800/1400/2000 tok/s, 400 output tokens, 400/450/500 W), B200 (1 GPU) and H100 with 2 GPUs as
  TP2 and as EP2. TBT <= 20 ms at p99, H100 1 GPU: batch 16, max_rps = 1400/400 = 3.5, 450 W.
* ``runs.csv``: the documented CSV of runs, two deployments; ``profile_base.csv``: a final table.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
from builders import scenario
from conftest import SHARED

import planner
from planner.cli import main
from planner.errors import InputError
from planner.perf.importers import (
    SLO,
    Deployment,
    import_mlenergy,
    import_runs_csv,
    import_vllm,
    map_gpu_name,
    merge_profiles,
    profiles_to_csv,
    read_profile_table,
)
from planner.scenario.loading import PROFILE_COLUMNS

FIX = Path(__file__).parent / "fixtures" / "profile_import"
VLLM = [FIX / f"vllm_qps{r}.json" for r in (1, 2, 4, 8)]
V2 = sorted(FIX.glob("mlenergy_v2_*.json"))
V3 = FIX / "mlenergy_v3_tiny.json"
DEP = Deployment(model="m", gpu="G", tp=1, freq_mhz=1980, shape="s")
SLO_ = SLO(ttft_ms=500, tbt_ms=50)
VLLM_ID = ["--model", "m", "--gpu", "G", "--tp", "1", "--freq-mhz", "1980", "--shape", "s"]
ML_OPTS = ["--freq-mhz", "1980", "--shape", "s", "--ttft-ms-estimate", "200", "--idle-power-w", "90"]


def run(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def copy_vllm(tmp_path: Path, edit: dict[int, dict] | None = None, drop: dict[int, list[str]] | None = None):
    """The vLLM sweep copied to tmp_path, with some fields of some runs replaced or removed."""
    out = []
    for rate, p in zip((1, 2, 4, 8), VLLM):
        d = json.loads(p.read_text())
        d.update((edit or {}).get(rate, {}))
        for k in (drop or {}).get(rate, []):
            del d[k]
        q = tmp_path / p.name
        q.write_text(json.dumps(d))
        out.append(q)
    return out


def assert_failed_cleanly(code, err, tmp_path, before, *needles):
    assert code == 2, err
    for n in needles:
        assert n in err, (n, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == before, "a failed run left or changed files"


# --------------------------------------------------------------------------------------------
# vLLM


def test_vllm_picks_measured_throughput_of_last_passing_run():
    df = import_vllm(VLLM, DEP, SLO_, busy_power_w=600, idle_power_w=100)
    assert list(df.columns) == list(PROFILE_COLUMNS)
    assert len(df) == 1
    r = df.iloc[0]
    assert r["max_rps"] == pytest.approx(3.90)  # measured at the 4 req/s run, not 4
    assert (r["ttft_ms"], r["tbt_ms"], r["busy_power_w"], r["idle_power_w"]) == (300, 40, 600, 100)
    assert (r["model"], r["gpu"], r["tp"], r["pp"], r["freq_mhz"], r["shape"]) == ("m", "G", 1, 1, 1980, "s")
    assert math.isnan(r["expected_error"])
    assert "4 req/s offered" in r["source"] and "3.9 req/s measured" in r["source"]


def test_vllm_interpolates_to_first_crossing():
    df = import_vllm(VLLM, DEP, SLO_, busy_power_w=600, idle_power_w=100, interpolate=True)
    r = df.iloc[0]
    f = 2 / 11
    assert r["max_rps"] == pytest.approx(3.90 + f * 2.5)
    assert r["ttft_ms"] == pytest.approx(500)
    assert r["tbt_ms"] == pytest.approx(40 + f * 35)
    assert "interpolated" in r["source"]


def test_vllm_statistic_choice_and_lower_bound_warning():
    # medians: TTFT 90/112/190/560, TPOT 19.5/23.5/32/56: every run within 600 / 60 ms
    df = import_vllm(VLLM, DEP, SLO(ttft_ms=600, tbt_ms=60, statistic="p50"), busy_power_w=600, idle_power_w=100)
    assert df.iloc[0]["max_rps"] == pytest.approx(6.40)
    assert df.iloc[0]["ttft_ms"] == 560 and df.iloc[0]["tbt_ms"] == 56
    assert any("lower bound" in w for w in df.attrs["warnings"])
    # means: TTFT 650 at 8 req/s misses 600 ms
    df = import_vllm(VLLM, DEP, SLO(ttft_ms=600, tbt_ms=60, statistic="mean"), busy_power_w=600, idle_power_w=100)
    assert df.iloc[0]["max_rps"] == pytest.approx(3.90) and df.iloc[0]["ttft_ms"] == 210


def test_vllm_failed_requests_and_noisy_runs(tmp_path):
    files = copy_vllm(tmp_path, edit={4: {"completed": 190}})  # 10 of 200 failed at 4 req/s
    df = import_vllm(files, DEP, SLO_, busy_power_w=600, idle_power_w=100)
    assert df.iloc[0]["max_rps"] == pytest.approx(1.95)
    files = copy_vllm(tmp_path, edit={2: {"p99_ttft_ms": 700.0}})  # 2 fails, 4 passes again
    df = import_vllm(files, DEP, SLO_, busy_power_w=600, idle_power_w=100)
    assert df.iloc[0]["max_rps"] == pytest.approx(0.98)
    assert any("4 req/s" in w and "noisy" in w for w in df.attrs["warnings"])


def test_vllm_e2e_target(tmp_path, capsys):
    e2el = {1: 2900.0, 2: 3700.0, 4: 5400.0, 8: 9000.0}
    files = copy_vllm(tmp_path, edit={r: {"p99_e2el_ms": v} for r, v in e2el.items()})
    df = import_vllm(files, DEP, SLO(ttft_ms=500, tbt_ms=50, e2e_ms=5000), busy_power_w=600, idle_power_w=100)
    assert df.iloc[0]["max_rps"] == pytest.approx(1.95)  # 4 req/s misses the 5 s end-to-end target
    code, _, err = run(["profile", "import", *VLLM, *VLLM_ID, "--ttft-ms", "500", "--tbt-ms", "50", "--e2e-ms",
                        "5000", "--busy-power-w", "600", "--idle-power-w", "100"], capsys)
    assert code == 2 and "vllm_qps1.json: field 'p99_e2el_ms': missing" in err and "--percentile-metrics" in err


def test_vllm_identity_from_metadata_and_model_id(tmp_path):
    meta = {"gpu": "H100-80GB", "tp": "2", "freq_mhz": "1755", "shape": "conv-short"}
    files = copy_vllm(tmp_path, edit={r: meta for r in (1, 2, 4, 8)})
    df = import_vllm(files, Deployment(), SLO_, busy_power_w=900, idle_power_w=150)
    r = df.iloc[0]
    assert (r["model"], r["gpu"], r["tp"], r["pp"], r["freq_mhz"], r["shape"]) == (
        "meta-llama/Llama-3.1-8B-Instruct", "H100-80GB", 2, 1, 1755, "conv-short")


def test_vllm_power_hook_and_missing_power():
    calls = []

    def power_fn(dep, point):
        calls.append((dep.gpu, point.throughput_rps))
        return 550.0, 120.0

    df = import_vllm(VLLM, DEP, SLO_, power_fn=power_fn)
    assert calls == [("G", 3.90)]
    assert (df.iloc[0]["busy_power_w"], df.iloc[0]["idle_power_w"]) == (550, 120)
    assert "performance model" in df.iloc[0]["source"]
    assert math.isnan(df.iloc[0]["active_power_w"])  # a two-value hook gives no active power


def test_power_hook_active_power_uses_the_runs_tokens_and_stays_within_idle_and_busy():
    """A three-value hook fills active_power_w; it sees the runs' mean tokens (fixture: 512 in, 127.9
    out) and its value is kept within [idle, busy]: 400 W as is, 900 W capped at busy (600 W), 50 W
    raised to idle (100 W)."""
    seen = []
    for given, want in ((400.0, 400.0), (900.0, 600.0), (50.0, 100.0)):
        def power_fn(dep, point, a=given):
            seen.append((point.input_tokens, point.output_tokens))
            return None, None, a

        r = import_vllm(VLLM, DEP, SLO_, busy_power_w=600, idle_power_w=100, power_fn=power_fn).iloc[0]
        assert r["active_power_w"] == want and "active power from the performance model" in r["source"]
    assert seen[0][0] == pytest.approx(512) and seen[0][1] == pytest.approx(127.9, abs=0.05)
    with pytest.raises(InputError) as e:
        import_vllm(VLLM, DEP, SLO_)
    assert "--busy-power-w" in str(e.value) and "--idle-power-w" in str(e.value)


def test_cli_vllm_output_loads_as_scenario_profiles(tmp_path, capsys):
    out = tmp_path / "profiles.csv"
    code, stdout, err = run(["profile", "import", *VLLM, *VLLM_ID, "--ttft-ms", "500", "--tbt-ms", "50",
                             "--busy-power-w", "600", "--idle-power-w", "100", "-o", out], capsys)
    assert code == 0, err
    assert stdout == "" and "1 profile row written" in err
    text = out.read_text()
    assert text.splitlines()[0] == ",".join(PROFILE_COLUMNS)
    doc = scenario()  # model m, GPU G, shape s; class k: TTFT 500, TBT 50; demand 8 req/s
    doc["profiles"] = "profiles.csv"
    sc = planner.scenario_from_dict(doc, base_dir=tmp_path)
    assert len(sc.profiles) == 1 and sc.profiles.iloc[0]["max_rps"] == pytest.approx(3.9)
    plan = planner.solve(sc, objective="carbon", mip_gap=0.0)
    assert sum(d.replicas for d in plan.slots[0].deployments) == 3  # ceil(8 / 3.9)


def test_cli_stdout_without_output(capsys):
    code, stdout, err = run(["profile", "import", *VLLM, *VLLM_ID, "--ttft-ms", "500", "--tbt-ms", "50",
                             "--busy-power-w", "600", "--idle-power-w", "100"], capsys)
    assert code == 0, err
    df = pd.read_csv(pd.io.common.StringIO(stdout))
    assert list(df.columns) == list(PROFILE_COLUMNS) and df.loc[0, "max_rps"] == pytest.approx(3.9)


# --------------------------------------------------------------------------------------------
# malformed input through the CLI: exit 2, file and field named, nothing written


@pytest.mark.parametrize("case", ["missing", "wrong_type", "mixed_models", "mixed_lengths", "no_slo_met",
                                  "no_power", "same_rate"])
def test_cli_vllm_bad_input(case, tmp_path, capsys):
    slo = ["--ttft-ms", "500", "--tbt-ms", "50"]
    power = ["--busy-power-w", "600", "--idle-power-w", "100"]
    extra: list[str] = []
    if case == "missing":
        files = copy_vllm(tmp_path, drop={4: ["mean_ttft_ms"]})
        extra, needles = ["--percentile", "mean"], ["vllm_qps4.json: field 'mean_ttft_ms': missing"]
    elif case == "wrong_type":
        files = copy_vllm(tmp_path, edit={2: {"completed": "200"}})
        needles = ["vllm_qps2.json: field 'completed': wrong type"]
    elif case == "mixed_models":
        files = copy_vllm(tmp_path, edit={8: {"model_id": "meta-llama/Llama-3.1-70B-Instruct"}})
        needles = ["vllm_qps8.json", "different deployments", "Llama-3.1-70B-Instruct"]
    elif case == "mixed_lengths":
        files = copy_vllm(tmp_path, edit={2: {"total_input_tokens": 409600}})
        needles = ["vllm_qps2.json", "different workloads", "input tokens"]
    elif case == "no_slo_met":
        files = copy_vllm(tmp_path)
        slo = ["--ttft-ms", "100", "--tbt-ms", "50"]
        needles = ["no run meets the SLO", "lowest load tried, 1 req/s", "vllm_qps1.json", "p99 TTFT 120 ms > target 100"]
    elif case == "no_power":
        files = copy_vllm(tmp_path)
        power, needles = [], ["--busy-power-w", "--idle-power-w", "no power"]
    else:
        files = copy_vllm(tmp_path, edit={2: {"request_rate": 4}})
        needles = ["vllm_qps2.json", "vllm_qps4.json: two runs at the same load 4 req/s"]
    before = sorted(p.name for p in tmp_path.iterdir())
    code, _, err = run(["profile", "import", *files, *VLLM_ID, *slo, *power, *extra, "-o", tmp_path / "out.csv"],
                       capsys)
    assert_failed_cleanly(code, err, tmp_path, before, *needles)


def test_cli_bad_json_and_empty_inputs(tmp_path, capsys):
    (tmp_path / "broken.json").write_text('{"request_rate": 1, "completed": ')
    (tmp_path / "empty").mkdir()
    (tmp_path / "v3.json").write_text(json.dumps({"model_id": "x", "task": "t", "configurations": []}))
    before = sorted(p.name for p in tmp_path.iterdir())
    for args, needles in [
        ([tmp_path / "broken.json", *VLLM_ID], ["broken.json: line 1", "malformed JSON"]),
        ([tmp_path / "empty", *VLLM_ID], ["empty", "no .json or .csv"]),
        ([tmp_path / "v3.json", "--tbt-ms", "20", *ML_OPTS], ["v3.json: field 'configurations'", "empty list"]),
        ([tmp_path / "nope.json"], ["nope.json", "file not found"]),
        ([VLLM[0], V3], ["mix formats"]),
    ]:
        code, _, err = run(["profile", "import", *args, "-o", tmp_path / "out.csv"], capsys)
        assert_failed_cleanly(code, err, tmp_path, before, *needles)


def test_cli_allow_empty_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out.csv"
    code, _, err = run(["profile", "import", *VLLM, *VLLM_ID, "--ttft-ms", "100", "--tbt-ms", "50",
                        "--busy-power-w", "600", "--idle-power-w", "100", "--allow-empty", "-o", out], capsys)
    assert code == 0, err
    assert "no run meets the SLO" in err and "nothing written" in err
    assert not out.exists()


def test_cli_rejects_options_of_other_formats(tmp_path, capsys):
    code, _, err = run(["profile", "import", FIX / "runs.csv", "--ttft-ms", "500", "--tbt-ms", "50", "--gpu", "X"],
                       capsys)
    assert code == 2 and "--gpu: does not apply" in err


# --------------------------------------------------------------------------------------------
# ML.ENERGY


def test_mlenergy_v2_fixture():
    df = import_mlenergy(V2, Deployment(model="tiny", freq_mhz=1980, shape="s"), SLO(tbt_ms=50), ttft_ms=200,
                         idle_power_w=90)
    r = df.iloc[0]
    assert (r["gpu"], r["tp"], r["pp"], r["model"]) == ("H100-80GB", 1, 1, "tiny")
    assert r["max_rps"] == pytest.approx(8.0) and r["busy_power_w"] == pytest.approx(360.0)
    assert r["tbt_ms"] == pytest.approx(30.0) and r["ttft_ms"] == 200 and r["idle_power_w"] == 90
    assert "batch 64" in r["source"] and "ttft_ms not measured" in r["source"]
    df = import_mlenergy(V2, Deployment(gpu="H100-SXM", freq_mhz=1980, shape="s"), SLO(tbt_ms=50), ttft_ms=200,
                         idle_power_w=90, interpolate=True)
    r = df.iloc[0]  # f = (50-30)/(60-30) = 2/3 of the way from batch 64 to 128
    assert r["gpu"] == "H100-SXM"  # a single GPU type: --gpu renames it
    assert r["max_rps"] == pytest.approx(8 + 2 / 3 * 2) and r["busy_power_w"] == pytest.approx(360 + 2 / 3 * 40)
    assert r["tbt_ms"] == pytest.approx(50)


def test_mlenergy_v3_fixture_selection(capsys, tmp_path):
    dep = Deployment(freq_mhz=1980, shape="s")
    with pytest.raises(InputError) as e:  # H100 with 2 GPUs: TP2 and EP2 would share one profile key
        import_mlenergy([V3], dep, SLO(tbt_ms=20), ttft_ms=200, idle_power_w=90)
    assert "--parallel" in str(e.value) and "tp2, ep2" in str(e.value)
    df = import_mlenergy([V3], Deployment(tp=1, freq_mhz=1980, shape="s"), SLO(tbt_ms=20), ttft_ms=200,
                         idle_power_w=90)
    rows = {r["gpu"]: r for _, r in df.iterrows()}
    assert set(rows) == {"H100-80GB", "B200"}
    assert rows["H100-80GB"]["max_rps"] == pytest.approx(3.5) and rows["H100-80GB"]["busy_power_w"] == 450
    assert rows["H100-80GB"]["tbt_ms"] == 18
    assert rows["B200"]["max_rps"] == pytest.approx(5.0)  # all pass: a lower bound, warned
    assert any("B200" in w and "lower bound" in w for w in df.attrs["warnings"])
    df = import_mlenergy([V3], Deployment(gpu="H100-80GB", freq_mhz=1980, shape="s"), SLO(tbt_ms=20), ttft_ms=200,
                         idle_power_w=90, parallel="ep2")
    assert len(df) == 1 and df.iloc[0]["tp"] == 2 and df.iloc[0]["max_rps"] == pytest.approx(900 / 400)
    with pytest.raises(InputError) as e:
        import_mlenergy([V3], Deployment(gpu="A100", freq_mhz=1980, shape="s"), SLO(tbt_ms=20), ttft_ms=200,
                        idle_power_w=90)
    assert "matches no GPU" in str(e.value) and "B200" in str(e.value)
    with pytest.raises(InputError) as e:
        import_mlenergy([V3], dep, SLO(tbt_ms=20, statistic="mean"), ttft_ms=200, idle_power_w=90)
    assert "no mean" in str(e.value)
    with pytest.raises(InputError) as e:
        import_mlenergy(V2, dep, SLO(tbt_ms=20, statistic="p99"), ttft_ms=200, idle_power_w=90)
    assert "only the average TPOT" in str(e.value)


def test_mlenergy_hooks_and_missing_ttft(tmp_path, capsys):
    dep = Deployment(freq_mhz=1980, shape="s")
    df = import_mlenergy(V2, dep, SLO(tbt_ms=50), ttft_fn=lambda d, p: 250.0, power_fn=lambda d, p: (None, 70.0))
    assert df.iloc[0]["ttft_ms"] == 250 and df.iloc[0]["idle_power_w"] == 70
    assert df.iloc[0]["busy_power_w"] == pytest.approx(360)  # measured power wins over the hook
    before = sorted(p.name for p in tmp_path.iterdir())
    code, _, err = run(["profile", "import", *V2, "--tbt-ms", "50", "--freq-mhz", "1980", "--shape", "s",
                        "--idle-power-w", "90", "-o", tmp_path / "o.csv"], capsys)
    assert_failed_cleanly(code, err, tmp_path, before, "--ttft-ms-estimate", "no TTFT")


def test_mlenergy_malformed(tmp_path, capsys):
    d = json.loads(V2[0].read_text())
    d["Avg TPOT (s)"] = "fast"
    del d["Energy/req (J)"]
    bad = tmp_path / "bs32+tp1+pp1.json"
    bad.write_text(json.dumps(d))
    other = json.loads(V2[1].read_text())
    other["Model"] = "acme/Other-7B"
    (tmp_path / "other.json").write_text(json.dumps(other))
    before = sorted(p.name for p in tmp_path.iterdir())
    code, _, err = run(["profile", "import", bad, "--tbt-ms", "50", *ML_OPTS, "-o", tmp_path / "o.csv"], capsys)
    assert_failed_cleanly(code, err, tmp_path, before, "bs32+tp1+pp1.json: field 'Avg TPOT (s)': wrong type",
                          "bs32+tp1+pp1.json: field 'Energy/req (J)': missing")
    code, _, err = run(["profile", "import", V2[0], tmp_path / "other.json", "--tbt-ms", "50", *ML_OPTS,
                        "-o", tmp_path / "o.csv"], capsys)
    assert_failed_cleanly(code, err, tmp_path, before, "different models", "acme/Other-7B")


def test_map_gpu_name():
    assert map_gpu_name("NVIDIA H100 80GB HBM3") == "H100-80GB"
    assert map_gpu_name("NVIDIA A100-SXM4-40GB") == "A100-40GB"
    assert map_gpu_name("A100-SXM4-80GB") == "A100-80GB"
    assert map_gpu_name("H100") == "H100-80GB"
    assert map_gpu_name("B200") == "B200"
    assert map_gpu_name("NVIDIA L40S") == "L40S" and map_gpu_name("NVIDIA L4") == "L4"
    assert map_gpu_name("H100", {"H100-80GB": "H100-SXM"}) == "H100-SXM"
    assert map_gpu_name("Mystery 9000") == "Mystery 9000"


V2_REAL = SHARED / "perf" / "ml-energy-v2" / "chat" / "H100-80GB-HBM3" / "meta-llama" / "Meta-Llama-3.1-8B-Instruct"
V3_REAL = SHARED / "perf" / "ml-energy-v3" / "meta-llama__Llama-3.1-8B-Instruct__lm-arena-chat.json"


@pytest.mark.skipif(not V2_REAL.is_dir(), reason="shared ML.ENERGY v2 data not present")
def test_real_mlenergy_v2_llama8b_h100(tmp_path, capsys):
    # TBT <= 50 ms on the average TPOT: batch 64 has 35.05 ms, batch 128 has 56.65 ms
    bs64 = json.loads((V2_REAL / "bs64+tp1+pp1.json").read_text())
    bs128 = json.loads((V2_REAL / "bs128+tp1+pp1.json").read_text())
    assert bs64["Avg TPOT (s)"] * 1000 <= 50 < bs128["Avg TPOT (s)"] * 1000
    rps = bs64["Token tput (tok/s)"] / bs64["Avg Output Tokens"]  # 1784.72 / 482.80 = 3.6966 req/s
    out = tmp_path / "p.csv"
    code, _, err = run(["profile", "import", V2_REAL, "--model", "llama-3.1-8b", "--tbt-ms", "50", *ML_OPTS,
                        "-o", out], capsys)
    assert code == 0, err
    r = read_profile_table(out).iloc[0]
    assert (r["gpu"], r["tp"]) == ("H100-80GB", 1)
    assert r["max_rps"] == pytest.approx(3.69662, rel=1e-5) == pytest.approx(rps, rel=1e-5)
    assert r["busy_power_w"] == pytest.approx(bs64["Energy/req (J)"] * rps, rel=1e-5)  # 82.59 J x 3.6966 = 305.3 W
    assert r["tbt_ms"] == pytest.approx(35.0546, rel=1e-5)


@pytest.mark.skipif(not V3_REAL.is_file(), reason="shared ML.ENERGY v3 data not present")
def test_real_mlenergy_v3_llama8b_h100():
    df = import_mlenergy([V3_REAL], Deployment(model="llama-3.1-8b", gpu="H100-80GB", tp=1, freq_mhz=1980,
                                               shape="conv-long"),
                         SLO(tbt_ms=20, statistic="p90"), ttft_ms=300, idle_power_w=90)
    doc = json.loads(V3_REAL.read_text())
    ok = [c for c in doc["configurations"] if c["gpu_model"] == "H100" and c["num_gpus"] == 1
          and c["p90_itl_ms"] <= 20]
    best = max(ok, key=lambda c: c["max_num_seqs"])  # batch 96: p90 ITL 16.68 ms (128: 20.04 ms)
    assert best["max_num_seqs"] == 96
    r = df.iloc[0]
    assert len(df) == 1 and r["gpu"] == "H100-80GB"
    assert r["max_rps"] == pytest.approx(best["output_throughput_tokens_per_sec"] / best["avg_output_len"])
    assert r["busy_power_w"] == pytest.approx(best["avg_power_watts"])


# --------------------------------------------------------------------------------------------
# CSV of runs, final tables, merging


def test_runs_csv():
    df = import_runs_csv([FIX / "runs.csv"], SLO_)
    rows = {r["gpu"]: r for _, r in df.iterrows()}
    h = rows["H100-80GB"]  # 2 and 4 req/s pass, 6 fails (TTFT 900, TBT 55)
    assert (h["max_rps"], h["ttft_ms"], h["tbt_ms"], h["busy_power_w"], h["idle_power_w"]) == (3.92, 260, 38, 520, 110)
    assert rows["A100-80GB"]["max_rps"] == 1.96
    df = import_runs_csv([FIX / "runs.csv"], SLO_, interpolate=True)
    h = df[df["gpu"] == "H100-80GB"].iloc[0]  # TTFT crosses at (500-260)/(900-260) = 0.375, TBT at 12/17
    assert h["max_rps"] == pytest.approx(3.92 + 0.375 * 1.88) and h["busy_power_w"] == pytest.approx(550)


def test_runs_csv_malformed(tmp_path, capsys):
    text = (FIX / "runs.csv").read_text().splitlines()
    text[2] = text[2].replace(",260,", ",slow,")
    bad = tmp_path / "runs.csv"
    bad.write_text("\n".join(text) + "\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    code, _, err = run(["profile", "import", bad, "--ttft-ms", "500", "--tbt-ms", "50", "-o", tmp_path / "o.csv"],
                       capsys)
    assert_failed_cleanly(code, err, tmp_path, before, "runs.csv: line 3: ttft_ms: not a number: 'slow'")
    bad.write_text("model,gpu,tp\nm,G,1\n")
    code, _, err = run(["profile", "import", bad, "--format", "runs-csv", "--ttft-ms", "500", "--tbt-ms", "50"],
                       capsys)
    assert code == 2 and "missing column(s): pp, freq_mhz" in err


def test_merge_duplicate_key_keeps_existing_file(tmp_path, capsys):
    base = tmp_path / "profiles.csv"
    shutil.copy(FIX / "profile_base.csv", base)
    original = base.read_bytes()
    before = sorted(p.name for p in tmp_path.iterdir())
    code, _, err = run(["profile", "import", FIX / "runs.csv", "--ttft-ms", "500", "--tbt-ms", "50",
                        "--merge", base], capsys)
    assert_failed_cleanly(code, err, tmp_path, before, "profiles.csv: line 2", "duplicate key",
                          "(llama-3.1-8b, H100-80GB, tp1, pp1, 1980 MHz, conv-short)", "--replace")
    assert base.read_bytes() == original
    code, _, err = run(["profile", "import", FIX / "runs.csv", "--ttft-ms", "500", "--tbt-ms", "50",
                        "--merge", base, "--replace", "-q"], capsys)
    assert code == 0, err
    df = read_profile_table(base)
    assert list(df["gpu"]) == ["H100-80GB", "L4", "A100-80GB"]  # replaced in place, new row appended
    assert df.iloc[0]["max_rps"] == 3.92 and df.iloc[1]["source"] == "vendor sheet, scaled"


def test_profile_table_validated_and_merged(tmp_path, capsys):
    dup = tmp_path / "dup.csv"
    lines = (FIX / "profile_base.csv").read_text().splitlines()
    dup.write_text("\n".join(lines + [lines[1]]) + "\n")
    code, _, err = run(["profile", "import", dup, "-o", tmp_path / "o.csv"], capsys)
    assert code == 2 and "dup.csv: line 4: duplicate profile row" in err and not (tmp_path / "o.csv").exists()
    low = tmp_path / "low.csv"
    low.write_text(lines[0] + "\n" + lines[1].replace(",500,100,", ",50,100,") + "\n")
    code, _, err = run(["profile", "import", low], capsys)
    assert code == 2 and "low.csv: line 2: busy_power_w is below idle_power_w" in err
    act = tmp_path / "act.csv"
    act.write_text(lines[0] + ",active_power_w\n" + lines[1] + ",50\n" + lines[2] + ",71\n")
    code, _, err = run(["profile", "import", act], capsys)
    assert code == 2 and "act.csv: line 2: active_power_w is below idle_power_w" in err
    assert "act.csv: line 3: active_power_w is above busy_power_w" in err
    act.write_text(lines[0] + ",active_power_w\n" + lines[1] + ",400\n" + lines[2] + ",\n")
    assert list(read_profile_table(act)["active_power_w"].fillna(-1)) == [400, -1]
    new = import_runs_csv([FIX / "runs.csv"], SLO_)
    merged = merge_profiles(read_profile_table(FIX / "profile_base.csv"), new[new["gpu"] == "A100-80GB"])
    assert len(merged) == 3
    text = profiles_to_csv(merged)
    doc = scenario(gpus=["H100-80GB", "A100-80GB", "L4"], models=["llama-3.1-8b"],
                   shapes=[{"name": "conv-short", "input_tokens": 409, "output_tokens": 94}],
                   classes=[{"name": "k", "model": "llama-3.1-8b", "shape": "conv-short",
                             "slo": {"ttft_ms": 500, "tbt_ms": 50}}],
                   regions={"A": {"pue": 1.0, "gpus": [{"type": "L4", "count": 10, "price_usd_per_gpu_hour": 1.0}]}})
    (tmp_path / "p.csv").write_text(text)
    doc["profiles"] = "p.csv"
    sc = planner.scenario_from_dict(doc, base_dir=tmp_path)
    assert len(sc.profiles) == 3


@pytest.mark.parametrize("par, needle", [
    ({"tensor_parallel": "abc"}, "field 'tensor_parallel': wrong type"),
    ({"tensor_parallel": 2, "data_parallel": [1]}, "field 'data_parallel': wrong type"),
    ({"tensor_parallel": 1.5}, "field 'tensor_parallel': not a whole number"),
    ({"tensor_parallel": 64}, "cannot hold tensor x expert x data parallel"),
])
def test_cli_mlenergy_v3_bad_parallelization(par, needle, tmp_path, capsys):
    doc = json.loads(V3.read_text())
    doc["configurations"][0]["parallelization"] = par
    f = tmp_path / "v3.json"
    f.write_text(json.dumps(doc))
    out = tmp_path / "out.csv"
    code = main(["profile", "import", str(f), "--tbt-ms", "50", "--freq-mhz", "1980", "--shape", "s",
                 "--idle-power-w", "100", "--ttft-ms-estimate", "100", "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and "configurations[0].parallelization" in err or "num_gpus" in err
    assert not out.exists()

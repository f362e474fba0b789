"""The calibrated replica performance / power / DVFS model (planner/perf/model.py).

Hand-derivable cases use a tiny synthetic GPU and model with round numbers; the rest check physical
properties (clock monotonicity, memory fit, SLOs met) on the shipped specs and calibration.
"""

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from planner.errors import InputError
from planner.perf import model as pm
from planner.perf.rows import profile_rows
from planner.scenario.loading import PROFILE_COLUMNS

TOY_GPU = pm.GPUSpec(name="toy", memory_gb=20, mem_bw_gbs=1000, bf16_tflops=100, fp8_tflops=None, tdp_w=100,
                     min_clock_mhz=600, max_clock_mhz=1000, interconnect="NVLink", link_gbs=100, family="toy",
                     source="synthetic")
TOY_MODEL = pm.ModelSpec(name="toy-1b", hf_id="-", params_b=1.0, layers=10, hidden=1000, heads=10, kv_heads=10,
                         head_dim=100, source="synthetic")
TOY_PARAMS = pm.Params(eta_bw=0.5, eta_f=0.5, step_ms=1.0, seq_ms=0.0, ar_us=0.0, phi=1.0, idle_frac=0.1,
                       p_mem=0.5, p_comp=0.9, gamma_c=2.0, gamma_m=1.0, measured=True, expected_error=0.1)
SHAPES = {"conv-short": (409, 94), "code": (1469, 13)}
SLOS = {"conv-short": (1000.0, 100.0, None), "code": (800.0, 150.0, None)}


def toy(tp=1, pp=1, freq=1000.0, **over):
    from dataclasses import replace

    return pm.build_replica(TOY_MODEL, TOY_GPU, tp, pp, freq, replace(TOY_PARAMS, **over))


def test_decode_step_batch1_is_weight_read_plus_overhead():
    """Weights: 1e9 params × 2 B = 2e9 B; effective bandwidth 0.5 × 1000 GB/s = 5e8 B/ms → 4 ms.
    FLOPs: 2e9 per token / (0.5 × 100 TFLOP/s = 5e10 FLOP/ms) = 0.04 ms. KV at context 0: none.
    Overhead 1 ms. Step = 1 + 4 + 0.04 = 5.04 ms."""
    assert toy().decode_step_ms(1, 0) == pytest.approx(5.04, rel=1e-9)


def test_decode_kv_term():
    """KV bytes per token: 2 (K,V) × 10 layers × 10 heads × 100 dims × 2 B = 40 kB. Batch 10 at context
    1000: 4e8 B / 5e8 B/ms = 0.8 ms; attention FLOPs 4 × 10 × 1000 per context token = 4e4 → 10 × 1000 ×
    4e4 / 5e10 = 0.008 ms; FLOPs 10 × 0.04 = 0.4 ms. Step = 1 + 4 + 0.4 + 0.8 + 0.008 = 6.208 ms."""
    assert toy().decode_step_ms(10, 1000) == pytest.approx(6.208, rel=1e-9)


def test_prefill_compute_bound():
    """Prompt of 10,000 tokens: 2e9 × 1e4 = 2e13 FLOPs + attention 2 × 10 × 1000 × 1e8 = 2e12 → 2.2e13 /
    5e10 FLOP/ms = 440 ms (> 4 ms weight read), plus 1 ms overhead = 441 ms."""
    assert toy().prefill_ms(10_000) == pytest.approx(441.0, rel=1e-9)


def test_memory_budget_and_max_batch():
    """0.9 × 20 GB − 1.5 GB = 16.5 GB usable, minus 2 GB weights = 14.5 GB of KV; at 40 kB per token a
    1000-token sequence needs 40 MB → 362 sequences, capped at max_num_seqs = 256; at 10,000 tokens 36."""
    rm = toy()
    assert rm.kv_budget_bytes == pytest.approx(14.5e9)
    assert rm.max_batch(1000) == 256
    assert rm.max_batch(10_000) == 36


def test_compute_scales_with_clock_memory_does_not():
    """phi = 1: compute time × f_max/f. At 0.6 × max clock the prefill (compute) takes 1/0.6 as long, the
    batch-1 decode step (memory-bound) changes only by its 0.04 ms of FLOPs."""
    hi, lo = toy(freq=1000), toy(freq=600)
    assert (lo.prefill_ms(10_000) - 1) == pytest.approx((hi.prefill_ms(10_000) - 1) / 0.6)
    assert lo.decode_step_ms(1, 0) - hi.decode_step_ms(1, 0) == pytest.approx(0.04 / 0.6 - 0.04)


def test_power_planner_semantics_and_clock():
    """Idle 0.1 × 100 W; memory-bound 50 W; compute-bound 90 W at max clock, at 0.5 × clock
    10 + 80 × 0.25 = 30 W (gamma_c = 2). Linear in load: idle + (busy − idle) × load."""
    rm = toy()
    assert rm.idle_power_w == pytest.approx(10)
    assert rm.power_w(1.0, (0, 0, 1)) == pytest.approx(90)
    assert rm.power_w(1.0, (0, 1, 0)) == pytest.approx(50)
    assert rm.power_w(0.25, (0, 0, 1)) == pytest.approx(10 + 80 * 0.25)
    assert toy(freq=500).power_w(1.0, (0, 0, 1)) == pytest.approx(30)


def test_capacity_littles_law():
    """max_rps = B / (output × tbt(B)) at the batch the capacity reports."""
    rm = toy()
    cap = rm.capacity(500, 100, 10_000, 50)
    assert cap is not None
    assert cap.max_rps == pytest.approx(cap.batch / (100 * cap.tbt_ms) * 1e3)
    assert cap.tbt_ms == pytest.approx(rm.tbt_ms(cap.batch, 500, 100))
    assert cap.tbt_ms <= 50


def test_unknown_names_list_known():
    with pytest.raises(InputError, match="H100-80GB"):
        pm.gpu_spec("H900")
    with pytest.raises(InputError, match="llama-3.1-8b"):
        pm.model_spec("llama-9")


def test_specs_complete():
    for g in ["A10G", "L4", "L40S", "A100-40GB", "A100-80GB", "H100-80GB", "H200", "B200", "MI300X"]:
        s = pm.gpu_spec(g)
        assert s.source and s.memory_gb > 0 and s.mem_bw_gbs > 0 and s.bf16_tflops > 0 and s.tdp_w > 0
        assert len(s.freq_levels()) == 5 and s.freq_levels()[-1] == s.max_clock_mhz
        assert all(f % 15 == 0 for f in s.freq_levels())
    for m in ["llama-3.1-8b", "llama-3.1-70b", "llama-3.1-405b", "llama-2-70b", "qwen3-32b", "qwen3-8b"]:
        s = pm.model_spec(m)
        assert s.heads * s.head_dim >= s.hidden * 0.9 and s.source


@pytest.fixture(scope="module")
def rows():
    out = [profile_rows(m, g, SHAPES, SLOS) for m in ("llama-3.1-8b", "llama-3.1-70b")
           for g in ("A100-80GB", "H100-80GB", "H200", "L4")]
    return pd.concat(out, ignore_index=True)


def test_profile_rows_columns_and_determinism(rows):
    assert list(rows.columns) == list(PROFILE_COLUMNS)
    again = profile_rows("llama-3.1-70b", "H100-80GB", SHAPES, SLOS)
    pd.testing.assert_frame_equal(again, rows[(rows.model == "llama-3.1-70b") & (rows.gpu == "H100-80GB")]
                                  .reset_index(drop=True))
    assert rows.expected_error.notna().all() and (rows.expected_error > 0).all()
    assert (rows.busy_power_w > rows.idle_power_w).all()


def test_profile_rows_meet_slo(rows):
    for shape, (ttft, tbt, _) in SLOS.items():
        r = rows[rows["shape"] == shape]
        assert (r.ttft_ms <= ttft).all() and (r.tbt_ms <= tbt).all()


def test_rounded_row_meets_e2e_target():
    """Reviewer's case: rounding TTFT/TBT to nearest after the check gave 390.0 + 12 × 134.2 = 2000.4 > 2000.
    Rounded latencies are rounded up and re-checked, max_rps rounded down."""
    r = profile_rows("llama-3.1-8b", "B200", {"code": (1469, 13)}, {"code": (785.0, 150.0, 2000.0)},
                        tps=(2,), freqs=[1380])
    assert len(r)
    assert (r.ttft_ms + 12 * r.tbt_ms <= 2000.0).all()


_MODELS = ["llama-3.1-8b", "llama-3.1-70b", "qwen3-8b", "qwen3-32b", "mistral-7b-v0.3", "phi-3-mini",
           "starcoder2-3b", "codellama-13b"]


@given(model=st.sampled_from(_MODELS), gpu=st.sampled_from(["L4", "A100-80GB", "H100-80GB", "H200", "B200", "MI300X"]),
       tp=st.sampled_from([1, 2, 4, 8]), fi=st.integers(0, 4), inp=st.integers(16, 3000), out=st.integers(1, 600),
       ttft=st.floats(50, 4000), tbt=st.floats(10, 300), e2e=st.one_of(st.none(), st.floats(200, 40_000)))
def test_rounded_profile_rows_meet_their_targets(model, gpu, tp, fi, inp, out, ttft, tbt, e2e):
    """Every row, as rounded, meets its TTFT, TBT and e2e (recomputed as ttft + (out − 1) × tbt) targets;
    max_rps is never above the model's rate at the reported operating point."""
    f = pm.gpu_spec(gpu).freq_levels()[fi]
    r = profile_rows(model, gpu, {"s": (float(inp), float(out))}, {"s": (ttft, tbt, e2e)}, tps=(tp,), pps=(1,),
                        freqs=[f])
    for row in r.itertuples(index=False):
        assert row.ttft_ms <= ttft and row.tbt_ms <= tbt
        if e2e is not None:
            assert row.ttft_ms + (out - 1) * row.tbt_ms <= e2e
        cap = pm.replica_model(model, gpu, tp, 1, float(f)).capacity(inp, out, ttft, tbt, e2e,
                                                                      latency_quantum_ms=pm.LATENCY_QUANTUM_MS)
        assert row.max_rps <= cap.max_rps and row.max_rps >= cap.max_rps * (1 - 1e-3)
        assert row.tbt_ms >= cap.tbt_ms - 1e-6 and row.ttft_ms >= cap.ttft_ms - 1e-6


def test_rounding_helpers():
    assert pm._ceil_to(134.11, 0.1) == 134.2 and pm._ceil_to(390.0, 0.1) == 390.0
    assert pm._floor_sig(62.5678) == 62.56 and pm._floor_sig(124.0) == 124.0 and pm._floor_sig(0.099999) == 0.09999


def test_tbt_tail_step_within_target():
    """70B on 4 × H100: a step carrying a whole 1469-token prompt takes > 100 ms although the mean TBT at a
    small batch is < 100 ms. Capacity lowers the prefill chunk so that the chunk-carrying step meets TBT."""
    rm = pm.replica_model("llama-3.1-70b", "H100-80GB", 4)
    assert rm.tbt_ms(8, 1469, 94) < 100 < rm.tail_step_ms(8, 1469, 94)
    cap = rm.capacity(1469, 94, 5000, 100)
    assert cap is not None and cap.chunk_tokens < 1469
    assert rm.tail_step_ms(cap.batch, 1469, 94, cap.chunk_tokens) <= 100 and cap.tbt_ms <= 100
    # a 409-token prompt fits whole in a step within the target
    assert rm.capacity(409, 94, 5000, 100).chunk_tokens >= 409


def test_kv_heads_replicated_when_tp_exceeds_them():
    """starcoder2-3b has 24 query / 2 KV heads: at tp 4 every GPU holds one KV head, so the replica stores
    (and reads) 4 heads per layer: twice the KV bytes per token of tp 1-2. starcoder2-7b (36 heads) cannot
    use tp 8 (36 % 8 != 0)."""
    m = pm.model_spec("starcoder2-3b")
    assert pm.replica_model("starcoder2-3b", "H100-80GB", 2).kv_bytes_per_token == m.kv_bytes_per_token
    r4 = pm.replica_model("starcoder2-3b", "H100-80GB", 4)
    assert r4.kv_bytes_per_token == 2 * m.kv_bytes_per_token
    assert pm.replica_model("starcoder2-3b", "H100-80GB", 8).kv_bytes_per_token == 4 * m.kv_bytes_per_token
    assert r4.mem2 == pytest.approx(2 * m.kv_bytes_per_token / (4 * pm.params_for("H100-80GB").eta_bw * 3350e6))
    assert not pm.model_spec("starcoder2-7b").tp_ok(8)
    with pytest.raises(InputError, match="36 attention heads"):
        pm.replica_model("starcoder2-7b", "H100-80GB", 8)
    assert all(tp != 8 for tp, _ in pm.configs_for("starcoder2-7b", "L4", 4000))


def test_configs_for_counts_replicated_kv():
    """A synthetic fit check: with replication the KV budget per token grows with tp, so a tp whose
    budget holds 8 sequences only without replication is not produced."""
    m = pm.model_spec("starcoder2-3b")
    g = pm.gpu_spec("L4")
    for tp, pp in pm.configs_for("starcoder2-3b", "L4", 100_000):
        budget = tp * pp * (pm.MEM_UTIL * g.memory_gb - pm.RESERVE_GB) * 1e9 - m.weight_bytes
        assert budget >= pm.MIN_FIT_BATCH * 100_000 * m.kv_bytes_per_token_tp(tp)


def test_a100_80gb_error_and_label_reflect_splitwise_only():
    """A100-80GB is measured only on Splitwise: its label says so and its expected error (median relative
    error of max_rps) combines the planning-stack throughput error with its own Splitwise error."""
    cal = pm.calibration()
    assert pm.source_label("A100-80GB") == "calibrated model (Splitwise)"
    assert pm.source_label("H100-80GB") == pm.SOURCE_MEASURED
    assert pm.source_label("H200") == pm.SOURCE_ESTIMATED
    e = pm.params_for("A100-80GB").expected_error
    assert cal["expected_error"]["measured"] < e < cal["expected_error"]["estimated"]
    assert pm.params_for("H100-80GB").expected_error == cal["expected_error"]["measured"]


def test_estimated_rows_carry_larger_error(rows):
    est = rows[rows.gpu.isin(["H200", "L4"])]
    meas = rows[rows.gpu.isin(["A100-80GB", "H100-80GB"])]
    assert (est.source == pm.SOURCE_ESTIMATED).all() and (meas.source == meas.gpu.map(pm.source_label)).all()
    assert (rows[rows.gpu == "H100-80GB"].source == pm.SOURCE_MEASURED).all()
    top = meas.freq_mhz == meas.gpu.map(lambda g: pm.gpu_spec(g).max_clock_mhz)
    assert est.expected_error.min() > meas[top].expected_error.max()


def test_configs_fit_memory_and_are_not_needlessly_wide(rows):
    """70B (141 GB of weights) never appears on fewer than 8 L4s (8 × (0.9 × 24 − 1.5) = 161 GB) nor on
    one 80 GB GPU; every row's KV budget holds 8 sequences of the longest shape; n <= 2 n_min."""
    l4 = rows[(rows.model == "llama-3.1-70b") & (rows.gpu == "L4")]
    assert len(l4) and ((l4.tp * l4.pp) >= 8).all()
    assert not ((rows.model == "llama-3.1-70b") & (rows.tp * rows.pp == 1)).any()
    for (m, g), grp in rows.groupby(["model", "gpu"]):
        n = grp.tp * grp.pp
        assert n.max() <= 2 * n.min()
        for tp, pp in set(zip(grp.tp, grp.pp)):
            rm = pm.replica_model(m, g, tp, pp)
            assert rm.max_batch(1469 + 13) >= pm.MIN_FIT_BATCH


def test_higher_clock_more_rate_and_power_when_compute_bound(rows):
    """Code (1469-token prompts, 13 output tokens) is prefill-dominated, hence compute-bound: both the rate
    and the busy power grow with the clock."""
    code = rows[(rows["shape"] == "code")]
    for _, grp in code.groupby(["model", "gpu", "tp", "pp"]):
        grp = grp.sort_values("freq_mhz")
        if len(grp) < 2:
            continue
        assert np.all(np.diff(grp.max_rps) >= -1e-9)
        assert np.all(np.diff(grp.busy_power_w) > 0)


def test_memory_bound_decode_nearly_clock_independent():
    """Batch-1 decode of 70B on 4 H100s reads 141 GB of weights per token: at 0.6 × max clock it is at
    most 5 % slower (only the small FLOP term scales)."""
    g = pm.gpu_spec("H100-80GB")
    lo = pm.replica_model("llama-3.1-70b", "H100-80GB", 4, 1, g.freq_levels()[0])
    hi = pm.replica_model("llama-3.1-70b", "H100-80GB", 4, 1)
    assert 1.0 <= lo.decode_step_ms(1, 500) / hi.decode_step_ms(1, 500) < 1.05
    assert lo.prefill_ms(2000) / hi.prefill_ms(2000) > 1.3


def test_unfit_config_absent():
    assert pm.configs_for("llama-3.1-405b", "L4", 2000) == []
    assert profile_rows("llama-3.1-405b", "L4", SHAPES, SLOS).empty


def test_missing_slo_is_an_error():
    with pytest.raises(InputError, match="code"):
        profile_rows("llama-3.1-8b", "H100-80GB", SHAPES, {"conv-short": SLOS["conv-short"]})


@given(inp=st.integers(16, 4000), out=st.integers(1, 1000), ttft=st.floats(50, 5000), tbt=st.floats(5, 300),
       e2e=st.one_of(st.none(), st.floats(500, 60_000)),
       cfg=st.sampled_from([("llama-3.1-8b", "L4", 1, 1), ("llama-3.1-8b", "H100-80GB", 1, 1),
                            ("llama-3.1-70b", "A100-80GB", 4, 1), ("qwen3-32b", "MI300X", 1, 1),
                            ("llama-3.1-70b", "B200", 2, 2)]))
def test_capacity_meets_given_slo(inp, out, ttft, tbt, e2e, cfg):
    rm = pm.replica_model(*cfg)
    cap = rm.capacity(inp, out, ttft, tbt, e2e)
    if cap is None:
        # not even one sequence meets the targets (or fits)
        b1 = rm._curves(inp, out, tbt)
        if b1 is not None:
            _, tb, _, tt, ee, ch = b1
            assert tb[0] > tbt or tt[0] > ttft or (e2e is not None and ee[0] > e2e) or ch[0] < 1
        return
    assert cap.tbt_ms <= tbt and cap.ttft_ms <= ttft and (e2e is None or cap.e2e_ms <= e2e)
    assert rm.tail_step_ms(cap.batch, inp, out, cap.chunk_tokens) <= tbt + 1e-9
    assert cap.idle_power_w < cap.busy_power_w <= rm.n_gpus * pm.gpu_spec(cfg[1]).tdp_w + 1e-6
    # a looser TBT never lowers the rate
    looser = rm.capacity(inp, out, ttft, tbt * 1.5, e2e)
    assert looser is not None and looser.max_rps >= cap.max_rps - 1e-9


@given(b=st.integers(1, 512), c=st.integers(0, 8000), db=st.integers(1, 64), dc=st.integers(1, 4000))
def test_decode_step_monotone(b, c, db, dc):
    rm = pm.replica_model("llama-3.1-70b", "H100-80GB", 4, 1)
    t = rm.decode_step_ms(b, c)
    assert rm.decode_step_ms(b + db, c) > t and rm.decode_step_ms(b, c + dc) > t
    assert math.isfinite(t) and t > 0

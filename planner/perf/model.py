"""Calibrated performance, power and DVFS model of one LLM serving replica.

One replica is one copy of a model on ``tp × pp`` GPUs of one type, at one SM clock. The model is
analytic (roofline terms for weight, KV-cache and FLOP work, plus software overheads and
tensor-parallel communication) with a handful of efficiency parameters fitted on public
measurements by ``tools/calibrate_perf.py`` and stored in ``data/perf_calibration.json``
(package ``planner_data``). Equations, parameters, calibration and held-out errors:
``docs/performance-model.md``.

The same functions serve the planner (:func:`planner.perf.rows.profile_rows`, :meth:`ReplicaModel.capacity`) and
discrete-event simulation (:meth:`ReplicaModel.decode_step_ms`, :meth:`ReplicaModel.prefill_ms`):
:func:`replica_model` precomputes every coefficient once, so a step-time call is a few float ops.

Units: milliseconds, watts, tokens, requests per second.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np
import pandas as pd

from planner.errors import InputError

# ---------------------------------------------------------------------------------------------
# serving assumptions (documented in docs/performance-model.md, "Assumptions")

BYTES_PER_PARAM = 2.0
"""BF16 weights and KV cache."""
MEM_UTIL = 0.9
"""vLLM ``gpu_memory_utilization`` default: share of GPU memory the engine may use."""
RESERVE_GB = 1.5
"""Per GPU, inside that share: activations, CUDA graphs, NCCL buffers."""
MAX_NUM_SEQS = 256
"""vLLM ``max_num_seqs`` default: most sequences decoded together."""
MIN_FIT_BATCH = 8
"""A configuration is produced only if the KV cache of 8 sequences of the longest shape fits."""
CHUNK_TOKENS = 2048
"""Chunked prefill: prompt tokens admitted per iteration (vLLM ``max_num_batched_tokens``)."""
LINK_EFF = 0.7
"""Achievable share of the GPU-GPU link bandwidth in all-reduce and pipeline hops."""
PCIE_LATENCY_FACTOR = 2.5
"""All-reduce latency over PCIe relative to the calibrated NVLink latency (assumption)."""
TTFT_QUEUE_ALLOWANCE = 2.0
"""TTFT adds this multiple of the M/D/1 mean prefill queueing wait (a tail allowance)."""
PLANNING_STACK = "vllm-v3"
"""Software stack whose overheads profiles use (vLLM 0.11 as measured by ML.ENERGY v3)."""
N_FREQ = 5
FREQ_FLOOR = 0.6
FREQ_STEP_MHZ = 15
TP_SET = (1, 2, 4, 8)
PP_SET = (1, 2)

SOURCE_MEASURED = "calibrated model (ML.ENERGY v2/v3, Splitwise)"
"""Source of rows for a GPU measured on every source (H100-80GB); see :func:`source_label`."""
SOURCE_ESTIMATED = "estimated from spec sheet"
_SOURCE_NAMES = {"ml-energy-v2": "ML.ENERGY v2", "ml-energy-v3": "ML.ENERGY v3", "splitwise": "Splitwise"}

ERROR_BOUNDS = {
    # Held-out error bounds, checked by tests/test_calibration.py: (source, metric) -> (median, p90) of
    # the absolute relative error (the median is what ``expected_error`` reports). A little above the
    # values in data/calibration_errors.csv.
    ("splitwise", "token_time"): (0.13, 0.32),
    ("splitwise", "prompt_time"): (0.17, 0.40),
    ("ml-energy-v2", "tpot"): (0.25, 0.85),
    ("ml-energy-v2", "throughput"): (0.11, 0.27),
    ("ml-energy-v2", "power"): (0.23, 0.65),
    ("ml-energy-v3", "itl"): (0.10, 0.27),
    ("ml-energy-v3", "throughput"): (0.19, 0.50),
    ("ml-energy-v3", "power"): (0.12, 0.23),
    ("leave-one-gpu-out", "throughput"): (0.12, 0.34),
    ("leave-one-gpu-out", "token_time"): (0.19, 0.33),
    ("splitwise-transfer", "throughput"): (0.11, 0.30),
    ("perseus-dvfs", "time"): (0.03, 0.04),
    ("perseus-dvfs", "power"): (0.05, 0.16),
    ("splitwise-pcap", "prompt_time_ratio"): (0.12, 0.12),
}
TRT_RATIO_MAX = 0.6
"""Our BF16 vLLM offline throughput stays well below TensorRT-LLM's FP8/FP4 measured maximum: the
largest observed ratio is 0.50, so a bound of 0.6 catches a regression (1.0 would be the physical bound)."""
LATENCY_QUANTUM_MS = 0.1
"""Profile rows give TTFT and TBT rounded *up* to this step; the SLO checks are made on the rounded values."""
MAX_RPS_DIGITS = 4
"""Profile rows give ``max_rps`` rounded *down* to this many significant digits."""
TBT_TAIL_CHECK = True
"""Capacity also requires the decode step that carries a prompt chunk to stay within the TBT target, not
only the mean TBT: the chunk (vLLM ``max_num_batched_tokens``) is lowered below ``CHUNK_TOKENS`` as far as
needed, at the cost of more prefill steps in TTFT (docs/performance-model.md, "Which statistic")."""


# ---------------------------------------------------------------------------------------------
# specs


@dataclass(frozen=True)
class GPUSpec:
    """Datasheet figures of one GPU type (``data/gpu_specs.csv``)."""

    name: str
    memory_gb: float
    mem_bw_gbs: float
    bf16_tflops: float
    fp8_tflops: float | None
    tdp_w: float
    min_clock_mhz: int
    max_clock_mhz: int
    interconnect: str
    link_gbs: float
    family: str
    source: str

    @property
    def nvlink(self) -> bool:
        """Whether GPUs of a replica talk over a scale-up link (NVLink, Infinity Fabric) rather than PCIe."""
        return not self.interconnect.startswith("PCIe")

    def freq_levels(self) -> list[int]:
        """The 5 clock levels the planner considers: evenly spaced from 0.6 × max to max, 15 MHz grid."""
        return [int(round(f / FREQ_STEP_MHZ) * FREQ_STEP_MHZ)
                for f in np.linspace(FREQ_FLOOR * self.max_clock_mhz, self.max_clock_mhz, N_FREQ)]


@dataclass(frozen=True)
class ModelSpec:
    """Architecture of one dense decoder-only model (``data/model_specs.csv``)."""

    name: str
    hf_id: str
    params_b: float
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    source: str

    @property
    def weight_bytes(self) -> float:
        return self.params_b * 1e9 * BYTES_PER_PARAM

    @property
    def kv_bytes_per_token(self) -> float:
        """K and V of every layer for one token (one copy of every KV head)."""
        return 2 * self.layers * self.kv_heads * self.head_dim * BYTES_PER_PARAM

    def tp_ok(self, tp: int) -> bool:
        """Whether tensor parallelism ``tp`` splits the model as vLLM requires: query heads divisible by
        ``tp``, and KV heads either divisible by ``tp`` or (``tp > kv_heads``) dividing it."""
        return self.heads % tp == 0 and (self.kv_heads % tp == 0 or tp % self.kv_heads == 0)

    def kv_heads_stored(self, tp: int) -> int:
        """KV heads held by a TP group of ``tp`` GPUs: ``kv_heads``, or ``tp`` when ``tp > kv_heads``
        (every GPU holds at least one KV head, so heads are replicated ``tp / kv_heads`` times)."""
        return max(self.kv_heads, tp)

    def kv_bytes_per_token_tp(self, tp: int) -> float:
        """KV bytes one token occupies (and a decode step reads) across a replica with TP ``tp``,
        replicated KV heads included."""
        return 2 * self.layers * self.kv_heads_stored(tp) * self.head_dim * BYTES_PER_PARAM

    @property
    def attn_dim(self) -> int:
        return self.heads * self.head_dim


def _data_text(name: str) -> str:
    return resources.files("planner_data").joinpath(name).read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def _gpu_table() -> dict[str, GPUSpec]:
    import io

    df = pd.read_csv(io.StringIO(_data_text("gpu_specs.csv")))
    out = {}
    for r in df.itertuples(index=False):
        out[r.gpu] = GPUSpec(r.gpu, float(r.memory_gb), float(r.mem_bw_gbs), float(r.bf16_tflops),
                             None if pd.isna(r.fp8_tflops) else float(r.fp8_tflops), float(r.tdp_w),
                             int(r.min_clock_mhz), int(r.max_clock_mhz), r.interconnect, float(r.link_gbs),
                             r.family, r.source)
    return out


@lru_cache(maxsize=1)
def _model_table() -> dict[str, ModelSpec]:
    import io

    df = pd.read_csv(io.StringIO(_data_text("model_specs.csv")))
    return {r.model: ModelSpec(r.model, r.hf_id, float(r.params_b), int(r.layers), int(r.hidden), int(r.heads),
                               int(r.kv_heads), int(r.head_dim), r.source) for r in df.itertuples(index=False)}


@lru_cache(maxsize=1)
def calibration() -> dict:
    """The fitted parameters (``data/perf_calibration.json``)."""
    return json.loads(_data_text("perf_calibration.json"))


def known_gpus() -> list[str]:
    return sorted(_gpu_table())


def known_models() -> list[str]:
    return sorted(_model_table())


def gpu_spec(name: str) -> GPUSpec:
    try:
        return _gpu_table()[name]
    except KeyError:
        raise InputError(f"unknown GPU type {name!r}; known: {', '.join(known_gpus())}") from None


def model_spec(name: str) -> ModelSpec:
    try:
        return _model_table()[name]
    except KeyError:
        raise InputError(f"unknown model {name!r}; known: {', '.join(known_models())}") from None


# ---------------------------------------------------------------------------------------------
# parameters


@dataclass(frozen=True)
class Params:
    """Calibrated parameters used to build one replica model.

    ``eta_bw``/``eta_f``: achieved share of datasheet memory bandwidth / dense BF16 FLOP/s;
    ``step_ms``, ``seq_ms``: software overhead per engine iteration and per sequence in it;
    ``ar_us``: latency of one all-reduce per doubling of TP (NVLink); ``phi``: share of compute
    time that scales with 1/clock; ``idle_frac``, ``p_mem``, ``p_comp``: per-GPU power (share of
    TDP) when idle, in memory-bound and in compute-bound work; ``gamma_c``/``gamma_m``: clock
    exponent of dynamic power in compute- / memory-bound work; ``expected_error``: median relative
    error of ``max_rps`` at max clock; ``source``: the rows' source label.
    """

    eta_bw: float
    eta_f: float
    step_ms: float
    seq_ms: float
    ar_us: float
    phi: float
    idle_frac: float
    p_mem: float
    p_comp: float
    gamma_c: float
    gamma_m: float
    measured: bool
    expected_error: float
    source: str = ""


def source_label(gpu: str, cal: dict | None = None) -> str:
    """The ``source`` of a GPU's profile rows: ``"calibrated model (<its measurement sources>)"`` for a
    measured GPU, e.g. ``"calibrated model (Splitwise)"`` for A100-80GB and :data:`SOURCE_MEASURED`
    for H100-80GB; :data:`SOURCE_ESTIMATED` for the others."""
    g = (cal or calibration())["gpu"].get(gpu)
    if g is None:
        return SOURCE_ESTIMATED
    names = [_SOURCE_NAMES[s] for s in g["sources"]]
    if "ML.ENERGY v2" in names and "ML.ENERGY v3" in names:
        names = ["ML.ENERGY v2/v3"] + [n for n in names if not n.startswith("ML.ENERGY")]
    return f"calibrated model ({', '.join(names)})"


def params_for(gpu: str, stack: str = PLANNING_STACK, cal: dict | None = None) -> Params:
    """Parameters for ``gpu``: its own fitted efficiencies if it was measured, else the default.
    ``expected_error`` (median relative error of ``max_rps`` at max clock) is the GPU's own for a
    measured GPU, else the estimated-GPU error."""
    cal = cal or calibration()
    g = cal["gpu"].get(gpu)
    measured = g is not None
    eff = g if measured else cal["default_gpu"]
    sw = cal["software"][stack]
    pw, dv, ee = cal["power"], cal["dvfs"], cal["expected_error"]
    return Params(eta_bw=eff["eta_bw"], eta_f=eff["eta_f"], step_ms=sw["step_ms"], seq_ms=sw["seq_ms"],
                  ar_us=sw["ar_us"], phi=dv["phi"], idle_frac=pw["idle_frac"], p_mem=pw["p_mem"],
                  p_comp=pw["p_comp"], gamma_c=dv["gamma_c"], gamma_m=dv["gamma_m"], measured=measured,
                  expected_error=g["expected_error"] if measured else ee["estimated"],
                  source=source_label(gpu, cal))


# ---------------------------------------------------------------------------------------------
# the replica model


@dataclass(frozen=True)
class Capacity:
    """Operating point of a replica at its largest SLO-meeting load."""

    max_rps: float
    ttft_ms: float
    tbt_ms: float
    e2e_ms: float
    batch: int
    busy_power_w: float
    idle_power_w: float
    chunk_tokens: int = CHUNK_TOKENS
    """Prompt tokens per step (``max_num_batched_tokens``) that keeps the chunk-carrying step within TBT."""


@dataclass(frozen=True)
class ReplicaModel:
    """Step times and power of one replica; build it with :func:`replica_model`.

    Decode step for a batch of ``B`` sequences whose mean context (prompt + tokens generated so
    far) is ``C`` tokens: ``t = a0 + a1·B + a2·B·C`` ms, split for power into overhead (GPU at
    idle power), memory-bound and compute-bound time. A prompt of ``s`` tokens added to a step
    (chunked prefill) costs ``pf1·s + pf2·s²`` ms of replica time.
    """

    model: str
    gpu: str
    tp: int
    pp: int
    freq_mhz: float
    n_gpus: int
    # decode step coefficients (ms)
    oh0: float       # per-step software overhead
    oh1: float       # per-sequence software overhead
    mem0: float      # weight read + all-reduce / hop latency
    mem1: float      # per-sequence activation traffic (all-reduce bytes, hops)
    mem2: float      # per sequence-token KV read
    cmp1: float      # per-sequence FLOPs
    cmp2: float      # per sequence-token attention FLOPs
    # prefill (ms): replica occupancy per prompt token and per prompt token², latency per token
    pf1: float
    pf2: float
    pf_lat1: float
    pf_lat2: float
    pf_mem: float    # weight read through the pipeline (bounds a stand-alone prefill from below)
    # memory
    kv_budget_bytes: float
    kv_bytes_per_token: float
    # power per replica (W)
    idle_w: float
    mem_w: float     # power while memory-bound, at this clock
    cmp_w: float     # power while compute-bound, at this clock
    measured: bool
    expected_error: float
    source: str = SOURCE_ESTIMATED

    # ---- times
    def decode_step_ms(self, batch: float, context_tokens: float) -> float:
        """One decode iteration for ``batch`` sequences with mean context ``context_tokens`` (prompt +
        generated so far, per sequence): every sequence gets one token. Equals the TBT at that batch
        without prefills."""
        return (self.oh0 + self.mem0 + batch * (self.oh1 + self.mem1 + self.cmp1)
                + batch * context_tokens * (self.mem2 + self.cmp2))

    def prefill_work_ms(self, prompt_tokens: float) -> float:
        """Replica time a prompt adds to the iterations it is chunked into (no weight read: the decode
        step reads the weights anyway)."""
        return self.pf1 * prompt_tokens + self.pf2 * prompt_tokens * prompt_tokens

    def prefill_ms(self, prompt_tokens: float, batch: int = 1) -> float:
        """Latency of a stand-alone prefill iteration of ``batch`` prompts of ``prompt_tokens`` each,
        through the whole pipeline: overhead + max(weight read, FLOPs) + communication."""
        comp = batch * (self.pf_lat1 * prompt_tokens + self.pf_lat2 * prompt_tokens * prompt_tokens)
        return self.oh0 + batch * self.oh1 + max(self.pf_mem, comp)

    def tbt_ms(self, batch: float, input_tokens: float, output_tokens: float) -> float:
        """Mean time between tokens with continuous batching and chunked prefill: the decode step at
        mean context ``input + output/2`` plus each step's share of the prefills (B/output prompts per
        step in steady state)."""
        ctx = input_tokens + output_tokens / 2.0
        return self.decode_step_ms(batch, ctx) + batch / output_tokens * self.prefill_work_ms(input_tokens)

    @property
    def kv_tokens(self) -> float:
        """Tokens the KV cache holds (whole tokens; 0 when the weights leave no room)."""
        return self.kv_budget_bytes // self.kv_bytes_per_token if self.kv_bytes_per_token > 0 else 0.0

    def max_batch(self, context_tokens: float) -> int:
        """Most sequences of ``context_tokens`` tokens (prompt + output) whose KV cache fits, capped at
        ``MAX_NUM_SEQS``; 0 if not even one fits."""
        if self.kv_budget_bytes <= 0:
            return 0
        return int(min(MAX_NUM_SEQS, self.kv_budget_bytes // (self.kv_bytes_per_token * max(context_tokens, 1))))

    # ---- power
    def busy_power_parts(self, batch: float, input_tokens: float, output_tokens: float) -> tuple[float, float, float]:
        """(overhead, memory-bound, compute-bound) ms of one steady-state iteration at ``batch``."""
        ctx = input_tokens + output_tokens / 2.0
        share = batch / output_tokens
        oh = self.oh0 + batch * self.oh1
        mem = self.mem0 + batch * self.mem1 + batch * ctx * self.mem2
        cmp_ = batch * self.cmp1 + batch * ctx * self.cmp2 + share * self.prefill_work_ms(input_tokens)
        return oh, mem, cmp_

    def power_w(self, busy_fraction: float = 1.0, phase_mix: tuple[float, float, float] | None = None) -> float:
        """Replica power. ``phase_mix`` = time shares (overhead, memory-bound, compute-bound) of the
        busy time (default: a memory-bound decode step); ``busy_fraction`` of the time is busy, the
        rest idle: ``idle + (busy − idle)·busy_fraction``."""
        o, m, c = phase_mix if phase_mix is not None else (0.0, 1.0, 0.0)
        tot = o + m + c
        busy = (o * self.idle_w + m * self.mem_w + c * self.cmp_w) / tot
        return self.idle_w + (busy - self.idle_w) * busy_fraction

    @property
    def idle_power_w(self) -> float:
        return self.idle_w

    def active_power_w(self, input_tokens: float | None = None, output_tokens: float | None = None) -> float:
        """Power of the replica while its engine runs continuously with a single sequence: the
        zero-load intercept of its power under continuous batching (any load keeps the engine
        stepping; a light load only makes the batch small, and every step still reads the weights).

        With ``output_tokens``: the steady-state iteration at batch 1 of that shape, its share of the
        prompt work included (:meth:`busy_power_parts` at batch 1). Without: one decode step of a
        single sequence at context ``input_tokens`` (0 if None), prompt work not counted."""
        if output_tokens is None:
            ctx = float(input_tokens or 0.0)
            parts = (self.oh0 + self.oh1, self.mem0 + self.mem1 + ctx * self.mem2, self.cmp1 + ctx * self.cmp2)
        else:
            parts = self.busy_power_parts(1, float(input_tokens or 0.0), float(output_tokens))
        return self.power_w(1.0, parts)

    def tail_step_ms(self, batch: float, input_tokens: float, output_tokens: float,
                     chunk_tokens: float = CHUNK_TOKENS) -> float:
        """The decode step that carries a whole prompt chunk (``min(input, chunk_tokens)`` prompt
        tokens): the step every decoding sequence sees whenever a prompt is admitted. The mean
        :meth:`tbt_ms` spreads that work over ``output/batch`` steps."""
        s = np.minimum(float(input_tokens), chunk_tokens)
        return self.decode_step_ms(batch, input_tokens + output_tokens / 2.0) + self.prefill_work_ms(s)

    # ---- capacity at an SLO
    def _curves(self, input_tokens: float, output_tokens: float, tbt_target: float | None = None):
        """Per batch 1..max_batch: (batch, mean tbt, rate, ttft, e2e, chunk tokens). With a TBT target
        (and ``TBT_TAIL_CHECK``) the prefill chunk is the largest ≤ ``CHUNK_TOKENS`` whose step stays
        within it; it is 0 where no chunk carrying the mean prefill load per step fits."""
        bmax = self.max_batch(input_tokens + output_tokens)
        if bmax < 1:
            return None
        b = np.arange(1, bmax + 1, dtype=float)
        ctx = input_tokens + output_tokens / 2.0
        pw = self.prefill_work_ms(input_tokens)
        step = (self.oh0 + self.mem0) + b * (self.oh1 + self.mem1 + self.cmp1) + b * ctx * (self.mem2 + self.cmp2)
        tbt = step + b / output_tokens * pw
        rate = b / (output_tokens * tbt) * 1e3                      # req/s
        # TTFT: the iteration in flight (tbt), then the request's own prefill latency through the
        # pipeline inside a step (step + its chunks), plus an allowance for prefills queued ahead
        # (M/D/1 with service = prefill work, utilisation rho = rate × work).
        chunk = np.full_like(b, float(CHUNK_TOKENS))
        if TBT_TAIL_CHECK and tbt_target is not None:
            room = np.maximum(tbt_target - step, 0.0)                # prefill work a step may carry
            smax = (2 * room / (self.pf1 + np.sqrt(self.pf1 ** 2 + 4 * self.pf2 * room))) if self.pf1 > 0 \
                else np.full_like(b, float(CHUNK_TOKENS))
            chunk = np.minimum(chunk, np.floor(smax + 1e-9))
            # the budget must carry the mean prefill load (b/out prompts per step)
            chunk = np.where((chunk >= 1) & (chunk >= b / output_tokens * input_tokens - 1e-9), chunk, 0.0)
        chunks = np.ceil(input_tokens / np.maximum(chunk, 1.0))
        own = chunks * step + (self.pf_lat1 * input_tokens + self.pf_lat2 * input_tokens ** 2)
        rho = np.minimum(rate * pw / 1e3, 0.999)
        wait = rho * pw / (2.0 * (1.0 - rho))
        ttft = tbt + own + TTFT_QUEUE_ALLOWANCE * wait
        e2e = ttft + (output_tokens - 1) * tbt
        return b, tbt, rate, ttft, e2e, chunk

    def capacity(self, input_tokens: float, output_tokens: float, ttft_ms: float, tbt_ms: float,
                 e2e_ms: float | None = None, latency_quantum_ms: float | None = None) -> Capacity | None:
        """Largest request rate one replica sustains with TTFT, TBT (and end-to-end latency, when given)
        within target, or ``None`` when even one sequence misses a target or does not fit.

        Statistics: ``tbt_ms`` is the steady-state *mean* time between tokens (decode step plus each
        step's share of the chunked prefills); ``ttft_ms`` is the iteration in flight + the request's
        own chunked prefill + 2 × the mean M/D/1 wait for prefills queued ahead (a tail allowance,
        not a measured percentile); ``e2e_ms = ttft + (output − 1) × tbt``. With ``TBT_TAIL_CHECK``
        the step that carries a prompt chunk (:meth:`tail_step_ms`) must also be within the TBT
        target: the chunk is lowered below ``CHUNK_TOKENS`` as needed (``Capacity.chunk_tokens``),
        which adds prefill steps to the TTFT. The batch ``B`` (concurrent sequences) is the largest-rate one that meets every
        target; the rate is ``B / (output × tbt(B))`` (Little's law over the decode phase).
        ``busy_power_w`` is the replica power at that rate.

        ``latency_quantum_ms``: check TTFT and TBT rounded *up* to this step (as :func:`profile_rows`
        reports them), so the rounded values, and the e2e recomputed from them, meet the targets."""
        inp, out = float(input_tokens), float(output_tokens)
        cur = self._curves(inp, out, tbt_ms)
        if cur is None:
            return None
        b, tbt, rate, ttft, e2e, chunk = cur
        if latency_quantum_ms:
            tbt_c, ttft_c = _ceil_to(tbt, latency_quantum_ms), _ceil_to(ttft, latency_quantum_ms)
            e2e_c = ttft_c + (out - 1) * tbt_c
        else:
            tbt_c, ttft_c, e2e_c = tbt, ttft, e2e
        ok = (tbt_c <= tbt_ms) & (ttft_c <= ttft_ms)
        ok &= chunk >= 1
        if e2e_ms is not None:
            ok &= e2e_c <= e2e_ms
        if not ok.any():
            return None
        i = int(np.flatnonzero(ok)[np.argmax(rate[ok])])
        B = int(b[i])
        mix = self.busy_power_parts(B, input_tokens, output_tokens)
        return Capacity(max_rps=float(rate[i]), ttft_ms=float(ttft[i]), tbt_ms=float(tbt[i]), e2e_ms=float(e2e[i]),
                        batch=B, busy_power_w=self.power_w(1.0, mix), idle_power_w=self.idle_w,
                        chunk_tokens=int(chunk[i]))

    def offline_throughput(self, input_tokens: float, output_tokens: float) -> float:
        """Output tokens/s at the largest batch that fits, no latency target (for bounds checks)."""
        cur = self._curves(float(input_tokens), float(output_tokens))
        if cur is None:
            return 0.0
        return float(cur[2][-1] * output_tokens)


def _ceil_to(x, q: float):
    """``x`` rounded up to a multiple of ``q`` (values within 1e-6·q of the grid snap to it). For
    ``q = 1/k`` the result is the double nearest ``m/k``, i.e. what ``round(·, decimals)`` prints."""
    k = round(1.0 / q)
    grid = np.ceil(np.round(np.asarray(x, float) / q, 6))
    out = grid / k if abs(k * q - 1.0) < 1e-12 else grid * q
    return out if np.ndim(out) else float(out)


def _round_latency(x: float, q: float = LATENCY_QUANTUM_MS) -> float:
    """A latency as profile rows give it: rounded up to ``q``."""
    return _ceil_to(x, q)


def _floor_sig(x: float, digits: int = MAX_RPS_DIGITS) -> float:
    """``x`` rounded down to ``digits`` significant digits (never above ``x``)."""
    from decimal import ROUND_FLOOR, Decimal

    if x <= 0 or not math.isfinite(x):
        return float(x)
    d = Decimal(x)
    e = d.adjusted() - digits + 1
    return float(d.quantize(Decimal(1).scaleb(e), rounding=ROUND_FLOOR))


def _ar_latency_ms(g: GPUSpec, tp: int, p: Params) -> float:
    if tp <= 1:
        return 0.0
    lat = p.ar_us * 1e-3 * math.log2(tp)
    return lat * (1.0 if g.nvlink else PCIE_LATENCY_FACTOR)


def build_replica(m: ModelSpec, g: GPUSpec, tp: int, pp: int, freq_mhz: float, p: Params) -> ReplicaModel:
    """The replica model from explicit specs and parameters (used by calibration and tests)."""
    n = tp * pp
    r = freq_mhz / g.max_clock_mhz
    kc = p.phi / r + (1.0 - p.phi)                       # compute-time stretch at this clock
    bw = p.eta_bw * g.mem_bw_gbs * 1e9 / 1e3             # bytes per ms, per GPU
    fl = p.eta_f * g.bf16_tflops * 1e12 / 1e3 / kc       # FLOP per ms, per GPU
    link = LINK_EFF * g.link_gbs * 1e9 / 1e3             # bytes per ms
    P = m.params_b * 1e9
    act = m.hidden * BYTES_PER_PARAM                     # activation bytes per token
    ar_lat = _ar_latency_ms(g, tp, p)
    ar_bytes_tok = (2 * m.layers * 2 * (tp - 1) / tp * act / link) if tp > 1 else 0.0
    hop_lat = (pp - 1) * (p.ar_us * 1e-3 * (1.0 if g.nvlink else PCIE_LATENCY_FACTOR))
    hop_tok = (pp - 1) * act / link
    # decode: weights read once per step per TP group (PP stages run in turn for a token), KV and
    # FLOPs shared by all n GPUs; 2 all-reduces per layer along a token's path
    mem0 = m.weight_bytes / (tp * bw) + 2 * m.layers * ar_lat + hop_lat
    mem1 = (ar_bytes_tok + hop_tok) / pp
    kv_tok = m.kv_bytes_per_token_tp(tp)                 # KV heads replicated when tp > kv_heads
    mem2 = kv_tok / (n * bw)
    cmp1 = 2 * P / (n * fl)
    cmp2 = 4 * m.layers * m.attn_dim / (n * fl)
    # prefill: 2P FLOPs per token, causal attention 2·layers·attn_dim·s² FLOPs per prompt
    pf1 = 2 * P / (n * fl) + (ar_bytes_tok + hop_tok) / pp
    pf2 = 2 * m.layers * m.attn_dim / (n * fl)
    pf_lat1 = 2 * P / (tp * fl) + ar_bytes_tok + hop_tok
    pf_lat2 = 2 * m.layers * m.attn_dim / (tp * fl)
    pf_mem = m.weight_bytes / (tp * bw) + 2 * m.layers * ar_lat + hop_lat
    kv_budget = n * (MEM_UTIL * g.memory_gb - RESERVE_GB) * 1e9 - m.weight_bytes
    # power per GPU at this clock
    idle = p.idle_frac * g.tdp_w
    mem_w = idle + (p.p_mem * g.tdp_w - idle) * r ** p.gamma_m
    cmp_w = idle + (p.p_comp * g.tdp_w - idle) * r ** p.gamma_c
    return ReplicaModel(model=m.name, gpu=g.name, tp=tp, pp=pp, freq_mhz=float(freq_mhz), n_gpus=n,
                        oh0=p.step_ms, oh1=p.seq_ms, mem0=mem0, mem1=mem1, mem2=mem2, cmp1=cmp1, cmp2=cmp2,
                        pf1=pf1, pf2=pf2, pf_lat1=pf_lat1, pf_lat2=pf_lat2, pf_mem=pf_mem,
                        kv_budget_bytes=kv_budget, kv_bytes_per_token=kv_tok,
                        idle_w=n * idle, mem_w=n * mem_w, cmp_w=n * cmp_w, measured=p.measured,
                        expected_error=p.expected_error, source=p.source or SOURCE_ESTIMATED)


@lru_cache(maxsize=4096)
def replica_model(model: str, gpu: str, tp: int, pp: int = 1, freq_mhz: float | None = None) -> ReplicaModel:
    """The calibrated model of one replica (``freq_mhz`` None = the GPU's max clock)."""
    m, g = model_spec(model), gpu_spec(gpu)
    if tp not in TP_SET or pp < 1:
        raise InputError(f"tp must be one of {TP_SET} and pp >= 1 (got tp={tp}, pp={pp})")
    if not m.tp_ok(tp):
        raise InputError(f"tp={tp} does not split {model}'s {m.heads} attention heads / {m.kv_heads} KV heads")
    f = float(g.max_clock_mhz if freq_mhz is None else freq_mhz)
    if not (0.3 * g.max_clock_mhz <= f <= g.max_clock_mhz):
        raise InputError(f"clock {f:g} MHz outside {gpu}'s range (0.3 × {g.max_clock_mhz} .. {g.max_clock_mhz} MHz)")
    return build_replica(m, g, tp, pp, f, params_for(gpu))


# ---------------------------------------------------------------------------------------------
# profile rows


def configs_for(model: str, gpu: str, longest_context: int, tps=TP_SET, pps=PP_SET) -> list[tuple[int, int]]:
    """(tp, pp) whose memory holds the weights plus the KV cache of ``MIN_FIT_BATCH`` sequences of
    ``longest_context`` tokens, dropping needlessly wide ones (tp·pp > 2 × the smallest that fits).
    ``tp`` must divide the attention heads and divide or be a multiple of the KV heads
    (:meth:`ModelSpec.tp_ok`); with ``tp > kv_heads`` the KV cache is replicated (every GPU holds at
    least one KV head), which :meth:`ModelSpec.kv_bytes_per_token_tp` counts."""
    m, g = model_spec(model), gpu_spec(gpu)
    fits = []
    for tp in tps:
        if not m.tp_ok(tp):
            continue
        for pp in pps:
            n = tp * pp
            budget = n * (MEM_UTIL * g.memory_gb - RESERVE_GB) * 1e9 - m.weight_bytes
            if budget >= MIN_FIT_BATCH * longest_context * m.kv_bytes_per_token_tp(tp):
                fits.append((tp, pp))
    if not fits:
        return []
    n_min = min(tp * pp for tp, pp in fits)
    return sorted((tp, pp) for tp, pp in fits if tp * pp <= 2 * n_min)


def expected_error(rm: ReplicaModel) -> float:
    """Expected error of ``max_rps``, as a median relative error: the GPU's held-out error (measured
    GPUs) or the estimated-GPU error (with the leave-one-GPU-out error of the efficiencies), combined
    in quadrature with the DVFS time error below max clock."""
    base = rm.expected_error
    if rm.freq_mhz < gpu_spec(rm.gpu).max_clock_mhz:
        return math.hypot(base, calibration()["expected_error"]["dvfs"])
    return base

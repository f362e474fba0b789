"""Calibration of :mod:`planner.perf.model` on public measurements, and its held-out errors.

Used by ``tools/calibrate_perf.py`` (writes ``data/perf_calibration.json`` and
``data/calibration_errors.csv``) and by ``tests/test_calibration.py`` (recomputes both from the raw
data and compares). Needs the raw data folder (``shared/data``); the library itself never does.

Every fit is a (weighted) linear least-squares problem, alternated a few times between the decode
and prefill parts; no optimiser beyond numpy is needed. Sources and assumptions:
``docs/performance-model.md``.
"""

from __future__ import annotations

import glob
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from planner.perf.model import Params, build_replica, gpu_spec, model_spec

# ---------------------------------------------------------------------------------------------
# assumptions about the measurement setups (inputs are not in the files)

INPUT_TOKENS = {
    ("ml-energy-v2", "chat"): 250,       # ShareGPT first-turn prompts + system prompt (v2 benchmark)
    ("ml-energy-v2", "code"): 150,       # short code-completion prompts
    ("ml-energy-v3", "lm-arena-chat"): 500,
    ("ml-energy-v3", "gpqa"): 250,       # question + 4 choices + instruction
}
PCAP_FRACTION = 0.7                      # Splitwise "HHcap": H100 capped at 70 % of TDP (assumption)
ITERATIONS = 6
ETA_BW_MAX = 0.92                        # no GPU streams more than ~92 % of its datasheet memory bandwidth

V2_MODELS = {
    "Meta-Llama-3.1-8B-Instruct": "llama-3.1-8b", "Meta-Llama-3.1-70B-Instruct": "llama-3.1-70b",
    "Meta-Llama-3.1-405B-Instruct": "llama-3.1-405b", "Mistral-7B-Instruct-v0.3": "mistral-7b-v0.3",
    "Mistral-Nemo-Instruct-2407": "mistral-nemo-12b", "Mistral-Large-Instruct-2407": "mistral-large-2407",
    "Phi-3-mini-4k-instruct": "phi-3-mini", "Phi-3-medium-4k-instruct": "phi-3-medium",
    "CodeLlama-7b-hf": "codellama-7b", "CodeLlama-13b-hf": "codellama-13b", "CodeLlama-34b-hf": "codellama-34b",
    "CodeLlama-70b-hf": "codellama-70b", "starcoder2-3b": "starcoder2-3b", "starcoder2-7b": "starcoder2-7b",
    "starcoder2-15b": "starcoder2-15b",
}
V3_MODELS = {
    "meta-llama/Llama-3.1-8B-Instruct": "llama-3.1-8b", "meta-llama/Llama-3.1-70B-Instruct": "llama-3.1-70b",
    "meta-llama/Llama-3.3-70B-Instruct": "llama-3.3-70b", "meta-llama/Llama-3.1-405B-Instruct": "llama-3.1-405b",
    "Qwen/Qwen3-8B": "qwen3-8b", "Qwen/Qwen3-14B": "qwen3-14b", "Qwen/Qwen3-32B": "qwen3-32b",
}
GPU_NAMES = {"A100-SXM4-40GB": "A100-40GB", "H100-80GB-HBM3": "H100-80GB", "H100": "H100-80GB", "B200": "B200",
             "a100-80gb": "A100-80GB", "h100-80gb": "H100-80GB", "h100-80gb-pcap": "H100-80GB"}
SW_MODELS = {"llama2-70b": "llama-2-70b", "bloom-176b": "bloom-176b"}
TRT_MODELS = {"Llama-3.1-8B": "llama-3.1-8b", "Llama-3.3-70B": "llama-3.3-70b", "Llama-3.1-405B": "llama-3.1-405b"}
STACKS = ("vllm-v3", "vllm-v2", "splitwise")
STACK_OF = {"ml-energy-v3": "vllm-v3", "ml-energy-v2": "vllm-v2", "splitwise": "splitwise"}
TDP_A40 = 300.0


# ---------------------------------------------------------------------------------------------
# data


def load_points(shared: Path) -> pd.DataFrame:
    """One row per measured operating point: source, model, gpu, tp, pp, batch B, input I, output O
    (or Splitwise prompt/token sizes), and the measured quantities."""
    perf = Path(shared) / "perf"
    rows = []
    for f in sorted(glob.glob(str(perf / "ml-energy-v2" / "*" / "*" / "*" / "*" / "*.json"))):
        parts = Path(f).parts
        task, gdir, mdir = parts[-5], parts[-4], parts[-2]
        if mdir not in V2_MODELS:
            continue
        d = json.loads(Path(f).read_text())
        B, O = float(d["Avg BS (reqs)"]), float(d["Avg Output Tokens"])
        tput = float(d["Token tput (tok/s)"])
        rows.append(dict(source="ml-energy-v2", model=V2_MODELS[mdir], gpu=GPU_NAMES[gdir], tp=int(d["TP"]),
                         pp=int(d["PP"]), B=B, I=INPUT_TOKENS[("ml-energy-v2", task)], O=O,
                         tpot=1e3 * float(d["Avg TPOT (s)"]), throughput=tput,
                         power=float(d["Energy/req (J)"]) * tput / O))
    for f in sorted(glob.glob(str(perf / "ml-energy-v3" / "*.json"))):
        d = json.loads(Path(f).read_text())
        if d["model_id"] not in V3_MODELS or d.get("weight_precision") != "bfloat16":
            continue
        for c in d["configurations"]:
            if c["gpu_model"] == "B200" and d["task"] == "gpqa":
                continue  # B200 GPQA runs: ITL 4-7x the same model's B200 chat ITL at equal batch (anomalous)
            par = c["parallelization"]
            if par["data_parallel"] != 1 or par["expert_parallel"] != 1:
                continue
            rows.append(dict(source="ml-energy-v3", model=V3_MODELS[d["model_id"]], gpu=GPU_NAMES[c["gpu_model"]],
                             tp=int(par["tensor_parallel"]), pp=1, B=float(c["avg_batch_size"]),
                             I=INPUT_TOKENS[("ml-energy-v3", d["task"])], O=float(c["avg_output_len"]),
                             itl=float(c["median_itl_ms"]), throughput=float(c["output_throughput_tokens_per_sec"]),
                             power=float(c["avg_power_watts"])))
    sw = pd.read_csv(perf / "splitwise_perf_model.csv")
    g = sw.groupby(["model", "hardware", "tensor_parallel", "prompt_size", "batch_size", "token_size"],
                   as_index=False)[["prompt_time", "token_time"]].median()
    for r in g.itertuples(index=False):
        src = "splitwise-pcap" if r.hardware.endswith("pcap") else "splitwise"
        rows.append(dict(source=src, model=SW_MODELS[r.model], gpu=GPU_NAMES[r.hardware], tp=int(r.tensor_parallel),
                         pp=1, B=float(r.batch_size), I=float(r.prompt_size), O=float(r.token_size),
                         prompt_time=float(r.prompt_time), token_time=float(r.token_time)))
    df = pd.DataFrame(rows)
    # Splitwise prompt_time at batch 64 with TP 2 is below the batch-32 time (a failed run): drop it
    bad = (df.source.str.startswith("splitwise")) & (df.tp == 2) & (df.B == 64)
    df.loc[bad, "prompt_time"] = np.nan
    return df.reset_index(drop=True)


def load_perseus(shared: Path) -> pd.DataFrame:
    """Forward passes (all pipeline stages) at every SM clock: time and power relative to max clock.
    A100 SXM only: the A40 (300 W PCIe) reaches its power limit above ~0.8 of its max clock, so its
    nominal clock there is not the clock it ran at."""
    out = []
    for f in sorted(glob.glob(str(Path(shared) / "perf" / "perseus-dvfs" / "*a100*.csv"))):
        name = Path(f).stem
        d = pd.read_csv(f)
        d = d[d.instruction == "forward"]
        for st, ds in d.groupby("stage"):
            fmax = ds.frequency.max()
            top = ds[ds.frequency == fmax].iloc[0]
            for r in ds.itertuples(index=False):
                out.append(dict(file=name, stage=int(st), r=r.frequency / fmax, t_rel=r.time / top.time,
                                p_rel=(r.energy / r.time) / (top.energy / top.time)))
    return pd.DataFrame(out)


def load_trt(shared: Path) -> pd.DataFrame:
    d = pd.read_csv(Path(shared) / "perf" / "tensorrt-llm_max_throughput.csv")
    d = d[d.model.isin(TRT_MODELS) & d.gpu.isin(["H100", "H200", "B200"])].copy()
    d["model"] = d.model.map(TRT_MODELS)
    d["gpu"] = d.gpu.map({"H100": "H100-80GB", "H200": "H200", "B200": "B200"})
    return d.reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# parameters during fitting


def initial_state() -> dict:
    return dict(
        gpu={}, default_gpu=dict(eta_bw=0.8, eta_f=0.5),
        software={s: dict(step_ms=5.0, seq_ms=0.01, ar_us=20.0) for s in STACKS},
        splitwise_prefill_ms=20.0,
        power=dict(idle_frac=0.15, p_mem=0.6, p_comp=0.9),
        dvfs=dict(phi=0.9, gamma_c=2.0, gamma_m=1.0),
        expected_error=dict(measured=0.2, estimated=0.3, dvfs=0.05),
    )


def _eff(state: dict, gpu: str) -> dict:
    return state["gpu"].get(gpu, state["default_gpu"])


def _params(state: dict, gpu: str, stack: str, **over) -> Params:
    e = _eff(state, gpu)
    sw, pw, dv = state["software"][stack], state["power"], state["dvfs"]
    p = Params(eta_bw=e["eta_bw"], eta_f=e["eta_f"], step_ms=sw["step_ms"], seq_ms=sw["seq_ms"], ar_us=sw["ar_us"],
               phi=dv["phi"], idle_frac=pw["idle_frac"], p_mem=pw["p_mem"], p_comp=pw["p_comp"],
               gamma_c=dv["gamma_c"], gamma_m=dv["gamma_m"], measured=gpu in state["gpu"], expected_error=0.0)
    return replace(p, **over) if over else p


def _rm(state, row, **over):
    stack = STACK_OF.get(row.source, "splitwise")
    g = gpu_spec(row.gpu)
    return build_replica(model_spec(row.model), g, int(row.tp), int(row.pp), g.max_clock_mhz,
                         _params(state, row.gpu, stack, **over))


def _decode_obs(row) -> tuple[float, float] | None:
    """(observed decode-step-like time, weight) for rows that constrain the decode step."""
    if row.source == "ml-energy-v3":
        return row.itl, 1.0
    if row.source == "ml-energy-v2":
        return row.B / row.throughput * 1e3, 1.0   # B / throughput: its TPOT misses stalls (see docs)
    if row.source == "splitwise" and not math.isnan(row.token_time):
        return row.token_time, 1.0
    return None


def _decode_pred_parts(state, row):
    """Decode prediction = step·1 + seq·B + ar_us·A + x_bw·M + K (K: everything else, known)."""
    big = 1e12
    zero = dict(step_ms=0.0, seq_ms=0.0, ar_us=0.0)

    def t(**over):
        rm = _rm(state, row, **{**zero, **over})
        if row.source == "ml-energy-v2":
            return rm.tbt_ms(row.B, row.I, row.O)
        ctx = row.I + row.O / 2.0
        return rm.decode_step_ms(row.B, ctx)

    K = t(eta_bw=big)
    M = t(eta_bw=1.0) - K
    A = t(eta_bw=big, ar_us=1.0) - K
    return K, M, A


def _prefill_parts(state, row):
    """Splitwise prompt_time = t0 + max(x_bw·Mw, x_f·Cf + Kc) + ..., parts at unit efficiency."""
    big = 1e12
    zero = dict(step_ms=0.0, seq_ms=0.0)
    rm_f = _rm(state, row, eta_f=1.0, **zero)
    rm_0 = _rm(state, row, eta_f=big, **zero)
    comp1 = row.B * (rm_f.pf_lat1 * row.I + rm_f.pf_lat2 * row.I ** 2)
    comp0 = row.B * (rm_0.pf_lat1 * row.I + rm_0.pf_lat2 * row.I ** 2)
    return comp1 - comp0, comp0, rm_f.pf_mem


def _lstsq(X, y, w):
    coef, *_ = np.linalg.lstsq(X * w[:, None], y * w, rcond=None)
    return coef


def fit(points: pd.DataFrame, perseus: pd.DataFrame | None = None, state: dict | None = None) -> dict:
    """Fit every timing and power parameter on ``points`` (and the DVFS ones on ``perseus``)."""
    state = json.loads(json.dumps(state or initial_state()))
    measured = sorted(set(points.gpu))
    for g in measured:
        state["gpu"].setdefault(g, dict(state["default_gpu"]))
    dec = [(r, o) for r in points.itertuples(index=False) if (o := _decode_obs(r)) is not None]
    pre = [r for r in points.itertuples(index=False) if r.source == "splitwise" and not math.isnan(r.prompt_time)]
    stacks = sorted({STACK_OF[r.source] for r, _ in dec})
    for _ in range(ITERATIONS):
        # --- decode: linear in (step, seq, ar per stack; 1/eta_bw per GPU)
        cols = [("step", s) for s in stacks] + [("seq", s) for s in stacks] + [("ar", s) for s in stacks] + \
               [("xbw", g) for g in measured]
        idx = {c: i for i, c in enumerate(cols)}
        X = np.zeros((len(dec), len(cols)))
        y = np.zeros(len(dec))
        w = np.zeros(len(dec))
        for k, (r, (obs, wt)) in enumerate(dec):
            K, M, A = _decode_pred_parts(state, r)
            s = STACK_OF[r.source]
            X[k, idx[("step", s)]] = 1.0
            X[k, idx[("seq", s)]] = r.B
            X[k, idx[("ar", s)]] = A
            X[k, idx[("xbw", r.gpu)]] = M
            y[k] = obs - K
            w[k] = wt / obs
        # bounds: overheads >= 0 (dropped if negative), eta_bw <= ETA_BW_MAX (fixed there if above)
        active = np.ones(len(cols), bool)
        fixed = np.zeros(len(cols))
        for _guard in range(len(cols)):
            coef = fixed.copy()
            coef[active] = _lstsq(X[:, active], y - X[:, ~active] @ fixed[~active], w)
            neg = [i for i in range(len(cols)) if active[i] and coef[i] < 0 and cols[i][0] in ("seq", "ar", "step")]
            fast = [i for i in range(len(cols)) if active[i] and cols[i][0] == "xbw" and coef[i] < 1 / ETA_BW_MAX]
            if not neg and not fast:
                break
            for i in fast:
                fixed[i] = 1 / ETA_BW_MAX
            active[neg + fast] = False
        for s in stacks:
            state["software"][s] = dict(step_ms=float(coef[idx[("step", s)]]), seq_ms=float(coef[idx[("seq", s)]]),
                                        ar_us=float(coef[idx[("ar", s)]]))
        for g in measured:
            xb = coef[idx[("xbw", g)]]
            state["gpu"][g]["eta_bw"] = float(min(1.0, 1.0 / xb)) if xb > 0 else 1.0
        # --- prefill (Splitwise prompt_time): linear in (t0, 1/eta_f per GPU) on compute-bound rows
        pg = sorted({r.gpu for r in pre})
        if pre:
            cols = ["t0"] + pg
            Xp, yp, wp = [], [], []
            for r in pre:
                Cf, K0, Mw = _prefill_parts(state, r)
                xf = 1.0 / _eff(state, r.gpu)["eta_f"]
                row = np.zeros(len(cols))
                row[0] = 1.0
                if xf * Cf + K0 >= Mw:
                    row[1 + pg.index(r.gpu)] = Cf
                    yp.append(r.prompt_time - K0)
                else:
                    yp.append(r.prompt_time - Mw)
                Xp.append(row)
                wp.append(1.0 / r.prompt_time)
            coef = _lstsq(np.array(Xp), np.array(yp), np.array(wp))
            state["splitwise_prefill_ms"] = float(max(coef[0], 0.0))
            for i, g in enumerate(pg):
                state["gpu"][g]["eta_f"] = float(min(1.0, 1.0 / coef[1 + i]))
        # GPUs without prefill data: same chip family if fitted, else the mean of fitted ones
        fitted_f = {g: state["gpu"][g]["eta_f"] for g in pg}
        dflt_f = float(np.mean(list(fitted_f.values()))) if fitted_f else state["default_gpu"]["eta_f"]
        for g in measured:
            if g in fitted_f:
                continue
            fam = [v for h, v in fitted_f.items() if gpu_spec(h).family == gpu_spec(g).family]
            state["gpu"][g]["eta_f"] = float(fam[0]) if fam else dflt_f
        state["default_gpu"] = dict(eta_bw=float(np.mean([state["gpu"][g]["eta_bw"] for g in measured])),
                                    eta_f=dflt_f)
    if perseus is not None and len(perseus):
        state["dvfs"].update(fit_dvfs(perseus, state))
    state["power"] = fit_power(points, state)
    if perseus is not None and len(perseus):
        state["dvfs"].update(fit_dvfs(perseus, state))
    return state


IDLE_FRAC = 0.15
"""Idle power of a GPU holding a loaded model, share of TDP (assumption: no idle periods in the data)."""


def fit_power(points: pd.DataFrame, state: dict) -> dict:
    """Per-GPU power / TDP = idle·s_overhead + p_mem·s_memory + p_comp·s_compute, time shares from the
    fitted timing model; least squares in relative error on ML.ENERGY v3 (the planning stack; v2 power
    is kept as a cross-stack check)."""
    X, y = [], []
    for r in points.itertuples(index=False):
        if r.source != "ml-energy-v3":
            continue
        o, m, c = _rm(state, r).busy_power_parts(r.B, r.I, r.O)
        tot = o + m + c
        tdp = gpu_spec(r.gpu).tdp_w * r.tp * r.pp
        X.append([m / tot, c / tot])
        y.append(r.power / tdp - IDLE_FRAC * o / tot)
    if not X:
        return dict(state["power"])
    X, y = np.array(X), np.array(y)
    pm, pc = (float(v) for v in _lstsq(X, y, 1.0 / np.maximum(y, 1e-3)))
    pm = min(max(pm, IDLE_FRAC), 1.0)
    return dict(idle_frac=IDLE_FRAC, p_mem=pm, p_comp=float(min(max(pc, pm), 1.0)))


def fit_dvfs(perseus: pd.DataFrame, state: dict) -> dict:
    """phi: share of forward-pass time that scales with 1/clock; gamma_c: clock exponent of dynamic
    power, with idle power = idle_frac / p_comp of the max-clock power."""
    d = perseus[perseus.r < 0.999]
    x = 1.0 / d.r.to_numpy() - 1.0
    phi = float(x @ (d.t_rel.to_numpy() - 1.0) / (x @ x))
    pw = state["power"]
    i0 = pw["idle_frac"] / pw["p_comp"]
    yy = (d.p_rel.to_numpy() - i0) / (1.0 - i0)
    keep = yy > 0
    lx = np.log(d.r.to_numpy()[keep])
    gamma = float(lx @ np.log(yy[keep]) / (lx @ lx))
    return dict(phi=min(phi, 1.0), gamma_c=gamma)


# ---------------------------------------------------------------------------------------------
# predictions and errors


def predict(state: dict, points: pd.DataFrame) -> pd.DataFrame:
    """Predicted value of every measured quantity: long table (source, model, gpu, metric, measured, predicted)."""
    out = []
    for r in points.itertuples(index=False):
        rm = _rm(state, r)
        base = dict(source=r.source, model=r.model, gpu=r.gpu, tp=r.tp, B=r.B)
        if r.source in ("ml-energy-v3", "ml-energy-v2"):
            tbt = rm.tbt_ms(r.B, r.I, r.O)
            tput = r.B / tbt * 1e3
            pw = rm.power_w(1.0, rm.busy_power_parts(r.B, r.I, r.O))
            first = ("itl", r.itl, rm.decode_step_ms(r.B, r.I + r.O / 2)) if r.source == "ml-energy-v3" \
                else ("tpot", r.tpot, tbt)
            for metric, meas, pred in (first, ("throughput", r.throughput, tput), ("power", r.power, pw)):
                out.append(dict(base, metric=metric, measured=meas, predicted=pred))
        elif r.source == "splitwise":
            out.append(dict(base, metric="token_time", measured=r.token_time,
                            predicted=rm.decode_step_ms(r.B, r.I + r.O / 2)))
            if not math.isnan(r.prompt_time):
                comp = r.B * (rm.pf_lat1 * r.I + rm.pf_lat2 * r.I ** 2)
                out.append(dict(base, metric="prompt_time", measured=r.prompt_time,
                                predicted=state["splitwise_prefill_ms"] + max(rm.pf_mem, comp)))
    return pd.DataFrame(out)


def summarize(errs: pd.DataFrame) -> pd.DataFrame:
    """Per (source, metric): n, median and p90 absolute relative error, bias (median signed error)."""
    e = errs.assign(rel=(errs.predicted - errs.measured) / errs.measured)
    rows = []
    for (s, m), g in e.groupby(["source", "metric"], sort=False):
        a = g.rel.abs().to_numpy()
        rows.append(dict(source=s, metric=m, split=g.split.iloc[0], n=len(g),
                         median_ape=round(float(np.median(a)), 3), p90_ape=round(float(np.quantile(a, 0.9)), 3),
                         bias=round(float(np.median(g.rel)), 3)))
    return pd.DataFrame(rows)


def leave_one_model_out(points: pd.DataFrame, perseus: pd.DataFrame) -> pd.DataFrame:
    out = []
    for m in sorted(points.model.unique()):
        st = fit(points[points.model != m], perseus)
        out.append(predict(st, points[points.model == m]))
    return pd.concat(out, ignore_index=True).assign(split="leave-one-model-out")


def leave_one_gpu_out(points: pd.DataFrame, perseus: pd.DataFrame) -> pd.DataFrame:
    """Throughput (ML.ENERGY) and decode step time (Splitwise) of each measured GPU predicted with the
    default efficiencies fitted on the other GPUs, as for a GPU without measurements."""
    out = []
    for g in sorted(points.gpu.unique()):
        train = points[points.gpu != g]
        st = fit(train, perseus)
        test = points[(points.gpu == g) & points.source.isin(["ml-energy-v2", "ml-energy-v3", "splitwise"])]
        # the stack overheads must be known: skip stacks that only ran on this GPU
        test = test[test.source.map(STACK_OF).isin({STACK_OF[s] for s in train.source.unique() if s in STACK_OF})]
        p = predict(st, test)
        if len(p):
            out.append(p[p.metric.isin(["throughput", "token_time"])].assign(source="leave-one-gpu-out"))
    return pd.concat(out, ignore_index=True).assign(split="leave-one-gpu-out")


def splitwise_transfer(points: pd.DataFrame, perseus: pd.DataFrame) -> pd.DataFrame:
    """Stack transfer: a GPU measured on both ML.ENERGY and Splitwise (H100) is refitted with only its
    Splitwise rows, as A100-80GB is calibrated, and its ML.ENERGY (vLLM) throughput predicted."""
    mle = points.source.isin(["ml-energy-v2", "ml-energy-v3"])
    out = []
    for g in sorted(set(points[mle].gpu) & set(points[points.source == "splitwise"].gpu)):
        st = fit(points[~(mle & (points.gpu == g))], perseus)
        p = predict(st, points[mle & (points.gpu == g)])
        out.append(p[p.metric == "throughput"].assign(source="splitwise-transfer"))
    return pd.concat(out, ignore_index=True).assign(split="fit on Splitwise rows only")


def dvfs_errors(perseus: pd.DataFrame, state: dict) -> pd.DataFrame:
    """Leave-one-file-out (model × GPU) prediction of forward time and power below max clock."""
    out = []
    for f in sorted(perseus.file.unique()):
        dv = fit_dvfs(perseus[perseus.file != f], state)
        d = perseus[(perseus.file == f) & (perseus.r < 0.999)]
        pw = state["power"]
        i0 = pw["idle_frac"] / pw["p_comp"]
        t = dv["phi"] / d.r + 1 - dv["phi"]
        p = i0 + (1 - i0) * d.r ** dv["gamma_c"]
        for metric, meas, pred in (("time", d.t_rel, t), ("power", d.p_rel, p)):
            out.append(pd.DataFrame(dict(source="perseus-dvfs", model=f, gpu=f.split("+")[1], metric=metric,
                                         measured=meas.to_numpy(), predicted=pred.to_numpy())))
    return pd.concat(out, ignore_index=True).assign(split="leave-one-file-out")


def pcap_errors(points: pd.DataFrame, state: dict) -> pd.DataFrame:
    """Splitwise power-capped H100 prefill: the clock at which compute-bound power meets the cap,
    hence the prompt-time ratio, against the measured capped/uncapped ratio."""
    pw, dv = state["power"], state["dvfs"]
    # compute-bound power at clock r: idle + (p_comp − idle)·r^gamma (share of TDP)
    if pw["p_comp"] <= PCAP_FRACTION:
        r = 1.0
    else:
        r = ((PCAP_FRACTION - pw["idle_frac"]) / (pw["p_comp"] - pw["idle_frac"])) ** (1.0 / dv["gamma_c"])
    ratio = dv["phi"] / r + 1 - dv["phi"]
    key = ["model", "tp", "B", "I", "O"]
    cap = points[points.source == "splitwise-pcap"][key + ["prompt_time"]]
    ref = points[(points.source == "splitwise") & (points.gpu == "H100-80GB")][key + ["prompt_time"]]
    j = cap.merge(ref, on=key, suffixes=("", "_ref")).dropna()
    meas = (j.prompt_time / j.prompt_time_ref).to_numpy()
    return pd.DataFrame(dict(source="splitwise-pcap", model=j.model.to_numpy(), gpu="H100-80GB",
                             metric="prompt_time_ratio", measured=meas, predicted=ratio,
                             split="prediction (no fit)"))


def trt_ratios(state: dict, trt: pd.DataFrame) -> pd.DataFrame:
    """Our BF16 vLLM offline throughput / TensorRT-LLM's (FP8/FP4) max throughput, same TP/PP."""
    out = []
    for r in trt.itertuples(index=False):
        g = gpu_spec(r.gpu)
        rm = build_replica(model_spec(r.model), g, int(r.tp), int(r.pp), g.max_clock_mhz,
                           _params(state, r.gpu, "vllm-v3"))
        ours = rm.offline_throughput(r.isl, r.osl)
        if ours <= 0:
            continue
        out.append(dict(model=r.model, gpu=r.gpu, tp=r.tp, pp=r.pp, precision=r.precision, isl=r.isl, osl=r.osl,
                        trt=r.output_tokens_per_s, ours=ours, ratio=ours / r.output_tokens_per_s))
    return pd.DataFrame(out)


# ---------------------------------------------------------------------------------------------
# the whole calibration


def _round(x, nd=4):
    if isinstance(x, dict):
        return {k: _round(v, nd) for k, v in x.items()}
    if isinstance(x, float):
        return float(f"{x:.{nd}g}")
    return x


def calibrate(shared: Path) -> tuple[dict, pd.DataFrame]:
    """Fit on everything, compute every held-out error; returns (calibration json, error table)."""
    points = load_points(shared)
    perseus = load_perseus(shared)
    core = points[points.source != "splitwise-pcap"]
    state = fit(core, perseus)
    lomo = leave_one_model_out(core, perseus)
    logo = leave_one_gpu_out(core, perseus)
    dvfs = dvfs_errors(perseus, state)
    pcap = pcap_errors(points, state)
    transfer = splitwise_transfer(core, perseus)
    table = summarize(pd.concat([lomo, logo, transfer, dvfs, pcap], ignore_index=True))
    trt = trt_ratios(state, load_trt(shared))

    def med(src, metric):
        row = table[(table.source == src) & (table.metric == metric)]
        return float(row.median_ape.iloc[0])

    # Expected error = median relative error of max_rps. GPUs with ML.ENERGY (vLLM) measurements:
    # the held-out throughput error; GPUs measured on Splitwise only (A100-80GB): that combined, as
    # independent errors, with their own held-out Splitwise token/prompt-time error (the error of
    # their efficiencies); estimated GPUs: the throughput error combined with the leave-one-GPU-out
    # error of the efficiencies; below max clock: plus the DVFS time error.
    measured_err = max(med("ml-energy-v3", "throughput"), med("ml-energy-v2", "throughput"))
    logo_err = max(med("leave-one-gpu-out", "throughput"), med("leave-one-gpu-out", "token_time"))
    state["expected_error"] = dict(measured=round(measured_err, 3), estimated=round(math.hypot(measured_err, logo_err), 3),
                                   dvfs=round(med("perseus-dvfs", "time"), 3))
    lomo_rel = lomo.assign(rel=((lomo.predicted - lomo.measured) / lomo.measured).abs())
    for g, e in state["gpu"].items():
        srcs = sorted(set(core[core.gpu == g].source))
        e["sources"] = srcs
        if any(s.startswith("ml-energy") for s in srcs):
            e["expected_error"] = state["expected_error"]["measured"]
        else:
            sw = lomo_rel[(lomo_rel.gpu == g) & (lomo_rel.source == "splitwise")]
            own = max(float(np.median(grp.rel)) for _, grp in sw.groupby("metric"))
            e["expected_error"] = round(math.hypot(measured_err, own), 3)
    trt_row = dict(source="tensorrt-llm", metric="vllm_over_trt_throughput", split="ratio (bound check)",
                   n=len(trt), median_ape=round(float(trt.ratio.median()), 3),
                   p90_ape=round(float(trt.ratio.quantile(0.9)), 3), bias=round(float(trt.ratio.max()), 3))
    table = pd.concat([table, pd.DataFrame([trt_row])], ignore_index=True)
    cal = dict(
        version=1,
        generated_by="tools/calibrate_perf.py",
        planning_stack="vllm-v3",
        gpu={g: _round(v) for g, v in sorted(state["gpu"].items())},
        default_gpu=_round(state["default_gpu"]),
        software={s: _round(v) for s, v in sorted(state["software"].items())},
        splitwise_prefill_ms=_round(state["splitwise_prefill_ms"]),
        power=_round(state["power"]),
        dvfs=_round(state["dvfs"]),
        expected_error=state["expected_error"],
        assumptions=dict(input_tokens={f"{a}/{b}": v for (a, b), v in INPUT_TOKENS.items()},
                         splitwise_pcap_fraction_of_tdp=PCAP_FRACTION),
        points={s: int((points.source == s).sum()) for s in sorted(points.source.unique())},
    )
    return cal, table


def dump_calibration(cal: dict) -> str:
    """The calibration file's exact text (sorted keys, 2-space indent, trailing newline)."""
    return json.dumps(cal, indent=2, sort_keys=True) + "\n"

"""Turn benchmark results into profile rows (the scenario's ``profiles`` table).

Three kinds of input are understood (``docs/profiles.md`` describes each in full):

* **vLLM** ``benchmarks/benchmark_serving.py --save-result`` JSON files: several open-loop runs of one
  deployment at different request rates (:func:`import_vllm`);
* **ML.ENERGY leaderboard** JSON: v2 per-configuration files and v3 per-model files, closed-loop
  runs at several batch sizes (:func:`import_mlenergy`);
* **CSV**: a documented table of measured runs (:func:`import_runs_csv`), or an already-final
  profile table (:func:`read_profile_table`).

Each importer returns a :class:`pandas.DataFrame` with exactly the loader's profile columns
(:data:`planner.scenario.loading.PROFILE_COLUMNS`); warnings for the user are in ``df.attrs["warnings"]``.
:func:`merge_profiles` adds rows to an existing table and :func:`profiles_to_csv` renders one.

**The operating point.** Runs are ordered by load (offered request rate, or batch size). A run
*meets* the SLO when every targeted statistic is at or below its target (and, for vLLM, no request
failed). The chosen run is the last of the leading runs that all meet the SLO: a passing run above
a failing one is ignored (with a warning), so noise never lifts ``max_rps``. With ``interpolate``,
the point moves from that run ``A`` towards the first failing run ``B`` by the fraction
``f = min((target - a) / (b - a))`` over the statistics ``B`` violates, and every quantity is
linearly interpolated with the same ``f``; as latency rises convexly with load, the chord crosses the
target no later than the true curve, so the interpolated rate is conservative.

Errors are :class:`~planner.errors.InputError` with one :class:`~planner.errors.Problem` per fault,
each naming the file and field (or line).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from planner.errors import InputError, Problem
from planner.io import read_csv_strings, read_text_input
from planner.scenario.loading import PROFILE_COLUMNS, PROFILE_KEY
from planner.scenario.schema import STATISTICS

COLUMNS = list(PROFILE_COLUMNS)
OPTIONAL_PROFILE_COLUMNS = ["source"] + [c for c, k in PROFILE_COLUMNS.items() if k.endswith("?")]
"""Profile columns a final table may omit (``source``, ``active_power_w``, ``expected_error``)."""
FORMATS = ("vllm", "mlenergy", "runs-csv", "profile")
RUN_COLUMNS = ["model", "gpu", "tp", "pp", "freq_mhz", "shape", "request_rate_rps", "throughput_rps",
               "ttft_ms", "tbt_ms", "power_w"]
RUN_OPTIONAL = ["idle_power_w", "e2e_ms"]
MIX_TOLERANCE = 1.25
"""Runs whose mean input or output length differ by more than this factor are different workloads."""


# --------------------------------------------------------------------------------------------
# inputs


@dataclass(frozen=True)
class Deployment:
    """Identity of the profiled deployment. ``None`` fields come from the data (or are an error).

    For ML.ENERGY, ``gpu`` and ``tp`` first *select* configurations; see :func:`import_mlenergy`.
    """

    model: str | None = None
    gpu: str | None = None
    tp: int | None = None
    pp: int | None = None
    freq_mhz: float | None = None
    shape: str | None = None


@dataclass(frozen=True)
class SLO:
    """Latency targets (ms) the operating point must meet, and which statistic must meet them.

    ``statistic`` is one of :data:`STATISTICS`; ``None`` means the format's default (vLLM p99,
    ML.ENERGY v2 mean, ML.ENERGY v3 p99). The CSV formats carry one value per run and ignore it.
    """

    ttft_ms: float | None = None
    tbt_ms: float | None = None
    e2e_ms: float | None = None
    statistic: str | None = None

    def targets(self) -> dict[str, float]:
        return {k: v for k, v in (("ttft", self.ttft_ms), ("tbt", self.tbt_ms), ("e2e", self.e2e_ms)) if v is not None}


@dataclass(frozen=True)
class Run:
    """One measured run, normalised. ``load`` orders runs (offered req/s, or batch size)."""

    where: str
    load: float
    load_label: str
    throughput_rps: float
    ttft_ms: float | None = None
    tbt_ms: float | None = None
    e2e_ms: float | None = None
    busy_power_w: float | None = None
    idle_power_w: float | None = None
    failure: str | None = None
    """Why the run cannot count as meeting the SLO whatever its latencies (e.g. failed requests)."""


@dataclass(frozen=True)
class OperatingPoint:
    """The chosen point: a run, or an interpolation between two runs (``interpolated`` > 0)."""

    load: float
    load_label: str
    throughput_rps: float
    ttft_ms: float | None
    tbt_ms: float | None
    e2e_ms: float | None
    busy_power_w: float | None
    idle_power_w: float | None
    run: Run
    """The last run meeting the SLO."""
    next_run: Run | None = None
    """The first run failing it (the upper end of an interpolation), if any."""
    interpolated: float = 0.0
    """The fraction of the way from ``run`` to ``next_run`` (0: the run itself)."""
    input_tokens: float | None = None
    """Mean prompt tokens per request of the runs, where the format records them (vLLM)."""
    output_tokens: float | None = None
    """Mean output tokens per request of the runs, where the format records them (vLLM, ML.ENERGY)."""


PowerFn = Callable[[Deployment, OperatingPoint], "tuple[float | None, ...]"]
"""``power_fn(deployment, point) -> (busy_power_w, idle_power_w[, active_power_w])``, any may be None
(unknown); without the third value the row's ``active_power_w`` stays empty."""
TtftFn = Callable[[Deployment, OperatingPoint], "float | None"]
"""``ttft_fn(deployment, point) -> ttft_ms`` for formats that do not measure TTFT."""


# --------------------------------------------------------------------------------------------
# small helpers


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _fmt(x: float, digits: int = 4) -> str:
    return f"{x:.{digits}g}"


class _Fields:
    """Typed access to a JSON object's fields, collecting problems as '<file>: field <name>'."""

    def __init__(self, doc: dict, where: str, problems: list[Problem]):
        self.doc, self.where, self.problems = doc, where, problems

    def _p(self, name: str, msg: str) -> None:
        self.problems.append(Problem(f"{self.where}: field '{name}'", msg))

    def number(self, name: str, *, positive: bool = False, nonneg: bool = True, hint: str = "",
               optional: bool = False) -> float | None:
        if name not in self.doc or self.doc[name] is None:
            if not optional:
                self._p(name, "missing" + (f" ({hint})" if hint else ""))
            return None
        v = self.doc[name]
        if not _num(v):
            what = "not a finite number" if isinstance(v, (int, float)) and not isinstance(v, bool) else \
                f"wrong type: expected a number, got {type(v).__name__} {v!r}"
            self._p(name, what)
            return None
        if positive and v <= 0:
            self._p(name, f"must be positive, got {v}")
            return None
        if nonneg and v < 0:
            self._p(name, f"must not be negative, got {v}")
            return None
        return float(v)

    def string(self, name: str, optional: bool = False) -> str | None:
        if name not in self.doc or self.doc[name] is None:
            if not optional:
                self._p(name, "missing")
            return None
        v = self.doc[name]
        if not isinstance(v, str) or not v.strip():
            self._p(name, f"wrong type: expected a non-empty string, got {type(v).__name__} {v!r}")
            return None
        return v.strip()


def _read_json(path: Path, problems: list[Problem]) -> Any:
    where = str(path)
    try:
        text = read_text_input(path, "result file")
    except InputError as e:
        problems.extend(e.problems)
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        problems.append(Problem(f"{where}: line {e.lineno}", f"malformed JSON: {e.msg}"))
    except RecursionError:
        problems.append(Problem(where, "the JSON is nested too deeply"))
    return None


def expand_paths(paths: Iterable[str | Path]) -> list[Path]:
    """Files as given; a folder stands for every ``*.json`` and ``*.csv`` below it (sorted),
    vLLM's ``*.pytorch.json`` side files and the ML.ENERGY v2 tree's ``models.json`` index excepted."""
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in (".json", ".csv")
                           and not q.name.endswith(".pytorch.json") and q.name != "models.json")
            if not found:
                raise InputError([Problem(str(p), "folder holds no .json or .csv file")])
            out.extend(found)
        else:
            out.append(p)
    if not out:
        raise InputError("no input file given")
    return out


def _dep_label(d: dict) -> str:
    return (f"({d['model']}, {d['gpu']}, tp{d['tp']}, pp{d['pp']}, {_fmt(float(d['freq_mhz']), 6)} MHz, "
            f"{d['shape']})")


# --------------------------------------------------------------------------------------------
# format detection


def _json_kind(doc: Any) -> str | None:
    if isinstance(doc, dict):
        if isinstance(doc.get("configurations"), list):
            return "mlenergy-v3"
        if "Energy/req (J)" in doc or ("Avg TPOT (s)" in doc and "GPU" in doc):
            return "mlenergy-v2"
        if any(k in doc for k in ("request_throughput", "completed", "mean_ttft_ms", "request_rate")):
            return "vllm"
    return None


def _csv_header(path: Path) -> list[str] | None:
    try:
        first = read_text_input(path, "CSV file").splitlines()[:1]
    except InputError:
        return None
    return [c.strip() for c in first[0].split(",")] if first else None


def detect_format(paths: Sequence[Path]) -> str:
    """The one format of all ``paths``: 'vllm', 'mlenergy', 'runs-csv' or 'profile'."""
    kinds: dict[str, list[str]] = {}
    problems: list[Problem] = []
    for p in paths:
        where = str(p)
        if not p.exists():
            problems.append(Problem(where, "file not found"))
            continue
        if p.suffix.lower() == ".csv":
            head = _csv_header(p) or []
            kind = "profile" if "max_rps" in head else "runs-csv" if "request_rate_rps" in head else None
            if kind is None:
                problems.append(Problem(where, "unrecognised CSV: expected a profile table (with max_rps) or a table "
                                               "of runs (with request_rate_rps); see docs/profiles.md"))
                continue
        else:
            doc = _read_json(p, problems)
            if doc is None:
                continue
            k = _json_kind(doc)
            if k is None:
                extra = " (a list: vLLM's .pytorch.json side file? give the main result file)" \
                    if isinstance(doc, list) else ""
                problems.append(Problem(where, "unrecognised JSON: not a vLLM benchmark_serving result nor an "
                                               "ML.ENERGY v2/v3 file" + extra))
                continue
            kind = "mlenergy" if k.startswith("mlenergy") else k
        kinds.setdefault(kind, []).append(where)
    if problems:
        raise InputError(problems, "cannot read profile input")
    if len(kinds) > 1:
        raise InputError([Problem(v[0], f"is {k}") for k, v in kinds.items()],
                         "input files mix formats (import each format separately)")
    return next(iter(kinds))


# --------------------------------------------------------------------------------------------
# the operating point


def _violations(run: Run, targets: dict[str, float]) -> list[str]:
    out = []
    for m, t in targets.items():
        v = getattr(run, f"{m}_ms")
        if v is not None and v > t:
            out.append(m)
    return out


def _describe(run: Run, targets: dict[str, float], names: dict[str, str]) -> str:
    parts = []
    for m, t in targets.items():
        v = getattr(run, f"{m}_ms")
        mark = " > " if v > t else " <= "
        parts.append(f"{names[m]} {_fmt(v)} ms{mark}target {_fmt(t)}")
    if run.failure:
        parts.append(run.failure)
    return ", ".join(parts)


def select_point(runs: Sequence[Run], targets: dict[str, float], names: dict[str, str], *,
                 interpolate: bool = False, what: str = "") -> tuple[OperatingPoint | None, list[str], str | None]:
    """The operating point of one deployment's runs (see the module docstring).

    Returns (point, warnings, reason): point is None when no run meets the SLO, and reason then
    says why (the lowest load tried, its statistics against the targets).
    """
    runs = sorted(runs, key=lambda r: (r.load, r.throughput_rps))
    warnings: list[str] = []
    ok = [not _violations(r, targets) and r.failure is None for r in runs]
    if not ok[0]:
        r = runs[0]
        return None, warnings, (f"{what}no run meets the SLO: the lowest load tried, {r.load_label} ({r.where}), has "
                                f"{_describe(r, targets, names)}")
    k = ok.index(False) if False in ok else len(runs)
    a = runs[k - 1]
    later = [r for r, g in zip(runs[k:], ok[k:]) if g]
    if later:
        warnings.append(f"{what}{later[-1].load_label} ({later[-1].where}) meets the SLO but {runs[k].load_label} "
                        f"below it does not; using {a.load_label} (noisy measurements?)")
    point = OperatingPoint(a.load, a.load_label, a.throughput_rps, a.ttft_ms, a.tbt_ms, a.e2e_ms, a.busy_power_w,
                           a.idle_power_w, run=a)
    if k == len(runs):
        warnings.append(f"{what}every run meets the SLO; max_rps is a lower bound (the highest load tried is "
                        f"{a.load_label}): measure higher loads to find the limit")
        return point, warnings, None
    b = runs[k]
    point = replace(point, next_run=b)
    if not interpolate or not math.isfinite(b.load) or b.failure is not None:
        return point, warnings, None
    fr = [(t - getattr(a, f"{m}_ms")) / (getattr(b, f"{m}_ms") - getattr(a, f"{m}_ms"))
          for m, t in targets.items() if m in _violations(b, targets)]
    f = min(fr) if fr else 0.0

    def lerp(x, y):
        return None if x is None or y is None else x + f * (y - x)

    vals = {m: lerp(getattr(a, f"{m}_ms"), getattr(b, f"{m}_ms")) for m in ("ttft", "tbt", "e2e")}
    for m, t in targets.items():  # the binding statistic sits exactly on its target
        if vals[m] is not None:
            vals[m] = min(vals[m], t)
    load = a.load + f * (b.load - a.load)
    label = re.sub(r"[0-9.]+(?:e[+-]?\d+)?", _fmt(load), a.load_label, count=1)
    point = OperatingPoint(load, f"{label} (interpolated)", lerp(a.throughput_rps, b.throughput_rps),
                           vals["ttft"], vals["tbt"], vals["e2e"], lerp(a.busy_power_w, b.busy_power_w),
                           lerp(a.idle_power_w, b.idle_power_w), run=a, next_run=b, interpolated=f)
    return point, warnings, None


# --------------------------------------------------------------------------------------------
# building rows


def _finish_row(dep: Deployment, point: OperatingPoint, source: str, problems: list[Problem], where: str, *,
                busy: float | None, idle: float | None, ttft: float | None,
                power_fn: PowerFn | None = None, ttft_fn: TtftFn | None = None,
                power_hint: str = "", idle_hint: str = "", ttft_hint: str = "",
                statistic: str = "mean") -> dict | None:
    """Fill power and TTFT (given values first, then the hooks) and check the row.

    Active power (``active_power_w``) is never measured by these formats: it comes only from the
    hook's third value, kept within [idle, busy] (a model estimate next to measured busy or idle
    power may fall outside), and stays empty without one."""
    notes = []
    active = None
    if power_fn is not None:
        got = tuple(power_fn(dep, point))
        fb, fi = got[0], got[1]
        fa = got[2] if len(got) > 2 else None
        if busy is None and fb is not None:
            busy = float(fb)
            notes.append("busy power from the performance model")
        if idle is None and fi is not None:
            idle = float(fi)
            notes.append("idle power from the performance model")
        if fa is not None and busy is not None and idle is not None and busy >= idle:
            active = min(max(float(fa), idle), busy)
            clamp = " (capped at busy power)" if fa > busy else " (raised to idle power)" if fa < idle else ""
            notes.append("active power from the performance model" + clamp)
    if ttft is None and ttft_fn is not None:
        t = ttft_fn(dep, point)
        if t is not None:
            ttft = float(t)
            notes.append("ttft_ms from the performance model")
    bad = False
    pre = f"{where}: " if where else ""
    if busy is None:
        problems.append(Problem(f"{pre}--busy-power-w", f"required: {power_hint}"))
        bad = True
    if idle is None:
        problems.append(Problem(f"{pre}--idle-power-w", f"required: {idle_hint}"))
        bad = True
    if ttft is None:
        problems.append(Problem(f"{pre}--ttft-ms-estimate", f"required: {ttft_hint}"))
        bad = True
    if bad:
        return None
    if busy < idle:
        problems.append(Problem(where, f"busy power {_fmt(busy)} W is below idle power {_fmt(idle)} W"))
        return None
    for name, v in (("max_rps", point.throughput_rps), ("ttft_ms", ttft), ("tbt_ms", point.tbt_ms)):
        if v is None or not (v > 0) or not math.isfinite(v):
            problems.append(Problem(where, f"{name} would be {v}: must be positive"))
            return None
    if notes:
        source = f"{source}; " + "; ".join(notes)
    return {"model": dep.model, "gpu": dep.gpu, "tp": int(dep.tp), "pp": int(dep.pp), "freq_mhz": float(dep.freq_mhz),
                "shape": dep.shape, "max_rps": point.throughput_rps, "ttft_ms": ttft, "tbt_ms": point.tbt_ms,
                "busy_power_w": busy, "idle_power_w": idle, "active_power_w": np.nan if active is None else active,
                "source": source, "expected_error": np.nan, "statistic": statistic}


def _frame(rows: list[dict], warnings: list[str]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=COLUMNS)
    df = df.astype({"tp": "int64", "pp": "int64", "freq_mhz": float, "max_rps": float, "ttft_ms": float,
                    "tbt_ms": float, "busy_power_w": float, "idle_power_w": float, "active_power_w": float,
                    "expected_error": float})
    df.attrs["warnings"] = list(warnings)
    return df


def _check_slo(slo: SLO, need: Sequence[str], fmt: str) -> dict[str, float]:
    problems = []
    for m in need:
        if getattr(slo, f"{m}_ms") is None:
            problems.append(Problem(f"--{m}-ms", f"required for {fmt} input (the latency target the operating "
                                                 "point must meet, ms)"))
    for m, v in slo.targets().items():
        if not (v > 0) or not math.isfinite(v):
            problems.append(Problem(f"--{m}-ms", f"must be a positive number of ms, got {v}"))
    if slo.statistic is not None and slo.statistic not in STATISTICS:
        problems.append(Problem("--percentile", f"unknown statistic {slo.statistic!r} (use {'|'.join(STATISTICS)})"))
    if problems:
        raise InputError(problems, "invalid SLO")
    return slo.targets()


def _require(dep: Deployment, fields: Sequence[str], fmt: str, hints: dict[str, str] | None = None) -> None:
    problems = []
    for f in fields:
        if getattr(dep, f) is None:
            h = (hints or {}).get(f, "")
            problems.append(Problem(f"--{f.replace('_', '-')}", f"required for {fmt} input" + (f" ({h})" if h else "")))
    for f in ("tp", "pp"):
        v = getattr(dep, f)
        if v is not None and (int(v) != v or v < 1):
            problems.append(Problem(f"--{f}", f"must be a whole number >= 1, got {v}"))
    if dep.freq_mhz is not None and not (dep.freq_mhz > 0):
        problems.append(Problem("--freq-mhz", f"must be positive, got {dep.freq_mhz}"))
    if problems:
        raise InputError(problems, "missing deployment identity")


def _check_power_args(busy: float | None, idle: float | None) -> None:
    problems = []
    for name, v in (("--busy-power-w", busy), ("--idle-power-w", idle)):
        if v is not None and (not math.isfinite(v) or v < 0):
            problems.append(Problem(name, f"must be a non-negative number of W, got {v}"))
    if problems:
        raise InputError(problems)


# --------------------------------------------------------------------------------------------
# vLLM benchmark_serving.py results

_VLLM_NAMES = {"ttft": "TTFT", "tbt": "TPOT", "e2e": "E2EL"}
_VLLM_METRIC = {"ttft": "ttft", "tbt": "tpot", "e2e": "e2el"}
_VLLM_META = ("gpu", "tp", "pp", "freq_mhz", "shape")


def _vllm_stat_field(doc: dict, metric: str, stat: str) -> list[str]:
    """Candidate field names, in order, for one statistic of one metric."""
    if stat == "mean":
        return [f"mean_{metric}_ms"]
    if stat == "p50":
        return [f"median_{metric}_ms", f"p50_{metric}_ms"]
    return [f"{stat}_{metric}_ms"]


def import_vllm(paths: Sequence[str | Path], deployment: Deployment, slo: SLO, *,
                busy_power_w: float | None = None, idle_power_w: float | None = None,
                power_fn: PowerFn | None = None, interpolate: bool = False,
                allow_empty: bool = False) -> pd.DataFrame:
    """One profile row from vLLM ``benchmark_serving.py --save-result`` files of one deployment.

    Each file is one run at an offered ``request_rate`` (a number, or "inf"). The statistic
    ``slo.statistic`` (default p99) of TTFT, of TPOT (the TBT) and, when ``slo.e2e_ms`` is set, of
    E2EL must meet the targets; a run in which requests failed (``completed`` < ``num_prompts``)
    never meets the SLO. ``max_rps`` is the *measured* ``request_throughput`` (completed requests
    per second of benchmark duration) at the operating point, not the offered rate.

    Identity: ``deployment`` fields, else ``--metadata`` keys saved in the files (gpu, tp, pp,
    freq_mhz, shape), else (model only) ``model_id``; pp defaults to 1. vLLM measures no power:
    ``busy_power_w`` and ``idle_power_w`` (W per replica) or ``power_fn`` must supply it.
    """
    paths = expand_paths(paths)
    targets = _check_slo(slo, ("ttft", "tbt"), "vLLM")
    _check_power_args(busy_power_w, idle_power_w)
    stat = slo.statistic or "p99"
    problems: list[Problem] = []
    runs: list[Run] = []
    ident: dict[str, dict[str, str]] = {}  # field -> {value: file}
    lens: list[tuple[str, float, float]] = []
    for p in paths:
        where = str(p)
        doc = _read_json(p, problems)
        if doc is None:
            continue
        if _json_kind(doc) != "vllm":
            problems.append(Problem(where, "not a vLLM benchmark_serving result (expected fields request_rate, "
                                           "completed, request_throughput, mean_ttft_ms, ...)"))
            continue
        f = _Fields(doc, where, problems)
        n0 = len(problems)
        rate = doc.get("request_rate")
        if rate is None:
            f._p("request_rate", "missing")
        elif isinstance(rate, str) and rate.strip().lower() in ("inf", "infinity"):
            rate = math.inf
        elif _num(rate) and rate > 0:
            rate = float(rate)
        else:
            f._p("request_rate", f"wrong type: expected a positive number or \"inf\", got {rate!r}")
        completed = f.number("completed")
        f.number("duration", positive=True)
        thr = f.number("request_throughput")
        tin = f.number("total_input_tokens")
        tout = f.number("total_output_tokens")
        nprompts = f.number("num_prompts", optional=True)
        model_id = f.string("model_id", optional=True)
        vals = {}
        for m in targets:
            metric = _VLLM_METRIC[m]
            cands = _vllm_stat_field(doc, metric, stat)
            name = next((c for c in cands if c in doc), None)
            if name is None:
                hint = ""
                if stat in ("p90", "p95"):
                    hint = f"save it with --metric-percentiles {stat[1:]},99, or choose another --percentile"
                if m == "e2e":
                    hint = "save it with --percentile-metrics ttft,tpot,itl,e2el, or drop --e2e-ms"
                f._p(cands[0], "missing" + (f" ({hint})" if hint else ""))
                continue
            vals[m] = f.number(name)
        if len(problems) > n0:
            continue
        if completed == 0 or thr == 0:
            problems.append(Problem(f"{where}: field 'completed'", "no request completed"))
            continue
        if model_id:
            ident.setdefault("model_id", {}).setdefault(model_id, where)
        for key in _VLLM_META:
            if key in doc and doc[key] is not None:
                ident.setdefault(key, {}).setdefault(str(doc[key]).strip(), where)
        lens.append((where, tin / completed, tout / completed))
        failure = None
        if nprompts is not None and completed < nprompts:
            failure = f"{int(nprompts - completed)} of {int(nprompts)} requests failed"
        label = "inf req/s (all at once)" if math.isinf(rate) else f"{_fmt(rate)} req/s"
        if doc.get("max_concurrency") not in (None, ""):
            label += f" (max concurrency {doc['max_concurrency']})"
        runs.append(Run(where, rate, label, thr, vals.get("ttft"), vals.get("tbt"), vals.get("e2e"), failure=failure))
    if problems:
        raise InputError(problems, "cannot read vLLM results")
    if not runs:
        raise InputError("no vLLM result file given")

    # one deployment, one workload
    for key, seen in ident.items():
        if len(seen) > 1:
            problems.append(Problem(", ".join(seen.values()), f"runs of different deployments mixed: "
                                    f"{'model_id' if key == 'model_id' else key} " +
                                    " vs ".join(repr(v) for v in seen)))
    for i, name in ((1, "input"), (2, "output")):
        lo = min(lens, key=lambda x: x[i])
        hi = max(lens, key=lambda x: x[i])
        if hi[i] > MIX_TOLERANCE * lo[i]:
            problems.append(Problem(f"{lo[0]}, {hi[0]}", f"runs of different workloads mixed: mean {name} tokens "
                                    f"{_fmt(lo[i])} vs {_fmt(hi[i])} (import each workload as its own shape)"))
    keys = {}
    for r in runs:
        k = (r.load, r.load_label)
        if k in keys:
            problems.append(Problem(f"{keys[k]}, {r.where}", f"two runs at the same load {r.load_label}"))
        keys[k] = r.where
    if problems:
        raise InputError(problems, "cannot combine vLLM results")

    def meta(key):
        return next(iter(ident[key])) if key in ident else None

    try:
        dep = Deployment(
            model=deployment.model or meta("model_id"),
            gpu=deployment.gpu or meta("gpu"),
            tp=deployment.tp if deployment.tp is not None else (int(float(meta("tp"))) if meta("tp") else None),
            pp=deployment.pp if deployment.pp is not None else (int(float(meta("pp"))) if meta("pp") else 1),
            freq_mhz=deployment.freq_mhz if deployment.freq_mhz is not None else
            (float(meta("freq_mhz")) if meta("freq_mhz") else None),
            shape=deployment.shape or meta("shape"),
        )
    except ValueError as e:
        raise InputError([Problem(str(paths[0]), f"metadata: not a number: {e}")]) from None
    _require(dep, ("model", "gpu", "tp", "freq_mhz", "shape"), "vLLM",
             {"gpu": "vLLM results do not record it", "tp": "tensor-parallel size of the served replica",
              "freq_mhz": "SM clock of the runs, MHz", "shape": "the scenario's shape name for this workload",
              "model": "the scenario's model name"})
    names = {m: f"{stat} {n}" for m, n in _VLLM_NAMES.items()}
    point, warns, reason = select_point(runs, targets, names, interpolate=interpolate)
    if point is None:
        if allow_empty:
            return _frame([], warns + [f"{reason}; nothing imported"])
        raise InputError([Problem(", ".join(r.where for r in runs), reason)], "no operating point")
    mean_in = float(np.mean([x[1] for x in lens]))
    mean_out = float(np.mean([x[2] for x in lens]))
    point = replace(point, input_tokens=mean_in, output_tokens=mean_out)
    src = (f"vLLM benchmark_serving, {len(runs)} runs: "
           + ", ".join(f"{names[m]} <= {_fmt(t)} ms" for m, t in targets.items())
           + f" up to {point.load_label} offered, {_fmt(point.throughput_rps)} req/s measured; "
           f"mean {_fmt(mean_in)} in / {_fmt(mean_out)} out tokens")
    if busy_power_w is not None or idle_power_w is not None:
        src += "; power given by the user"
    row = _finish_row(dep, point, src, problems, "", busy=busy_power_w, idle=idle_power_w,
                      ttft=point.ttft_ms, power_fn=power_fn, statistic=stat,
                      power_hint="vLLM results carry no power (W per replica at max_rps)",
                      idle_hint="vLLM results carry no power (W per idle replica)")
    if row is None:
        raise InputError(problems, "cannot build the profile row")
    return _frame([row], warns)


# --------------------------------------------------------------------------------------------
# ML.ENERGY leaderboard

_GPU_FAMILIES = ("GB200", "B200", "B100", "H200", "H100", "H800", "H20", "A100", "A800", "A10G", "A10", "A30", "A40",
                 "L40S", "L40", "L4", "T4", "V100", "MI300X", "MI325X", "MI250X", "RTX 6000")
_GPU_DEFAULT_MEM = {"H100": 80, "H200": 141, "B200": None, "A100": None}


def map_gpu_name(raw: str, gpu_map: dict[str, str] | None = None) -> str:
    """The planner's GPU name for a vendor string: 'NVIDIA H100 80GB HBM3' -> 'H100-80GB',
    'NVIDIA A100-SXM4-40GB' -> 'A100-40GB', 'H100' -> 'H100-80GB', 'B200' -> 'B200'.

    ``gpu_map`` (raw or mapped name -> name) wins; unknown names are returned unchanged.
    """
    gpu_map = gpu_map or {}
    if raw in gpu_map:
        return gpu_map[raw]
    s = raw.upper().replace("NVIDIA", "").replace("AMD", "").replace("INSTINCT", "")
    fam = next((f for f in _GPU_FAMILIES if re.search(rf"(?<![A-Z0-9]){re.escape(f)}(?![A-Z0-9])", s)), None)
    if fam is None:
        name = raw.strip()
    else:
        m = re.search(r"(\d+)\s*GB", s)
        mem = int(m.group(1)) if m else _GPU_DEFAULT_MEM.get(fam)
        name = f"{fam}-{mem}GB" if mem and fam in ("H100", "H200", "A100", "A800", "H800") else fam
    return gpu_map.get(name, name)


@dataclass
class _Group:
    raw_gpu: str
    gpu: str
    gpus_per_replica: int
    tp: int
    pp: int
    label: str
    runs: list[Run] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


def import_mlenergy(paths: Sequence[str | Path], deployment: Deployment, slo: SLO, *,
                    ttft_ms: float | None = None, ttft_fn: TtftFn | None = None,
                    idle_power_w: float | None = None, power_fn: PowerFn | None = None,
                    interpolate: bool = False, parallel: str | None = None,
                    gpu_map: dict[str, str] | None = None, allow_empty: bool = False) -> pd.DataFrame:
    """Profile rows from ML.ENERGY leaderboard files (v2 per-configuration or v3 per-model) of one model.

    The runs are closed-loop (a fixed number of requests in flight). Per (GPU, parallelism) group,
    the operating point is the largest batch whose TBT statistic (v2: average TPOT, the only one;
    v3: ``slo.statistic`` of the inter-token latency, default p99) meets ``slo.tbt_ms``;
    ``max_rps`` = output token throughput / average output tokens there; busy power = v3
    ``avg_power_watts`` or v2 energy per request x ``max_rps``. TTFT is not measured: ``ttft_ms``
    (an estimate) or ``ttft_fn`` must give it; idle power comes from ``idle_power_w`` or ``power_fn``.

    Selection and naming: ``deployment.gpu`` selects the groups whose vendor or mapped name
    (:func:`map_gpu_name`) matches it; if none matches and the files hold a single GPU type, it
    renames that type instead. ``deployment.tp`` selects groups by GPUs per replica (v3 expert-
    or data-parallel configurations are written with tp = GPUs per replica, pp = 1); ``parallel``
    selects by label ('tp4', 'ep8', 'dp8+ep8'). ``deployment.model`` names the model (default: the
    name in the files). One row per remaining group.
    """
    paths = expand_paths(paths)
    _check_slo(slo, ("tbt",), "ML.ENERGY")
    problems: list[Problem] = []
    if slo.ttft_ms is not None or slo.e2e_ms is not None:
        problems.append(Problem("--ttft-ms/--e2e-ms", "ML.ENERGY runs measure no TTFT or end-to-end latency; "
                                                      "only --tbt-ms selects the batch (give the TTFT with "
                                                      "--ttft-ms-estimate)"))
    if ttft_ms is not None and (not math.isfinite(ttft_ms) or ttft_ms <= 0):
        problems.append(Problem("--ttft-ms-estimate", f"must be a positive number of ms, got {ttft_ms}"))
    _check_power_args(None, idle_power_w)
    if problems:
        raise InputError(problems)
    targets = {"tbt": float(slo.tbt_ms)}
    versions: dict[str, list[str]] = {}
    models: dict[str, str] = {}
    tasks: dict[str, str] = {}
    out_lens: list[tuple[str, float]] = []
    groups: dict[tuple, _Group] = {}
    stat_used = set()
    for p in paths:
        where = str(p)
        doc = _read_json(p, problems)
        if doc is None:
            continue
        kind = _json_kind(doc)
        if kind not in ("mlenergy-v2", "mlenergy-v3"):
            problems.append(Problem(where, "not an ML.ENERGY v2 or v3 leaderboard file"))
            continue
        versions.setdefault(kind, []).append(where)
        n0 = len(problems)
        if kind == "mlenergy-v2":
            f = _Fields(doc, where, problems)
            model = f.string("Model")
            raw = f.string("GPU")
            tp = f.number("TP", positive=True)
            pp = f.number("PP", positive=True)
            e_req = f.number("Energy/req (J)", positive=True)
            tpot = f.number("Avg TPOT (s)", positive=True)
            tput = f.number("Token tput (tok/s)", positive=True)
            nout = f.number("Avg Output Tokens", positive=True)
            bs = f.number("Max BS (reqs)", positive=True)
            if len(problems) > n0:
                continue
            if (stat := slo.statistic or "mean") != "mean":
                problems.append(Problem(f"{where}: field 'Avg TPOT (s)'", f"ML.ENERGY v2 reports only the average "
                                        f"TPOT, not {stat}: use --percentile mean"))
                continue
            stat_used.add("mean TPOT")
            task = next((q for q in ("chat", "code") if q in p.parts), "")
            tasks.setdefault(task, where)
            models.setdefault(model, where)
            out_lens.append((where, nout))
            rps = tput / nout
            gname = map_gpu_name(raw, gpu_map)
            key = (raw, int(tp), int(pp), "")
            g = groups.setdefault(key, _Group(raw, gname, int(tp * pp), int(tp), int(pp),
                                              f"tp{int(tp)}" + (f"+pp{int(pp)}" if pp > 1 else "")))
            g.runs.append(Run(where, bs, f"batch {int(bs)}", rps, tbt_ms=tpot * 1000.0, busy_power_w=e_req * rps))
            g.files.append(where)
        else:
            f = _Fields(doc, where, problems)
            model = f.string("model_id")
            task = f.string("task", optional=True) or ""
            if len(problems) > n0:
                continue
            models.setdefault(model, where)
            tasks.setdefault(task, where)
            stat = slo.statistic or "p99"
            if stat == "mean":
                problems.append(Problem(f"{where}: field 'configurations'", "ML.ENERGY v3 reports median/p90/p95/"
                                        "p99 inter-token latency, no mean: choose one with --percentile"))
                continue
            itl_field = "median_itl_ms" if stat == "p50" else f"{stat}_itl_ms"
            stat_used.add(f"{stat} ITL")
            if not doc["configurations"]:
                problems.append(Problem(f"{where}: field 'configurations'", "empty list"))
            for i, c in enumerate(doc["configurations"]):
                cw = f"{where}: configurations[{i}]"
                if not isinstance(c, dict):
                    problems.append(Problem(cw, "must be an object"))
                    continue
                cf = _Fields(c, cw, problems)
                n1 = len(problems)
                raw = cf.string("gpu_model")
                ngpu = cf.number("num_gpus", positive=True)
                seqs = cf.number("max_num_seqs", positive=True)
                itl = cf.number(itl_field, positive=True)
                power = cf.number("avg_power_watts", positive=True)
                tput = cf.number("output_throughput_tokens_per_sec", positive=True)
                nout = cf.number("avg_output_len", positive=True)
                par = c.get("parallelization") or {}
                degrees = [1, 1, 1]
                if not isinstance(par, dict):
                    cf._p("parallelization", f"wrong type: expected an object, got {type(par).__name__}")
                else:
                    pf = _Fields(par, f"{cw}.parallelization", problems)
                    for i, k in enumerate(("tensor_parallel", "expert_parallel", "data_parallel")):
                        v = pf.number(k, positive=True, optional=True)
                        if v is not None and v != int(v):
                            pf._p(k, f"not a whole number: {v:g}")
                        elif v is not None:
                            degrees[i] = int(v)
                    if ngpu is not None and len(problems) == n1 and degrees[0] * degrees[1] * degrees[2] > ngpu:
                        cf._p("num_gpus", f"{ngpu:g} GPUs cannot hold tensor x expert x data parallel "
                                          f"{degrees[0]} x {degrees[1]} x {degrees[2]}")
                if len(problems) > n1:
                    continue
                tpv, epv, dpv = degrees
                label = "+".join(f"{n}{v}" for n, v in (("dp", dpv), ("ep", epv), ("tp", tpv)) if v > 1) or "tp1"
                if tpv > 1 and epv == 1 and dpv == 1:
                    label = f"tp{tpv}"
                out_lens.append((cw, nout))
                rps = tput / nout
                key = (raw, int(ngpu), 1, label)
                g = groups.setdefault(key, _Group(raw, map_gpu_name(raw, gpu_map), int(ngpu), int(ngpu), 1, label))
                g.runs.append(Run(cw, seqs, f"batch {int(seqs)}", rps, tbt_ms=itl, busy_power_w=power))
                g.files.append(cw)
    if problems:
        raise InputError(problems, "cannot read ML.ENERGY files")
    if not groups:
        raise InputError("no ML.ENERGY configuration found in the input")
    if len(versions) > 1:
        problems.append(Problem(f"{versions['mlenergy-v2'][0]}, {versions['mlenergy-v3'][0]}",
                                "ML.ENERGY v2 and v3 files mixed: import them separately"))
    if len(models) > 1:
        problems.append(Problem(", ".join(models.values()), "runs of different models mixed: " +
                                " vs ".join(repr(m) for m in models)))
    if len(tasks) > 1:
        problems.append(Problem(", ".join(tasks.values()), "runs of different tasks mixed: " +
                                " vs ".join(repr(t or "?") for t in tasks)))
    elif out_lens:
        lo = min(out_lens, key=lambda x: x[1])
        hi = max(out_lens, key=lambda x: x[1])
        if hi[1] > MIX_TOLERANCE * lo[1]:
            problems.append(Problem(f"{lo[0]}, {hi[0]}", f"runs of different workloads mixed: average output "
                                    f"tokens {_fmt(lo[1])} vs {_fmt(hi[1])}"))
    for g in groups.values():
        seen = {}
        for r in g.runs:
            if r.load in seen:
                problems.append(Problem(f"{seen[r.load]}, {r.where}", f"two runs of {g.raw_gpu} {g.label} at the "
                                                                      f"same {r.load_label}"))
            seen[r.load] = r.where
    if problems:
        raise InputError(problems, "cannot combine ML.ENERGY files")

    # selection
    sel = list(groups.values())
    avail = ", ".join(sorted({f"{g.gpu} ({g.raw_gpu}) {g.label}" for g in sel}))
    rename = None
    if deployment.gpu is not None:
        want = deployment.gpu.strip().lower()
        match = [g for g in sel if want in (g.gpu.lower(), g.raw_gpu.lower())]
        if match:
            sel = match
        elif len({g.raw_gpu for g in sel}) == 1:
            rename = deployment.gpu
        else:
            raise InputError([Problem("--gpu", f"{deployment.gpu!r} matches no GPU in the input; available: {avail} "
                                               "(to rename, select one with --gpu and map it with --gpu-map)")])
    if deployment.tp is not None:
        sel = [g for g in sel if g.gpus_per_replica == deployment.tp]
    if parallel is not None:
        sel = [g for g in sel if g.label == parallel.strip().lower()]
    if not sel:
        raise InputError([Problem("--tp/--parallel", f"no configuration matches; available: {avail}")])
    if deployment.pp is not None and any(g.pp != deployment.pp for g in sel):
        sel = [g for g in sel if g.pp == deployment.pp]
        if not sel:
            raise InputError([Problem("--pp", f"no configuration matches; available: {avail}")])
    clash: dict[tuple, list[_Group]] = {}
    for g in sel:
        clash.setdefault((rename or g.gpu, g.tp, g.pp), []).append(g)
    for k, gs in clash.items():
        if len(gs) > 1:
            problems.append(Problem("--parallel", f"{k[0]} with {k[1] * k[2]} GPUs per replica has several "
                                    f"parallelisms ({', '.join(g.label for g in gs)}): choose one with --parallel"))
    if problems:
        raise InputError(problems, "ambiguous selection")
    model_raw = next(iter(models))
    _require(replace(deployment, model=deployment.model or model_raw, gpu="x", tp=1, pp=1), ("freq_mhz", "shape"),
             "ML.ENERGY", {"freq_mhz": "SM clock of the runs, MHz (the leaderboard ran at default clocks)",
                           "shape": "the scenario's shape name for this workload"})
    version = "v2" if "mlenergy-v2" in versions else "v3"
    task = next(iter(tasks))
    rows, warns = [], []
    names = {"tbt": next(iter(stat_used)) if stat_used else "TBT"}
    mean_out = float(np.mean([x[1] for x in out_lens])) if out_lens else None
    for g in sorted(sel, key=lambda g: (g.gpu, g.gpus_per_replica, g.label)):
        dep = Deployment(model=deployment.model or model_raw, gpu=rename or g.gpu, tp=g.tp, pp=g.pp,
                         freq_mhz=deployment.freq_mhz, shape=deployment.shape)
        what = f"{g.raw_gpu} {g.label}: "
        point, w, reason = select_point(g.runs, targets, names, interpolate=interpolate, what=what)
        warns += w
        if point is None:
            if allow_empty:
                warns.append(f"{reason}; skipped")
            else:
                problems.append(Problem(", ".join(sorted({r.where.split(": configurations")[0]
                                                              for r in g.runs})[:3]), reason))
            continue
        point = replace(point, output_tokens=mean_out)
        src = (f"ML.ENERGY {version}{f' ({task})' if task else ''} {model_raw} on {g.raw_gpu} {g.label}: largest batch with {names['tbt']} "
               f"<= {_fmt(targets['tbt'])} ms: {point.load_label}; busy power "
               f"{'= energy/request x rate' if version == 'v2' else 'measured'}; ttft_ms not measured"
               + (": user estimate" if ttft_ms is not None else ""))
        row = _finish_row(dep, point, src, problems, f"{g.raw_gpu} {g.label}", busy=point.busy_power_w,
                          idle=idle_power_w, ttft=ttft_ms, power_fn=power_fn, ttft_fn=ttft_fn,
                          statistic="mean" if version == "v2" else (slo.statistic or "p99"),
                          idle_hint="ML.ENERGY measures no idle power (W per idle replica)",
                          ttft_hint="ML.ENERGY measures no TTFT (your estimate at max_rps, ms)")
        if row is not None:
            rows.append(row)
    if problems:
        raise InputError(problems, "no operating point" if any("no run meets" in p.message for p in problems)
                         else "cannot build the profile rows")
    return _frame(rows, warns)


# --------------------------------------------------------------------------------------------
# CSV: runs, and final profile tables


def _read_csv(path: Path, problems: list[Problem]) -> pd.DataFrame | None:
    """:func:`planner.io.read_csv_strings`, collecting its problem instead of raising."""
    try:
        return read_csv_strings(path)[0]
    except InputError as e:
        problems.extend(e.problems)
        return None


def _typed(df: pd.DataFrame, where: str, kinds: dict[str, str], optional: Sequence[str],
           problems: list[Problem]) -> pd.DataFrame | None:
    """Type the columns (str/int/float, 'float?' may be empty), every bad cell reported with its line."""
    missing = [c for c in kinds if c not in df.columns and c not in optional]
    unknown = [c for c in df.columns if c not in kinds]
    if missing:
        problems.append(Problem(where, f"missing column(s): {', '.join(missing)}"))
    if unknown:
        problems.append(Problem(where, f"unknown column(s): {', '.join(unknown)} (expected {', '.join(kinds)})"))
    if missing or unknown:
        return None
    out = {}
    n0 = len(problems)
    for col, kind in kinds.items():
        nullable = kind.endswith("?") or (col in optional and col != "source")
        kind = kind.rstrip("?")
        if col not in df.columns:
            out[col] = pd.Series([np.nan if kind != "str" else ""] * len(df), dtype=float if kind != "str" else object)
            continue
        s = df[col].astype(str).str.strip()
        for i, v in enumerate(s):
            line = f"{where}: line {i + 2}"
            if kind == "str":
                if not v and col != "source":
                    problems.append(Problem(line, f"{col}: empty value"))
                continue
            if not v:
                if not nullable:
                    problems.append(Problem(line, f"{col}: empty value"))
                continue
            try:
                x = float(v)
            except ValueError:
                problems.append(Problem(line, f"{col}: not a number: {v!r}"))
                continue
            if not math.isfinite(x):
                problems.append(Problem(line, f"{col}: not a finite number: {v!r}"))
            elif x < 0:
                problems.append(Problem(line, f"{col}: negative value {v}"))
            elif kind == "int" and x != round(x):
                problems.append(Problem(line, f"{col}: not a whole number: {v!r}"))
        if kind == "str":
            out[col] = s
        else:
            out[col] = pd.to_numeric(s.where(s != "", "nan"), errors="coerce")
    if len(problems) > n0:
        return None
    frame = pd.DataFrame(out)
    for col, kind in kinds.items():
        if kind == "int":
            frame[col] = frame[col].astype("int64")
    return frame


def read_profile_table(path: str | Path, rows: list[dict] | None = None, where: str | None = None) -> pd.DataFrame:
    """Read and check an already-final profile table (the loader's columns and rules): a CSV file,
    or ``rows`` (a scenario's inline rows, reported as ``where[i]``)."""
    problems: list[Problem] = []
    if rows is None:
        path = Path(path)
        df = _read_csv(path, problems)
        where = str(path)
        label = lambda i: f"{path}: line {i + 2}"  # noqa: E731
    else:
        df = pd.DataFrame([{k: ("" if v is None else str(v)) for k, v in r.items()} if isinstance(r, dict) else {}
                           for r in rows]).fillna("") if rows else None  # a key some rows omit: empty there
        if df is None:
            problems.append(Problem(where or "profiles", "table is empty"))
        label = lambda i: f"{where}[{i}]"  # noqa: E731
    frame = None if df is None else _typed(df, where, PROFILE_COLUMNS, OPTIONAL_PROFILE_COLUMNS, problems)
    if frame is not None:
        for i, r in frame.iterrows():
            line = label(i)
            for col in ("tp", "pp", "freq_mhz", "max_rps", "ttft_ms", "tbt_ms"):
                if not r[col] > 0:
                    problems.append(Problem(line, f"{col}: must be positive"))
            if r["busy_power_w"] < r["idle_power_w"]:
                problems.append(Problem(line, "busy_power_w is below idle_power_w"))
            if r["active_power_w"] < r["idle_power_w"]:  # NaN (empty) compares False
                problems.append(Problem(line, "active_power_w is below idle_power_w"))
            if r["active_power_w"] > r["busy_power_w"]:
                problems.append(Problem(line, "active_power_w is above busy_power_w"))
        _check_duplicates(frame, label, problems)
    if problems:
        raise InputError(problems, "invalid profile table")
    frame["source"] = frame["source"].fillna("")
    frame.attrs["warnings"] = []
    frame.attrs["lines"] = {i: label(i) for i in range(len(frame))}
    return frame[COLUMNS]


def _key(r) -> tuple:
    return (str(r["model"]), str(r["gpu"]), int(r["tp"]), int(r["pp"]), float(r["freq_mhz"]), str(r["shape"]))


def _check_duplicates(frame: pd.DataFrame, label, problems: list[Problem]) -> None:
    seen: dict[tuple, int] = {}
    for i, r in frame.iterrows():
        k = _key(r)
        if k in seen:
            problems.append(Problem(label(i), f"duplicate profile row {_dep_label(r)} (first at {label(seen[k])})"))
        else:
            seen[k] = i


def import_runs_csv(paths: Sequence[str | Path], slo: SLO, *, idle_power_w: float | None = None,
                    power_fn: PowerFn | None = None, interpolate: bool = False,
                    allow_empty: bool = False) -> pd.DataFrame:
    """Profile rows from CSV tables of measured runs (columns: :data:`RUN_COLUMNS` and optionally
    :data:`RUN_OPTIONAL`), one row per deployment key, with the vLLM rule (offered
    ``request_rate_rps`` orders the runs, ``throughput_rps`` becomes ``max_rps``, ``power_w`` the
    busy power). ``e2e_ms`` is needed only with ``slo.e2e_ms``; idle power comes from the
    ``idle_power_w`` column (the largest value of the deployment's runs), else ``idle_power_w``,
    else ``power_fn``.
    """
    paths = expand_paths(paths)
    targets = _check_slo(slo, ("ttft", "tbt"), "runs CSV")
    _check_power_args(None, idle_power_w)
    kinds = {c: "str" for c in ("model", "gpu", "shape")} | {"tp": "int", "pp": "int"}
    kinds |= {c: "float" for c in ("freq_mhz", "request_rate_rps", "throughput_rps", "ttft_ms", "tbt_ms", "power_w",
                                   "idle_power_w", "e2e_ms")}
    kinds = {c: kinds[c] for c in RUN_COLUMNS + RUN_OPTIONAL}
    problems: list[Problem] = []
    groups: dict[tuple, list[tuple[Run, float | None]]] = {}
    order: list[tuple] = []
    for p in paths:
        df = _read_csv(p, problems)
        if df is None:
            continue
        fr = _typed(df, str(p), kinds, RUN_OPTIONAL, problems)
        if fr is None:
            continue
        if "e2e" in targets and "e2e_ms" not in df.columns:
            problems.append(Problem(str(p), "missing column e2e_ms (needed by --e2e-ms)"))
            continue
        for i, r in fr.iterrows():
            line = f"{p}: line {i + 2}"
            bad = [c for c in ("tp", "pp", "freq_mhz", "request_rate_rps") if not r[c] > 0]
            if bad:
                problems.append(Problem(line, f"{bad[0]}: must be positive"))
                continue
            if "e2e" in targets and pd.isna(r["e2e_ms"]):
                problems.append(Problem(line, "e2e_ms: empty value (needed by --e2e-ms)"))
                continue
            k = _key(r)
            if k not in groups:
                order.append(k)
            run = Run(line, float(r["request_rate_rps"]), f"{_fmt(float(r['request_rate_rps']))} req/s",
                      float(r["throughput_rps"]), float(r["ttft_ms"]), float(r["tbt_ms"]),
                      None if pd.isna(r["e2e_ms"]) else float(r["e2e_ms"]), busy_power_w=float(r["power_w"]))
            groups.setdefault(k, []).append((run, None if pd.isna(r["idle_power_w"]) else float(r["idle_power_w"])))
    if problems:
        raise InputError(problems, "cannot read the runs")
    for k in order:
        seen = {}
        for run, _ in groups[k]:
            if run.load in seen:
                problems.append(Problem(f"{seen[run.load]}, {run.where}", f"two runs at the same rate {run.load_label}"))
            seen[run.load] = run.where
    if problems:
        raise InputError(problems, "cannot combine the runs")
    rows, warns = [], []
    names = {"ttft": "TTFT", "tbt": "TBT", "e2e": "E2E"}
    for k in order:
        dep = Deployment(*k)
        lbl = _dep_label(dict(zip(PROFILE_KEY, k)))
        runs = [r for r, _ in groups[k]]
        idles = [x for _, x in groups[k] if x is not None]
        point, w, reason = select_point(runs, targets, names, interpolate=interpolate, what=f"{lbl}: ")
        warns += w
        if point is None:
            if allow_empty:
                warns.append(f"{reason}; skipped")
            else:
                problems.append(Problem(runs[0].where.split(": line")[0], reason))
            continue
        idle = max(idles) if idles else idle_power_w
        src = (f"measured runs ({len(runs)}): "
               + ", ".join(f"{names[m]} <= {_fmt(t)} ms" for m, t in targets.items())
               + f" up to {point.load_label} offered, {_fmt(point.throughput_rps)} req/s measured")
        row = _finish_row(dep, point, src, problems, lbl, busy=point.busy_power_w, idle=idle, ttft=point.ttft_ms,
                          power_fn=power_fn, idle_hint="no idle_power_w column value for this deployment",
                          statistic=slo.statistic or "mean")
        if row is not None:
            rows.append(row)
    if problems:
        raise InputError(problems, "no operating point" if any("no run meets" in p.message for p in problems)
                         else "cannot build the profile rows")
    return _frame(rows, warns)


# --------------------------------------------------------------------------------------------
# merging and writing


def merge_profiles(base: pd.DataFrame, new: pd.DataFrame, *, replace: bool = False, base_name: str = "the table",
                   new_name: str = "the imported rows") -> pd.DataFrame:
    """``base`` with ``new``'s rows added. A key present in both is an error unless ``replace``,
    in which case the new row takes the old one's place. ``new`` must not repeat a key."""
    problems: list[Problem] = []
    _check_duplicates(new, lambda i: f"{new_name} row {i + 1}", problems)
    if problems:
        raise InputError(problems, "duplicate profile rows")
    index = {_key(r): i for i, r in base.iterrows()}
    lines = base.attrs.get("lines", {})
    records = [{c: r[c] for c in COLUMNS} for _, r in base.iterrows()]
    for _, r in new.iterrows():
        k = _key(r)
        if k in index:
            if not replace:
                where = lines.get(index[k], f"{base_name} row {index[k] + 1}")
                problems.append(Problem(where, f"duplicate key {_dep_label(r)}: already in {base_name} "
                                               "(pass --replace to overwrite it)"))
            else:
                records[index[k]] = {c: r[c] for c in COLUMNS}
        else:
            records.append({c: r[c] for c in COLUMNS})
    if problems:
        raise InputError(problems, "duplicate profile rows")
    return _frame(records, list(base.attrs.get("warnings", [])) + list(new.attrs.get("warnings", [])))


def profiles_to_csv(df: pd.DataFrame) -> str:
    """The profile table as CSV text with exactly the loader's columns (6 significant digits;
    ``active_power_w`` and ``expected_error`` empty where unknown)."""
    def num(x, digits=6):
        if x is None or (isinstance(x, float) and math.isnan(x)):
            return ""
        return f"{float(x):.{digits}g}"

    rows = []
    for _, r in df.iterrows():
        rows.append({"model": r["model"], "gpu": r["gpu"], "tp": str(int(r["tp"])), "pp": str(int(r["pp"])),
                     "freq_mhz": num(r["freq_mhz"], 8), "shape": r["shape"], "max_rps": num(r["max_rps"]),
                     "ttft_ms": num(r["ttft_ms"]), "tbt_ms": num(r["tbt_ms"]), "busy_power_w": num(r["busy_power_w"]),
                     "idle_power_w": num(r["idle_power_w"]), "active_power_w": num(r["active_power_w"]),
                     "source": "" if pd.isna(r["source"]) else r["source"],
                     "expected_error": num(r["expected_error"]),
                     "statistic": "mean" if "statistic" not in r or pd.isna(r["statistic"]) or r["statistic"] == ""
                     else r["statistic"],
                     "service_ms": num(r["service_ms"]) if "service_ms" in r else ""})
    return pd.DataFrame(rows, columns=COLUMNS).to_csv(index=False, lineterminator="\n")


def import_profiles(paths: Sequence[str | Path], fmt: str | None = None, *, deployment: Deployment | None = None,
                    slo: SLO | None = None, **kw) -> pd.DataFrame:
    """Detect the format of ``paths`` (unless ``fmt`` is given) and run the matching importer.

    Keyword arguments go to that importer (e.g. ``busy_power_w``, ``ttft_ms``, ``interpolate``).
    """
    files = expand_paths(paths)
    fmt = fmt or detect_format(files)
    deployment = deployment or Deployment()
    slo = slo or SLO()
    if fmt == "vllm":
        return import_vllm(files, deployment, slo, **kw)
    if fmt == "mlenergy":
        return import_mlenergy(files, deployment, slo, **kw)
    if fmt == "runs-csv":
        return import_runs_csv(files, slo, **kw)
    if fmt == "profile":
        frames = [read_profile_table(f) for f in files]
        out = frames[0]
        for f, fr in zip(files[1:], frames[1:]):
            out = merge_profiles(out, fr, base_name=str(files[0]), new_name=str(f))
        return out
    raise InputError([Problem("--format", f"unknown format {fmt!r} (use {'|'.join(FORMATS)})")])

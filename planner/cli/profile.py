"""``plan profile``: import measured profiles and estimate missing rows."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from planner.cli.console import err
from planner.errors import InputError, Problem
from planner.io import atomic_write_text, check_outputs, confine, write_stdout

profile_app = typer.Typer(help="Import profiled runs (vLLM, ML.ENERGY, CSV) and estimate missing profile rows.",
                          no_args_is_help=True, rich_markup_mode=None)


class FormatOpt(str, Enum):
    vllm = "vllm"
    mlenergy = "mlenergy"
    runs_csv = "runs-csv"
    profile = "profile"


class StatOpt(str, Enum):
    mean = "mean"
    p50 = "p50"
    p90 = "p90"
    p95 = "p95"
    p99 = "p99"


def _hooks(estimate: bool, input_tokens: int | None, perf_model: str | None, perf_gpu: str | None) -> dict:
    """Estimators for what a format does not measure, from the calibrated performance model
    (``--estimate-missing``): ``power_fn(deployment, point) -> (busy_w, idle_w, active_w)`` and
    ``ttft_fn(deployment, point) -> ms`` (see planner.perf.importers). Values the files measure or
    the options give always win; the row's ``source`` says which values were estimated.

    * idle power: the model's idle power of the replica (tp x pp GPUs at the given clock);
    * busy power: the model's replica power when fully busy in memory-bound decode;
    * active power: the model's power of the replica running one sequence continuously
      (``ReplicaModel.active_power_w``) with the workload's mean input (``--input-tokens``, else the
      runs' mean where recorded) and output tokens (where recorded); without output tokens, a
      single-sequence decode step with the prompt work not counted. Kept within [idle, busy];
    * TTFT: a stand-alone prefill of ``--input-tokens`` plus the decode iteration in flight at the
      operating point (the measured TBT). It has no queueing wait: ML.ENERGY's runs are closed-loop.
    Without ``--estimate-missing`` both hooks are None and missing values are an error.
    """
    if not estimate:
        return {"power_fn": None, "ttft_fn": None}
    from planner.perf import model as perfmodel

    def replica(dep):
        model = perf_model or dep.model
        gpu = perf_gpu or dep.gpu
        problems = []
        if model not in perfmodel.known_models():
            problems.append(Problem("--perf-model", f"the performance model does not know model {model!r} "
                                    f"(known: {', '.join(perfmodel.known_models())})"))
        if gpu not in perfmodel.known_gpus():
            problems.append(Problem("--perf-gpu", f"the performance model does not know GPU {gpu!r} "
                                    f"(known: {', '.join(perfmodel.known_gpus())})"))
        if problems:
            raise InputError(problems, "cannot estimate missing values")
        return perfmodel.replica_model(model, gpu, int(dep.tp or 1), int(dep.pp or 1), dep.freq_mhz)

    def power_fn(dep, point):
        rm = replica(dep)
        inp = float(input_tokens) if input_tokens is not None else point.input_tokens
        return rm.power_w(1.0), rm.idle_power_w, rm.active_power_w(inp, point.output_tokens)

    def ttft_fn(dep, point):
        if input_tokens is None:
            raise InputError([Problem("--input-tokens", "required to estimate TTFT (the prompt length of the "
                                      "profiled workload)")], "cannot estimate missing values")
        rm = replica(dep)
        return rm.prefill_ms(float(input_tokens)) + float(point.tbt_ms or 0.0)

    return {"power_fn": power_fn, "ttft_fn": ttft_fn}


# options that make no sense for a format: an error, never silently ignored
_NOT_FOR = {
    "vllm": ("--gpu-map", "--parallel", "--ttft-ms-estimate"),
    "mlenergy": ("--busy-power-w", "--ttft-ms", "--e2e-ms"),
    "runs-csv": ("--model", "--gpu", "--tp", "--pp", "--freq-mhz", "--shape", "--gpu-map", "--parallel",
                 "--percentile", "--busy-power-w", "--ttft-ms-estimate"),
    "profile": ("--model", "--gpu", "--tp", "--pp", "--freq-mhz", "--shape", "--gpu-map", "--parallel",
                "--percentile", "--busy-power-w", "--ttft-ms-estimate", "--ttft-ms", "--tbt-ms", "--e2e-ms",
                "--idle-power-w", "--interpolate", "--allow-empty"),
}
_WHY = {
    "vllm": "vLLM results",
    "mlenergy": "ML.ENERGY files (they measure no TTFT/E2E and measure busy power)",
    "runs-csv": "a CSV of runs (it carries the deployment, its statistic and power)",
    "profile": "a final profile table (it is only validated and merged)",
}


def _parse_gpu_map(items: list[str]) -> dict[str, str]:
    out, problems = {}, []
    for it in items:
        raw, sep, name = it.partition("=")
        if not sep or not raw.strip() or not name.strip():
            problems.append(Problem("--gpu-map", f"expected RAW=NAME, got {it!r}"))
        else:
            out[raw.strip()] = name.strip()
    if problems:
        raise InputError(problems, "invalid option")
    return out


@profile_app.command("import")
def import_cmd(
    paths: list[Path] = typer.Argument(..., help="Result files or folders (folders: every .json/.csv below)."),
    fmt: FormatOpt | None = typer.Option(None, "--format", help="Input format (default: detected from the files)."),
    output: Path | None = typer.Option(None, "-o", "--output", help="Profile CSV to write (default: the --merge "
                                          "file, else stdout)."),
    merge: Path | None = typer.Option(None, "--merge", help="Existing profile CSV to add the rows to."),
    replace: bool = typer.Option(False, "--replace", help="With --merge: imported rows replace rows with the same "
                                 "(model, gpu, tp, pp, freq_mhz, shape) instead of being an error."),
    model: str | None = typer.Option(None, "--model", help="Model name in the scenario (default: from the files)."),
    gpu: str | None = typer.Option(None, "--gpu", help="GPU type name (ML.ENERGY: selects configurations, or "
                                      "renames a single GPU type)."),
    tp: int | None = typer.Option(None, "--tp", help="Tensor parallelism (ML.ENERGY: selects GPUs per replica)."),
    pp: int | None = typer.Option(None, "--pp", help="Pipeline parallelism (default 1)."),
    freq_mhz: float | None = typer.Option(None, "--freq-mhz", help="SM clock of the runs, MHz."),
    shape: str | None = typer.Option(None, "--shape", help="Scenario shape name of the benchmarked workload."),
    gpu_map: list[str] = typer.Option([], "--gpu-map", help="ML.ENERGY: RAW=NAME GPU renaming (repeatable)."),
    parallel: str | None = typer.Option(None, "--parallel", help="ML.ENERGY v3: parallelism label to select "
                                           "(tp4, ep8, dp8+ep8)."),
    ttft_ms: float | None = typer.Option(None, "--ttft-ms", help="TTFT target, ms."),
    tbt_ms: float | None = typer.Option(None, "--tbt-ms", help="TBT (TPOT/ITL) target, ms."),
    e2e_ms: float | None = typer.Option(None, "--e2e-ms", help="End-to-end latency target, ms (optional)."),
    percentile: StatOpt | None = typer.Option(None, "--percentile", help="Statistic that must meet the targets "
                                                 "(default: p99; ML.ENERGY v2: mean, the only one)."),
    interpolate: bool = typer.Option(False, "--interpolate", help="Interpolate between the last run meeting the "
                                     "SLO and the first failing it (see docs/profiles.md)."),
    busy_power_w: float | None = typer.Option(None, "--busy-power-w", help="vLLM: replica power at max_rps, W."),
    idle_power_w: float | None = typer.Option(None, "--idle-power-w", help="Idle replica power, W."),
    ttft_ms_estimate: float | None = typer.Option(None, "--ttft-ms-estimate", help="ML.ENERGY: the TTFT at "
                                                     "max_rps (not measured there), ms."),
    allow_empty: bool = typer.Option(False, "--allow-empty", help="Skip deployments where no run meets the SLO "
                                     "(warning) instead of failing; nothing is written if no row remains."),
    estimate_missing: bool = typer.Option(False, "--estimate-missing", help="Fill what the files do not measure "
                                          "(idle/busy/active power, ML.ENERGY TTFT) from the calibrated performance model; "
                                          "the row's source says so."),
    input_tokens: int | None = typer.Option(None, "--input-tokens", help="With --estimate-missing: prompt length "
                                            "of the profiled workload, for the TTFT and active-power estimates."),
    perf_model: str | None = typer.Option(None, "--perf-model", help="With --estimate-missing: the performance "
                                          "model's name for the model, if it differs from --model."),
    perf_gpu: str | None = typer.Option(None, "--perf-gpu", help="With --estimate-missing: the performance "
                                        "model's name for the GPU, if it differs."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No summary on stderr."),
):
    """Convert benchmark results into profile rows (the scenario's profiles table) and write them as CSV.

    Formats: vLLM benchmark_serving.py --save-result JSON (several request rates of one deployment),
    ML.ENERGY leaderboard v2/v3 JSON, a CSV of measured runs, or a final profile table. The row's
    max_rps is the throughput at the highest load whose statistics meet --ttft-ms/--tbt-ms
    (docs/profiles.md).
    """
    from rich.markup import escape

    from planner.perf.importers import (
        SLO,
        Deployment,
        detect_format,
        expand_paths,
        import_mlenergy,
        import_profiles,
        import_runs_csv,
        import_vllm,
        merge_profiles,
        profiles_to_csv,
        read_profile_table,
    )

    target = output if output is not None else merge
    if merge is not None and not merge.exists():
        raise InputError([Problem(str(merge), "file not found (--merge adds rows to an existing profile table)")])
    if replace and merge is None:
        raise InputError("--replace applies only with --merge")
    import math

    for opt, val in (("--freq-mhz", freq_mhz), ("--ttft-ms", ttft_ms), ("--tbt-ms", tbt_ms), ("--e2e-ms", e2e_ms),
                     ("--busy-power-w", busy_power_w), ("--idle-power-w", idle_power_w),
                     ("--ttft-ms-estimate", ttft_ms_estimate)):
        if val is not None and not (math.isfinite(val) and val > 0):
            raise InputError([Problem(opt, f"must be a positive finite number, got {val}")])
    files = expand_paths(paths)
    if target is not None:
        check_outputs({"-o": target}, files)  # the --merge table may be rewritten (atomically); a result may not
    kind = fmt.value if fmt is not None else detect_format(files)
    given = {"--model": model, "--gpu": gpu, "--tp": tp, "--pp": pp, "--freq-mhz": freq_mhz, "--shape": shape,
             "--gpu-map": gpu_map or None, "--parallel": parallel, "--percentile": percentile,
             "--busy-power-w": busy_power_w, "--ttft-ms-estimate": ttft_ms_estimate, "--ttft-ms": ttft_ms,
             "--tbt-ms": tbt_ms, "--e2e-ms": e2e_ms, "--idle-power-w": idle_power_w,
             "--interpolate": interpolate or None, "--allow-empty": allow_empty or None}
    bad = [o for o in _NOT_FOR[kind] if given[o] is not None]
    if bad:
        raise InputError([Problem(o, f"does not apply to {_WHY[kind]}") for o in bad], "invalid option")
    if estimate_missing and freq_mhz is None and (perf_gpu or gpu):
        from planner.perf import model as perfmodel

        if (perf_gpu or gpu) in perfmodel.known_gpus():  # default clocks: the GPU's max boost clock
            freq_mhz = float(perfmodel.gpu_spec(perf_gpu or gpu).max_clock_mhz)
    dep = Deployment(model=model, gpu=gpu, tp=tp, pp=pp, freq_mhz=freq_mhz, shape=shape)
    slo = SLO(ttft_ms=ttft_ms, tbt_ms=tbt_ms, e2e_ms=e2e_ms, statistic=percentile.value if percentile else None)
    if not estimate_missing and (input_tokens is not None or perf_model or perf_gpu):
        raise InputError("--input-tokens, --perf-model and --perf-gpu apply only with --estimate-missing",
                         "invalid option")
    hooks = _hooks(estimate_missing, input_tokens, perf_model, perf_gpu)
    if kind == "vllm":
        df = import_vllm(files, dep, slo, busy_power_w=busy_power_w, idle_power_w=idle_power_w,
                         power_fn=hooks["power_fn"], interpolate=interpolate, allow_empty=allow_empty)
    elif kind == "mlenergy":
        df = import_mlenergy(files, dep, slo, ttft_ms=ttft_ms_estimate, ttft_fn=hooks["ttft_fn"],
                             idle_power_w=idle_power_w, power_fn=hooks["power_fn"], interpolate=interpolate,
                             parallel=parallel, gpu_map=_parse_gpu_map(gpu_map), allow_empty=allow_empty)
    elif kind == "runs-csv":
        df = import_runs_csv(files, slo, idle_power_w=idle_power_w, power_fn=hooks["power_fn"],
                             interpolate=interpolate, allow_empty=allow_empty)
    else:
        df = import_profiles(files, "profile")
    warnings = list(df.attrs.get("warnings", []))
    for w in warnings:
        err.print(f"[yellow]warning:[/] {escape(w)}")
    if df.empty:
        err.print("[yellow]warning:[/] no profile row imported; nothing written")
        return 0
    imported = df
    if merge is not None:
        base = read_profile_table(merge)
        df = merge_profiles(base, df, replace=replace, base_name=str(merge))
    text = profiles_to_csv(df)
    if target is None:
        write_stdout(text)
    else:
        atomic_write_text(target, text)
    if not quiet:
        for _, r in imported.iterrows():
            err.print(escape(f"{r['model']} {r['gpu']} tp{r['tp']} pp{r['pp']} {r['freq_mhz']:g} MHz {r['shape']}: "
                             f"max_rps {r['max_rps']:.4g} req/s, ttft {r['ttft_ms']:.4g} ms, tbt {r['tbt_ms']:.4g} ms, "
                             f"power {r['busy_power_w']:.4g} W busy / {r['idle_power_w']:.4g} W idle"
                             + ("" if math.isnan(float(r["active_power_w"])) else f" / {r['active_power_w']:.4g} W active")))
        if target is not None:
            n = len(imported)
            extra = f" (table now {len(df)} rows)" if merge is not None else ""
            err.print(escape(f"{n} profile row{'s' if n != 1 else ''} written to {target}{extra}"))
    return 0


def _parse_map(items: list[str], flag: str) -> dict[str, str]:
    out, problems = {}, []
    for it in items:
        a, sep, b = it.partition("=")
        if not sep or not a.strip() or not b.strip():
            problems.append(Problem(flag, f"expected SCENARIO_NAME=MODEL_NAME, got {it!r}"))
        else:
            out[a.strip()] = b.strip()
    if problems:
        raise InputError(problems, "invalid option")
    return out


@profile_app.command("estimate")
def estimate_cmd(
    scenario: Optional[Path] = typer.Argument(None, help="Scenario file or folder (default: embedded)."),
    profiles: Optional[Path] = typer.Option(None, "--profiles", help="Profile table to fill (default: the "
                                            "scenario's own profiles CSV, if it exists)."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write the filled table here (CSV); "
                                          "default: stdout."),
    model: list[str] = typer.Option([], "--model", help="Only this scenario model (repeatable)."),
    gpu: list[str] = typer.Option([], "--gpu", help="Only this scenario GPU type (repeatable)."),
    model_map: list[str] = typer.Option([], "--model-map", help="SCENARIO_MODEL=KNOWN_MODEL when the "
                                        "scenario's name differs from the performance model's (repeatable)."),
    gpu_map: list[str] = typer.Option([], "--gpu-map", help="SCENARIO_GPU=KNOWN_GPU (repeatable)."),
    skip_unknown: bool = typer.Option(False, "--skip-unknown", help="Skip models/GPUs the performance model "
                                      "does not know (warning) instead of failing."),
    network_ms: Optional[float] = typer.Option(None, "--network-ms", min=0, max=1e6, help="Network allowance "
                                               "subtracted from the TTFT targets (default: the smallest RTT of "
                                               "the scenario); rows then serve every route up to that RTT."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No summary on stderr."),
):
    """Add performance-model estimates for every profile row the scenario can use and the table lacks.

    Existing rows are kept unchanged. Estimated rows say so in `source` and carry `expected_error`
    (relative error of max_rps from the held-out calibration; docs/performance-model.md). Each shape
    is profiled at the tightest SLO of its classes, less the smallest network RTT (or --network-ms).
    A shape whose classes state a percentile (slo.percentile) is profiled for its length
    distribution at that percentile.
    """
    from rich.markup import escape

    from planner.perf.estimate import estimate_profiles
    from planner.perf.importers import profiles_to_csv, read_profile_table
    from planner.scenario.loading import read_shape_distributions, read_spec, scenario_document_path

    spec, base = read_spec(scenario)
    if output is not None:
        check_outputs({"-o": output}, [scenario_document_path(scenario)])
    table_path = profiles
    if table_path is None and isinstance(spec.profiles, str):
        cand = confine(spec.profiles, base)  # the scenario's own table: inside its folder, as when loading
        table_path = cand if cand.exists() else None
    if table_path is not None:
        existing = read_profile_table(table_path)
    elif isinstance(spec.profiles, list):  # inline rows in the scenario document
        existing = read_profile_table(None, rows=list(spec.profiles), where=f"{base}: profiles")
    else:
        existing = None  # the scenario's profile CSV does not exist yet: a fresh table
    dists = read_shape_distributions(spec, base, str(scenario_document_path(scenario)))
    table, rep = estimate_profiles(spec, existing, models=model or None, gpus=gpu or None,
                                   model_map=_parse_map(model_map, "--model-map"),
                                   gpu_map=_parse_map(gpu_map, "--gpu-map"), skip_unknown=skip_unknown,
                                   distributions=dists, network_ms=network_ms)
    for s in rep.skipped:
        err.print("[yellow]warning:[/] " + escape(s))
    text = profiles_to_csv(table)
    if output is None:
        write_stdout(text)
    else:
        atomic_write_text(output, text)
    if not quiet:
        for (m, g), n in sorted(rep.added_by_pair.items()):
            err.print(escape(f"{m} on {g}: {n} estimated row{'s' if n != 1 else ''} added"))
        where = f" to {output}" if output is not None else ""
        err.print(escape(f"{rep.kept} existing row{'s' if rep.kept != 1 else ''} kept, {rep.added} added; "
                         f"{len(table)} rows written{where}"))
    return 0

"""The ``plan`` command line.

Exit codes (also in ``plan --help`` and the README): 0 success; 1 internal error, or ``plan check``
found violations; 2 invalid input or usage; 3 infeasible (explained); 4 no feasible plan within
the limits.
"""

from __future__ import annotations

import json
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from .errors import (
    EXIT_INPUT,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_VIOLATIONS,
    InfeasibleError,
    InputError,
    PlannerError,
)
from .scenario import Objective as ObjectiveOpt
from .scenario import TieBreak as TieBreakOpt

err = Console(stderr=True, highlight=False, soft_wrap=True)

HELP = """Plan LLM serving on heterogeneous, geo-distributed GPU fleets (MILP on HiGHS).

Exit codes: 0 success; 1 internal error (or `plan check` found violations); 2 invalid input or
usage; 3 infeasible (an explanation is printed); 4 no feasible plan within the time limit."""

app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  rich_markup_mode=None)


class BackendOpt(str, Enum):
    highs = "highs"
    pyomo = "pyomo"
    pulp = "pulp"


class SchemaKind(str, Enum):
    scenario = "scenario"
    plan = "plan"


def _esc(s: str) -> str:
    from rich.markup import escape

    return escape(s)


def _emit_json(text: str, output: Optional[Path]) -> None:
    from .io import atomic_write_text

    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        atomic_write_text(output, text)


@app.command()
def solve(
    scenario: Optional[Path] = typer.Argument(None, help="Scenario YAML/JSON file or folder (default: embedded default)."),
    objective: Optional[ObjectiveOpt] = typer.Option(None, "--objective", help="What to minimise (default: the scenario's)."),
    backend: BackendOpt = typer.Option(BackendOpt.highs, "--backend", help="Model builder: highs (fastest), pyomo or pulp."),
    budget: Optional[float] = typer.Option(None, "--budget", help="Budget over the horizon, USD (overrides the scenario)."),
    carbon_cap: Optional[float] = typer.Option(None, "--carbon-cap", help="Emission cap over the horizon, kgCO2e."),
    tie_break: Optional[TieBreakOpt] = typer.Option(None, "--tie-break", help="routing (default: re-route for the secondary objective with the fleet fixed), lexicographic (second MILP) or none."),
    time_limit: Optional[float] = typer.Option(None, "--time-limit", help="Wall-clock limit for solving, seconds."),
    mip_gap: float = typer.Option(5e-3, "--mip-gap", help="Relative MIP gap at which to stop (the plan reports the gap reached)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="HiGHS threads."),
    seed: Optional[int] = typer.Option(None, "--seed", help="HiGHS random seed."),
    write_model: Optional[Path] = typer.Option(None, "--write-model", help="Write the model given to HiGHS (.mps or .lp)."),
    explain: bool = typer.Option(False, "--explain", help="If infeasible, print the explanation as JSON on stdout."),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Plan JSON file (default: stdout)."),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="No summary on stderr."),
    whole_model: bool = typer.Option(False, "--whole-model", help="Solve all slots as one model (default: slot by slot when no budget or cap couples them)."),
):
    """Solve a scenario and write the serving plan (JSON on stdout or -o; summary on stderr)."""
    from .io import _check_dir
    from .loading import load_scenario
    from .solving import solve as _solve

    if budget is not None and budget < 0:
        raise InputError("--budget must be >= 0")
    if carbon_cap is not None and carbon_cap < 0:
        raise InputError("--carbon-cap must be >= 0")
    if threads is not None and threads < 1:
        raise InputError("--threads must be >= 1")
    if write_model is not None and write_model.suffix.lower() not in (".mps", ".lp"):
        raise InputError(f"--write-model: {write_model}: use a .mps or .lp suffix")
    for p in (output, write_model):
        if p is not None:
            _check_dir(p)
    sc = load_scenario(scenario)
    for w in sc.warnings:
        err.print(f"[yellow]warning:[/] {w}")
    progress = None
    live = None
    if err.is_terminal and not quiet:
        from rich.live import Live

        live = Live("", console=err, transient=True, refresh_per_second=4)

        def progress(d):
            inc = "-" if d["incumbent"] is None else f"{d['incumbent']:.6g}"
            bnd = "-" if d["bound"] is None else f"{d['bound']:.6g}"
            gap = "-" if d["gap"] is None else f"{100 * d['gap']:.2f}%"
            if "slots" in d:
                live.update(f"solving slot by slot: {d['slots_done']}/{d['slots']} done, objective so far {inc}  "
                            f"{d['elapsed']:.1f} s")
            else:
                live.update(f"solving: incumbent {inc}  bound {bnd}  gap {gap}  {d['elapsed']:.1f} s")

    try:
        if live is not None:
            live.start()
        plan = _solve(
            sc, objective.value if objective else None, backend.value, time_limit=time_limit, mip_gap=mip_gap,
            threads=threads, seed=seed, write_model=write_model, progress=progress, budget_usd=budget,
            carbon_cap_kg=carbon_cap, tie_break=tie_break.value if tie_break else None, decompose=not whole_model,
        )
    except InfeasibleError as e:
        if live is not None:
            live.stop()
        if explain:
            sys.stdout.write(json.dumps(e.explanation.to_dict(), indent=1) + "\n")
        raise
    finally:
        if live is not None:
            live.stop()
    _emit_json(plan.to_json(), output)
    if not quiet:
        from .summary import print_summary

        print_summary(plan, err)
        if output is not None:
            err.print(f"plan written to {output}")
    if plan.status != "optimal":
        gap = "unknown" if plan.solver.gap is None else f"{100 * plan.solver.gap:.2f}%"
        err.print(f"[yellow]note:[/] stopped at a limit; the best plan found has a gap of {gap} to the bound")


@app.command()
def show(
    plan_file: Path = typer.Argument(..., metavar="PLAN.json", help="A plan written by `plan solve`."),
    slot: Optional[int] = typer.Option(None, "--slot", help="Also list this slot's deployments and routing."),
):
    """Print a readable summary of a plan."""
    from .checker import read_plan
    from .summary import print_summary

    plan = read_plan(plan_file)
    if slot is not None and not (0 <= slot < len(plan.slots)):
        raise InputError(f"--slot must be between 0 and {len(plan.slots) - 1}")
    print_summary(plan, Console(highlight=False, soft_wrap=True), slot)


@app.command()
def check(
    plan_file: Path = typer.Argument(..., metavar="PLAN.json"),
    scenario: Optional[Path] = typer.Option(None, "--scenario", "-s", help="Scenario the plan was made for (default: embedded)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
):
    """Independently verify a plan against its scenario. Exit 0 if it holds, 1 if not."""
    from .checker import check as _check
    from .loading import load_scenario

    sc = load_scenario(scenario)
    rep = _check(plan_file, sc)
    if as_json:
        sys.stdout.write(json.dumps(rep.to_dict(), indent=1) + "\n")
    else:
        Console(highlight=False, soft_wrap=True).print(rep.render())
    raise typer.Exit(EXIT_OK if rep.ok else EXIT_VIOLATIONS)


class PolicyOpt(str, Enum):
    fcfs = "fcfs"
    edf = "edf"
    srtf = "srtf"
    llf = "llf"


class PredictOpt(str, Enum):
    class_ = "class"
    oracle = "oracle"


class TraceRateOpt(str, Enum):
    plan = "plan"
    trace = "trace"


@app.command()
def simulate(
    plan_file: Path = typer.Argument(..., metavar="PLAN.json", help="A plan written by `plan solve`."),
    scenario: Optional[Path] = typer.Option(None, "--scenario", "-s", help="Scenario the plan was made for (default: embedded)."),
    trace: Optional[list[str]] = typer.Option(None, "--trace", help="Replay this request trace (CSV: timestamp, input and output tokens, optional class and origin); PATH=CLASS,CLASS limits the classes its requests take. Repeatable. Default: Poisson arrivals at the planned rates."),
    policy: PolicyOpt = typer.Option(PolicyOpt.fcfs, "--policy", help="Queue order on every replica: fcfs, edf (TTFT deadline), srtf (shortest predicted service), llf (least laxity)."),
    seed: int = typer.Option(0, "--seed", help="Random seed (arrivals, routing, replica choice)."),
    slots: Optional[str] = typer.Option(None, "--slots", help="Slots to simulate, e.g. 14 or 0-3,14 (default: all)."),
    load_scale: float = typer.Option(1.0, "--load-scale", help="Multiply every arrival rate by this."),
    minutes: Optional[float] = typer.Option(None, "--minutes", help="Simulate the first MINUTES of each slot (default: the whole slot)."),
    predict: PredictOpt = typer.Option(PredictOpt.class_, "--predict", help="Output lengths the policies assume: class (the class's shape) or oracle (the true ones)."),
    trace_rate: TraceRateOpt = typer.Option(TraceRateOpt.plan, "--trace-rate", help="plan: compress each trace to the planned rate of its classes; trace: keep its own rate."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the report as JSON here (atomically)."),
    as_json: bool = typer.Option(False, "--json", help="Print the JSON report instead of tables."),
):
    """Simulate a plan: replay traffic against its fleet (continuous batching, same performance model) and
    report latency percentiles, SLO attainment, energy, carbon, cost and fairness next to the plan's figures."""
    from .checker import read_plan
    from .loading import load_scenario
    from .simulate import render_report
    from .simulate import simulate as _simulate

    plan = read_plan(plan_file)
    sc = load_scenario(scenario)
    rep = _simulate(plan, sc, traces=trace or None, policy=policy.value, seed=seed, slots=slots,
                    load_scale=load_scale, minutes=minutes, predict=predict.value, trace_rate=trace_rate.value)
    text = rep.to_json()
    if output is not None:
        _emit_json(text, output)
    if as_json:
        _emit_json(text, None)
    else:
        Console(highlight=False, soft_wrap=False, width=max(Console().width, 150)).print(render_report(rep))


@app.command()
def validate(scenario: Optional[Path] = typer.Argument(None, help="Scenario file or folder (default: embedded).")):
    """Check a scenario without solving (exit 0 if valid, 2 with every problem listed if not)."""
    from .loading import load_scenario

    sc = load_scenario(scenario)
    for w in sc.warnings:
        err.print(f"[yellow]warning:[/] {w}")
    out = Console(highlight=False, soft_wrap=True)
    out.print(f"valid: {sc.source}: {len(sc.regions)} regions, {len(sc.gpus)} GPU types, {len(sc.models)} models, "
              f"{len(sc.classes)} classes, {len(sc.origins)} origins, {sc.n_slots} slots of "
              f"{sc.spec.horizon.slot_minutes} min, {len(sc.profiles)} profile rows; fingerprint {sc.fingerprint[:16]}")


@app.command()
def init(
    directory: Path = typer.Argument(..., help="Folder to write the default scenario into."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing files."),
):
    """Write the embedded default scenario (YAML + CSV tables) to DIRECTORY for editing."""
    from .defaults import default_scenario_dir
    from .io import atomic_write_text

    src = default_scenario_dir()
    files = sorted(p for p in src.iterdir() if p.suffix in (".yaml", ".csv", ".md"))
    if directory.exists() and not directory.is_dir():
        raise InputError(f"{directory}: exists and is not a folder")
    clash = [directory / p.name for p in files if (directory / p.name).exists()]
    if clash and not force:
        raise InputError(f"{clash[0]}: already exists (use --force to overwrite)")
    directory.mkdir(parents=True, exist_ok=True)
    for p in files:
        atomic_write_text(directory / p.name, p.read_text(encoding="utf-8"))
    err.print(f"wrote {len(files)} files to {directory}; try: plan solve {directory / 'scenario.yaml'}")


@app.command()
def generate(
    outdir: Path = typer.Argument(..., help="Folder for the synthetic scenario."),
    regions: int = typer.Option(4, "--regions", min=1),
    slots: int = typer.Option(24, "--slots", min=1),
    gpus: int = typer.Option(3, "--gpus", min=1),
    models: int = typer.Option(2, "--models", min=1),
    classes: int = typer.Option(4, "--classes", min=1),
    seed: int = typer.Option(0, "--seed"),
    force: bool = typer.Option(False, "--force", help="Overwrite existing files."),
):
    """Write a synthetic scenario of the given size, built from the default tables."""
    from .generate import generate_scenario

    path = generate_scenario(outdir, regions=regions, slots=slots, gpus=gpus, models=models, classes=classes,
                             seed=seed, force=force)
    err.print(f"wrote {path}")


@app.command()
def schema(kind: SchemaKind = typer.Argument(..., help="scenario or plan")):
    """Print the JSON Schema of the scenario document or of the plan file."""
    from .plan import plan_json_schema
    from .scenario import scenario_json_schema

    s = scenario_json_schema() if kind == SchemaKind.scenario else plan_json_schema()
    sys.stdout.write(json.dumps(s, indent=1, sort_keys=True) + "\n")


from .cli_data import data_app  # noqa: E402
from .cli_profile import profile_app  # noqa: E402

app.add_typer(data_app, name="data")
app.add_typer(profile_app, name="profile")


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app, map errors to exit codes, never show a traceback unless PLANNER_DEBUG=1."""
    debug = os.environ.get("PLANNER_DEBUG") == "1"
    try:
        rv = app(args=argv, standalone_mode=False)
        # with standalone_mode=False, an explicit typer.Exit(code) comes back as the return value
        return int(rv) if isinstance(rv, int) else EXIT_OK
    except typer.Exit as e:  # explicit exits (plan check)
        return int(e.exit_code)
    except PlannerError as e:
        from rich.markup import escape

        if isinstance(e, InfeasibleError):
            err.print("[red]" + escape(str(e)) + "[/]")
        else:
            err.print("[red]error:[/] " + escape(str(e)))
        return e.exit_code
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    except typer.Abort:
        err.print("aborted")
        return 130
    except Exception as e:
        # usage errors of the command-line parser (typer vendors click; match by shape, not by import)
        if hasattr(e, "show") and hasattr(e, "exit_code") and type(e).__name__.endswith(
            ("UsageError", "BadParameter", "MissingParameter", "NoSuchOption", "BadOptionUsage", "BadArgumentUsage",
             "ClickException", "FileError")
        ):
            e.show(file=sys.stderr)
            return EXIT_INPUT
        if debug:
            raise
        from rich.markup import escape

        err.print(f"[red]internal error:[/] {type(e).__name__}: {escape(str(e))}\n(set PLANNER_DEBUG=1 for a traceback, and please report it)")
        return EXIT_INTERNAL


def _entry() -> None:  # pragma: no cover
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    _entry()

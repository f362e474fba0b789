"""The ``plan`` command line.

Exit codes (also in ``plan --help`` and the README): 0 success; 1 internal error, or ``plan check``
found violations; 2 invalid input or usage; 3 infeasible (explained); 4 no feasible plan within
the limits; 129, 130, 143 ended by SIGHUP, SIGINT (Ctrl-C) or SIGTERM (no output written); 141
standard output closed early (a broken pipe).

Standard output carries only the command's result (a plan, a report, JSON): the process's file
descriptor 1 is pointed at standard error for everything else, so whatever a solver library
prints goes there, and the result is written through a private copy of the original descriptor.
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
from .io import write_stdout
from .scenario import Objective as ObjectiveOpt
from .scenario import TieBreak as TieBreakOpt

err = Console(stderr=True, highlight=False, soft_wrap=True)

HELP = """Plan LLM serving on heterogeneous, geo-distributed GPU fleets (MILP on HiGHS).

Exit codes: 0 success; 1 internal error (or `plan check` found violations); 2 invalid input or
usage; 3 infeasible (an explanation is printed); 4 no feasible plan within the time limit;
130 interrupted (Ctrl-C), 143 terminated (SIGTERM), 129 hung up (SIGHUP): nothing is written;
141 standard output closed early."""

EXIT_SIGNAL = {"SIGHUP": 129, "SIGINT": 130, "SIGTERM": 143}
EXIT_BROKEN_PIPE = 141


class Terminated(BaseException):
    """Raised in the main thread by the SIGTERM / SIGHUP handlers of the command line."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name

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


def _out(**kw) -> Console:
    """A console on standard output (a closed pipe ends the command with exit 141, quietly)."""
    from .io import SafeStdout

    kw.setdefault("soft_wrap", True)
    return Console(file=SafeStdout(), highlight=False, **kw)


def _emit_json(text: str, output: Optional[Path]) -> None:
    from .io import atomic_write_text, write_stdout

    if output is None or str(output) == "-":
        write_stdout(text)
    else:
        atomic_write_text(output, text)


ALLOW_DIR_HELP = ("Let the scenario's table paths point into this folder too (repeatable); by default they "
                  "must lie inside the scenario's own folder.")


def _finite(name: str, value: Optional[float], positive: bool = False, minimum: Optional[float] = None) -> None:
    """Every numeric option is finite (no nan/inf), and in range."""
    import math

    if value is None:
        return
    if not math.isfinite(value):
        raise InputError(f"{name} must be a finite number, got {value}")
    if positive and value <= 0:
        raise InputError(f"{name} must be positive, got {value:g}")
    if minimum is not None and value < minimum:
        raise InputError(f"{name} must be >= {minimum:g}, got {value:g}")


def _scenario_for_plan(plan, plan_file: Path, scenario: Optional[Path], allow_dir: Optional[list[Path]]):
    """The scenario a plan is checked or simulated against: --scenario, else the one the plan records.

    Refused (exit 2) when the plan records none, or when the scenario's fingerprint differs."""
    from .errors import Problem
    from .loading import load_scenario

    where = "--scenario" if scenario is not None else f"{plan_file}: scenario.source"
    if scenario is None:
        src = plan.scenario.source
        if src is None:
            raise InputError([Problem(str(plan_file), "the plan records no scenario file (it was made from a "
                                                      "scenario built in memory): give --scenario")])
        if src != "<default>" and not Path(src).exists():
            raise InputError([Problem(where, f"the plan's scenario {src} does not exist here: give --scenario")])
        scenario = None if src == "<default>" else Path(src)
    sc = load_scenario(scenario, allow_dirs=allow_dir or ())
    if sc.fingerprint != plan.scenario.fingerprint:
        raise InputError([Problem(where, f"the plan was made for another scenario: the plan's fingerprint is "
                                         f"{plan.scenario.fingerprint[:16]}..., {sc.source} has {sc.fingerprint[:16]}... "
                                         "(a table or the document changed since the plan was made?)")],
                         "scenario does not match the plan")
    return sc


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
    allow_dir: Optional[list[Path]] = typer.Option(None, "--allow-dir", help=ALLOW_DIR_HELP),
):
    """Solve a scenario and write the serving plan (JSON on stdout or -o; summary on stderr)."""
    from .io import check_outputs
    from .loading import load_scenario
    from .solving import solve as _solve

    _finite("--budget", budget, minimum=0)
    _finite("--carbon-cap", carbon_cap, minimum=0)
    _finite("--time-limit", time_limit, positive=True)
    _finite("--mip-gap", mip_gap, minimum=0)
    if mip_gap >= 1:
        raise InputError(f"--mip-gap must be below 1, got {mip_gap:g}")
    if threads is not None and threads < 1:
        raise InputError("--threads must be >= 1")
    if write_model is not None and write_model.suffix.lower() not in (".mps", ".lp"):
        raise InputError(f"--write-model: {write_model}: use a .mps or .lp suffix")
    if output is not None and str(output) == "-":
        output = None
    check_outputs({"-o": output, "--write-model": write_model})  # before loading: fail fast
    sc = load_scenario(scenario, allow_dirs=allow_dir or ())
    check_outputs({"-o": output, "--write-model": write_model}, sc.input_files)
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
            write_stdout(json.dumps(e.explanation.to_dict(), indent=1) + "\n")
        raise
    finally:
        if live is not None:
            live.stop()
    _emit_json(plan.to_json(), output)
    for w in plan.warnings:
        err.print(f"[yellow]warning:[/] {_esc(w)}")
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
    print_summary(plan, _out(), slot)


@app.command()
def check(
    plan_file: Path = typer.Argument(..., metavar="PLAN.json"),
    scenario: Optional[Path] = typer.Option(None, "--scenario", "-s", help="Scenario the plan was made for (default: the one the plan records)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    allow_dir: Optional[list[Path]] = typer.Option(None, "--allow-dir", help=ALLOW_DIR_HELP),
):
    """Independently verify a plan against its scenario. Exit 0 if it holds, 1 if not."""
    from .checker import check as _check
    from .checker import read_plan

    plan = read_plan(plan_file)
    sc = _scenario_for_plan(plan, plan_file, scenario, allow_dir)
    rep = _check(plan_file, sc)
    if as_json:
        write_stdout(json.dumps(rep.to_dict(), indent=1) + "\n")
    else:
        _out().print(rep.render())
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
    scenario: Optional[Path] = typer.Option(None, "--scenario", "-s", help="Scenario the plan was made for (default: the one the plan records)."),
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
    allow_violations: bool = typer.Option(False, "--allow-violations", help="Simulate a plan that fails `plan check` (with a warning) instead of refusing it."),
    allow_dir: Optional[list[Path]] = typer.Option(None, "--allow-dir", help=ALLOW_DIR_HELP),
):
    """Simulate a plan: replay traffic against its fleet (continuous batching, same performance model) and
    report latency percentiles, SLO attainment, energy, carbon, cost and fairness next to the plan's figures."""
    from .checker import check as _check
    from .checker import read_plan
    from .errors import Problem
    from .io import check_outputs
    from .simulate import render_report
    from .simulate import simulate as _simulate

    _finite("--load-scale", load_scale, positive=True)
    _finite("--minutes", minutes, positive=True)
    if output is not None and str(output) == "-":
        output, as_json = None, True
    trace_files = [t.split("=", 1)[0] for t in (trace or [])]
    check_outputs({"-o": output}, [plan_file, *trace_files])
    plan = read_plan(plan_file)
    sc = _scenario_for_plan(plan, plan_file, scenario, allow_dir)
    check_outputs({"-o": output}, [plan_file, *trace_files, *sc.input_files])
    rep_check = _check(plan, sc)
    if not rep_check.ok:
        n = len(rep_check.violations)
        msg = (f"the plan fails `plan check` ({n} violation{'s' if n != 1 else ''}, e.g. "
               f"{rep_check.violations[0].message[:200]})")
        if not allow_violations:
            raise InputError([Problem(str(plan_file), msg + "; pass --allow-violations to simulate it anyway")],
                             "plan fails the checker")
        err.print(f"[yellow]warning:[/] {_esc(msg)}")
    rep = _simulate(plan, sc, traces=trace or None, policy=policy.value, seed=seed, slots=slots,
                    load_scale=load_scale, minutes=minutes, predict=predict.value, trace_rate=trace_rate.value)
    text = rep.to_json()
    if output is not None:
        _emit_json(text, output)
    if as_json:
        _emit_json(text, None)
    else:
        _out(soft_wrap=False, width=max(Console().width, 150)).print(render_report(rep))


@app.command()
def validate(scenario: Optional[Path] = typer.Argument(None, help="Scenario file or folder (default: embedded)."),
             allow_dir: Optional[list[Path]] = typer.Option(None, "--allow-dir", help=ALLOW_DIR_HELP)):
    """Check a scenario without solving (exit 0 if valid, 2 with every problem listed if not)."""
    from .loading import load_scenario

    sc = load_scenario(scenario, allow_dirs=allow_dir or ())
    for w in sc.warnings:
        err.print(f"[yellow]warning:[/] {w}")
    out = _out()
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
    write_stdout(json.dumps(s, indent=1, sort_keys=True) + "\n")


from .cli_data import data_app  # noqa: E402
from .cli_profile import profile_app  # noqa: E402

app.add_typer(data_app, name="data")
app.add_typer(profile_app, name="profile")


def _version_callback(value: bool):
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version("fleetplan")
        except PackageNotFoundError:  # pragma: no cover - running from a source tree
            v = "unknown"
        write_stdout(f"fleetplan {v}\n")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                       help="Print the version and exit.")):
    """Plan LLM serving on heterogeneous, geo-distributed GPU fleets (MILP on HiGHS)."""


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

        from .io import StdoutClosed

        if isinstance(e, StdoutClosed):
            _drop_stdout()
            return EXIT_BROKEN_PIPE
        if isinstance(e, InfeasibleError):
            err.print("[red]" + escape(str(e)) + "[/]")
        else:
            err.print("[red]error:[/] " + escape(str(e)))
        return e.exit_code
    except KeyboardInterrupt:
        err.print("interrupted: nothing was written")
        return EXIT_SIGNAL["SIGINT"]
    except Terminated as e:
        err.print(f"terminated by {e.name}: nothing was written")
        return EXIT_SIGNAL.get(e.name, 143)
    except typer.Abort:
        err.print("aborted")
        return EXIT_SIGNAL["SIGINT"]
    except BrokenPipeError:
        _drop_stdout()
        return EXIT_BROKEN_PIPE
    except RecursionError:
        err.print("[red]error:[/] the input is nested too deeply")
        return EXIT_INPUT
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


def _drop_stdout() -> None:
    """After a broken pipe: send what is left to /dev/null, so that the exit flush stays quiet."""
    from .io import devnull_onto

    try:
        devnull_onto(sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def isolate_stdout() -> None:
    """Keep the process's stdout for the command's result alone.

    File descriptor 1 is pointed at standard error (a solver library's C code that prints there,
    e.g. highspy's banner, now reaches stderr), and ``sys.stdout`` writes through a private
    duplicate of the original descriptor 1."""
    from .io import devnull_onto

    try:
        if sys.stdout is not None:
            sys.stdout.flush()
        fd = os.dup(1)
    except (OSError, ValueError, AttributeError):
        # no stdout at all: /dev/null on fd 1 (so no file opened later lands there) and for sys.stdout
        devnull_onto(1)
        sys.stdout = open(os.devnull, "w", encoding="utf-8")
        return
    try:
        os.dup2(2, 1)
    except OSError:
        devnull_onto(1)
    sys.stdout = open(fd, "w", encoding="utf-8", buffering=1 if os.isatty(fd) else -1, closefd=True)


def _install_signal_handlers() -> None:
    import signal

    def handler(signum, _frame):
        raise Terminated(signal.Signals(signum).name)

    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None:
            try:
                signal.signal(sig, handler)
            except (ValueError, OSError):  # pragma: no cover - not the main thread
                pass


def run(argv: list[str] | None = None) -> int:
    """The console script: stdout isolated, signals mapped to exit codes, then :func:`main`."""
    isolate_stdout()
    _install_signal_handlers()
    if os.environ.get("PLANNER_DEBUG") != "1":
        import warnings

        warnings.simplefilter("ignore")  # libraries' deprecation notes are not the user's business; bad input
        # is caught by validation, and a solver answer that does not hold is a NumericalError
    code = main(argv)
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except BrokenPipeError:
        _drop_stdout()
        code = EXIT_BROKEN_PIPE
    except (OSError, ValueError):
        pass
    if code in EXIT_SIGNAL.values():
        # solver threads may still be unwinding: end now (outputs are atomic, nothing partial is left)
        sys.stderr.flush()
        os._exit(code)
    return code


def _entry() -> None:  # pragma: no cover
    sys.exit(run())


if __name__ == "__main__":  # pragma: no cover
    _entry()

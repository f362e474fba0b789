"""The ``plan`` command line: the root app, its command groups, error mapping and the console script.

Exit codes (also in ``plan --help`` and the README): 0 success; 1 internal error, or ``plan check``
found violations; 2 invalid input or usage; 3 infeasible (explained); 4 no feasible plan within
the limits; 129, 130, 143 ended by SIGHUP, SIGINT (Ctrl-C) or SIGTERM (no output written); 141
standard output closed early (a broken pipe).

Standard output carries only the command's result (a plan, a report, JSON): the process's file
descriptor 1 is pointed at standard error for everything else, so whatever a solver library
prints goes there, and the result is written through a private copy of the original descriptor.
"""

from __future__ import annotations

import os
import sys

import typer
from rich.markup import escape

from planner.cli import plans, scenarios
from planner.cli.console import err
from planner.cli.data import data_app
from planner.cli.process import (
    EXIT_BROKEN_PIPE,
    EXIT_SIGNAL,
    Terminated,
    drop_stdout,
    install_signal_handlers,
    isolate_stdout,
)
from planner.cli.profile import profile_app
from planner.errors import EXIT_INPUT, EXIT_INTERNAL, EXIT_OK, InfeasibleError, PlannerError
from planner.io import StdoutClosed, write_stdout

HELP = """Plan LLM serving on heterogeneous, geo-distributed GPU fleets (MILP on HiGHS).

Exit codes: 0 success; 1 internal error (or `plan check` found violations); 2 invalid input or
usage; 3 infeasible (an explanation is printed); 4 no feasible plan within the time limit;
130 interrupted (Ctrl-C), 143 terminated (SIGTERM), 129 hung up (SIGHUP): nothing is written;
141 standard output closed early."""


app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  rich_markup_mode=None)
for _command in (plans.solve, plans.show, plans.check, plans.simulate,
                 scenarios.validate, scenarios.init, scenarios.generate, scenarios.schema):
    app.command()(_command)
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
        if isinstance(e, StdoutClosed):
            drop_stdout()
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
        drop_stdout()
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

        err.print(f"[red]internal error:[/] {type(e).__name__}: {escape(str(e))}\n(set PLANNER_DEBUG=1 for a traceback, and please report it)")
        return EXIT_INTERNAL


def run(argv: list[str] | None = None) -> int:
    """The console script: stdout isolated, signals mapped to exit codes, then :func:`main`."""
    isolate_stdout()
    install_signal_handlers()
    if os.environ.get("PLANNER_DEBUG") != "1":
        import warnings

        warnings.simplefilter("ignore")  # libraries' deprecation notes are not the user's business; bad input
        # is caught by validation, and a solver answer that does not hold is a NumericalError
    code = main(argv)
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except BrokenPipeError:
        drop_stdout()
        code = EXIT_BROKEN_PIPE
    except (OSError, ValueError):
        pass
    if code in EXIT_SIGNAL.values():
        # solver threads may still be unwinding: end now (outputs are atomic, nothing partial is left)
        sys.stderr.flush()
        os._exit(code)
    return code

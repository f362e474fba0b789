"""Error hierarchy and the CLI's documented exit codes.

Every error the library raises on purpose derives from :class:`PlannerError`; the CLI maps each
subclass to an exit code and prints its message without a traceback.

=====  ==========================================================
code   meaning
=====  ==========================================================
0      success (for ``plan check``: the plan holds)
1      internal error (a bug: please report it); ``plan check``: violations found
2      invalid input or usage (scenario, plan file, options)
3      the scenario is infeasible (an explanation is printed)
4      no feasible plan was found within the time limit
5      numerical failure: the solver's answer did not verify (see the message)
129    ended by SIGHUP (command line only; nothing written)
130    interrupted by Ctrl-C / SIGINT (command line only; nothing written)
141    standard output closed early (broken pipe)
143    ended by SIGTERM (command line only; nothing written)
=====  ==========================================================
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_VIOLATIONS = 1
EXIT_INPUT = 2
EXIT_INFEASIBLE = 3
EXIT_NO_SOLUTION = 4
EXIT_NUMERICAL = 5


def bullet_list(head: str, items: list[str], limit: int, more_hint: str = "") -> str:
    """``head`` then at most ``limit`` items as ``  - item`` lines, then how many were left out."""
    lines = [head] + [f"  - {it}" for it in items[:limit]]
    if len(items) > limit:
        lines.append(f"  ... and {len(items) - limit} more{more_hint}")
    return "\n".join(lines)


class PlannerError(Exception):
    """Base class of every error the planner raises deliberately."""

    exit_code = EXIT_INTERNAL


@dataclass(frozen=True)
class Problem:
    """One problem found in an input: where (file and field or row) and what."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


class InputError(PlannerError):
    """Invalid input or usage. Carries every problem found, each with its location."""

    exit_code = EXIT_INPUT

    def __init__(self, problems: list[Problem] | str, title: str = "invalid input"):
        if isinstance(problems, str):
            problems = [Problem("", problems)]
        self.problems = list(problems)
        self.title = title
        super().__init__(self.render())

    def render(self, limit: int = 50) -> str:
        n = len(self.problems)
        return bullet_list(f"{self.title} ({n} problem{'s' if n != 1 else ''}):", [str(p) for p in self.problems], limit)


class ScenarioError(InputError):
    """The scenario (YAML/JSON file or one of its tables) is invalid."""

    def __init__(self, problems: list[Problem] | str, title: str = "invalid scenario"):
        super().__init__(problems, title)


class PlanFileError(InputError):
    """A plan file given to ``plan show`` or ``plan check`` cannot be read."""

    def __init__(self, problems: list[Problem] | str, title: str = "invalid plan file"):
        super().__init__(problems, title)


class InfeasibleError(PlannerError):
    """The scenario admits no plan. ``explanation`` says why, in domain words."""

    exit_code = EXIT_INFEASIBLE

    def __init__(self, explanation):  # explanation: planner.optimize.explain.Explanation
        self.explanation = explanation
        super().__init__(explanation.render())


class NoSolutionError(PlannerError):
    """The solver stopped (time limit, interrupt) before finding any feasible plan."""

    exit_code = EXIT_NO_SOLUTION


class SolverError(PlannerError):
    """The solver failed or returned a status the planner cannot use."""

    exit_code = EXIT_INTERNAL


class NumericalError(SolverError):
    """The solver reported a solution that does not verify: a row it claims to satisfy is violated
    when recomputed, or the objective lies below the bound it proved. The inputs are usually badly
    scaled (values many orders of magnitude apart)."""

    exit_code = EXIT_NUMERICAL

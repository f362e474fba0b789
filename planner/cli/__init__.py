"""The ``plan`` command line; nothing outside this package imports it.

* :mod:`~planner.cli.app`: the root app, its command groups, error-to-exit-code mapping, :func:`run`;
* :mod:`~planner.cli.console`: the console and output helpers every command shares;
* :mod:`~planner.cli.process`: standard output kept for the result, signals to exit codes;
* one module per command group: :mod:`~planner.cli.plans` (solve, show, check, simulate),
  :mod:`~planner.cli.scenarios` (validate, init, generate, schema), :mod:`~planner.cli.data`
  (``plan data``), :mod:`~planner.cli.profile` (``plan profile``).

Exit codes are listed in :mod:`planner.errors` and ``plan --help``.
"""

from planner.cli.app import app, main, run

__all__ = ["app", "main", "run"]

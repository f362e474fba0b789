"""Plans verified by simulation: simulate, derate the (config, class) capacities that missed their SLOs,
re-solve, until every (class, origin) meets its attainment target (:mod:`~planner.verify.loop`).

This room sits above ``optimize`` (the solves) and ``sim`` (the simulations) and ties them together.
"""

from planner.verify.loop import verify

__all__ = ["verify"]

"""Verifying a plan by discrete-event simulation (docs/simulation.md).

Entities, scheduler and metrics apart:

* :mod:`~planner.sim.arrivals`: the requests (Poisson at the planned rates, or replayed traces);
* :mod:`~planner.sim.fleet`: the plan's deployments and routes as simulated replicas and splits;
* :mod:`~planner.sim.engine`: the event loop, continuous batching and the queue policies;
* :mod:`~planner.sim.report`: the report's schema, its metrics and tables;
* :mod:`~planner.sim.orchestrate`: :func:`simulate`, slot by slot, tying them together.
"""

from planner.sim.arrivals import TraceSource
from planner.sim.orchestrate import POLICIES, simulate
from planner.sim.report import SimReport, render_report

__all__ = ["simulate", "SimReport", "TraceSource", "render_report", "POLICIES"]

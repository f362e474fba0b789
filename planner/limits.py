"""Resource limits: how large an input, a model or a simulation may be before it is refused.

Each limit has a default and an environment variable that overrides it (read at each use, so an
orchestrator may change them between calls). A value that is not a positive number is an input
error naming the variable.

=============================  =================  ====================================================
variable                       default            bounds
=============================  =================  ====================================================
``PLANNER_MAX_FILE_MB``        1024               the size of one file read (scenario, table, plan,
                                                  trace, profile result)
``PLANNER_MAX_ROWS``           20,000,000         the rows of one table or trace
``PLANNER_MAX_DOCUMENT_NODES`` 5,000,000          values in a scenario or plan document once YAML
                                                  aliases are expanded (an "alias bomb" is refused)
``PLANNER_MAX_MODEL_NONZEROS`` 60,000,000         coefficients of the MILP, estimated before building
``PLANNER_MAX_SIM_REQUESTS``   50,000,000         requests one ``plan simulate`` run may generate
=============================  =================  ====================================================
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from planner.errors import InputError

DEFAULTS = {
    "PLANNER_MAX_FILE_MB": 1024.0,
    "PLANNER_MAX_ROWS": 20_000_000,
    "PLANNER_MAX_DOCUMENT_NODES": 5_000_000,
    "PLANNER_MAX_MODEL_NONZEROS": 60_000_000,
    "PLANNER_MAX_SIM_REQUESTS": 50_000_000,
}


@dataclass(frozen=True)
class Limits:
    max_file_mb: float
    max_rows: int
    max_document_nodes: int
    max_model_nonzeros: int
    max_sim_requests: int

    @property
    def max_file_bytes(self) -> int:
        return int(self.max_file_mb * 2**20)


def _value(name: str) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return DEFAULTS[name]
    try:
        v = float(raw)
    except ValueError:
        v = math.nan
    if not math.isfinite(v) or v <= 0:
        raise InputError(f"environment variable {name}: must be a positive number, got {raw[:40]!r}")
    return v


def limits() -> Limits:
    """The limits in force (defaults, overridden by the environment)."""
    return Limits(
        max_file_mb=_value("PLANNER_MAX_FILE_MB"),
        max_rows=int(_value("PLANNER_MAX_ROWS")),
        max_document_nodes=int(_value("PLANNER_MAX_DOCUMENT_NODES")),
        max_model_nonzeros=int(_value("PLANNER_MAX_MODEL_NONZEROS")),
        max_sim_requests=int(_value("PLANNER_MAX_SIM_REQUESTS")),
    )


def expanded_size(doc, limit: int) -> int:
    """Number of values in ``doc`` as if every shared (aliased) node were copied; stops past ``limit``.

    Linear in the number of distinct nodes: sizes of shared nodes are memoised by identity.
    """
    memo: dict[int, int] = {}

    def size(x) -> int:
        if isinstance(x, (dict, list, tuple)):
            k = id(x)
            if k in memo:
                return memo[k]
            memo[k] = 1  # a cycle (impossible from YAML safe_load, cheap to guard) counts once
            items = x.items() if isinstance(x, dict) else enumerate(x)
            n = 1
            for key, v in items:
                n += size(v) + (1 if isinstance(x, dict) else 0)
                if n > limit:
                    break
            memo[k] = n
            return n
        return 1

    # iterative depth guard: Python's recursion limit protects against absurd depth (caught by callers)
    return size(doc)

"""A backend-neutral mixed-integer linear model.

The constraint families in :mod:`formulations.constraints` write their rows here as sparse triplets,
block by block, with named, labelled indices. The backends (HiGHS, Pyomo, PuLP) each turn the same
:class:`LinearModel` into their native model. Nothing in this package imports a solver library.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

INF = float("inf")


def snap(a) -> np.ndarray:
    """Round to 12 significant digits, so that any model file written with 15 or more digits reads
    back to exactly the same doubles (a written model then reproduces the solve bit for bit)."""
    a = np.asarray(a, dtype=float)
    out = a.copy()
    fin = np.isfinite(out) & (out != 0)
    if fin.any():
        out[fin] = np.array([float(f"{v:.12g}") for v in out[fin]])
    return out


@dataclass
class VarBlock:
    """A family of variables indexed by a tuple of dimension codes."""

    name: str
    dims: tuple[str, ...]
    index: np.ndarray  # [n, len(dims)] int codes into LinearModel.labels[dim]
    lower: np.ndarray
    upper: np.ndarray
    integer: bool
    start: int
    doc: str = ""

    @property
    def size(self) -> int:
        return len(self.lower)

    @property
    def cols(self) -> np.ndarray:
        return np.arange(self.start, self.start + self.size)


@dataclass
class ConBlock:
    """A family of constraints ``lower <= A x <= upper``, one row per index tuple."""

    name: str
    dims: tuple[str, ...]
    index: np.ndarray  # [m, len(dims)]
    rows: np.ndarray  # local row numbers 0..m-1 of each nonzero
    cols: np.ndarray  # global column of each nonzero
    vals: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    start: int
    doc: str = ""

    @property
    def size(self) -> int:
        return len(self.lower)


@dataclass
class LinearModel:
    """Variables, constraints and named linear expressions (objective candidates)."""

    labels: dict[str, list[str]]
    """Human names of every dimension's codes, e.g. labels['region'][3] == 'eu-west'."""
    var_blocks: list[VarBlock] = field(default_factory=list)
    con_blocks: list[ConBlock] = field(default_factory=list)
    expressions: dict[str, np.ndarray] = field(default_factory=dict)
    """Named linear expressions over all columns (carbon_kg, energy_kwh, cost_usd, ...)."""
    ncols: int = 0
    nrows: int = 0

    # ---- building
    def add_vars(self, name, dims, index, lower, upper, integer=False, doc="") -> VarBlock:
        index = np.asarray(index, dtype=np.int64).reshape(-1, len(dims))
        n = index.shape[0]
        blk = VarBlock(
            name, tuple(dims), index,
            snap(np.broadcast_to(np.asarray(lower, float), (n,))),
            snap(np.broadcast_to(np.asarray(upper, float), (n,))),
            integer, self.ncols, doc,
        )
        self.var_blocks.append(blk)
        self.ncols += n
        return blk

    def add_constraints(self, name, dims, index, rows, cols, vals, lower, upper, doc="") -> ConBlock | None:
        index = np.asarray(index, dtype=np.int64).reshape(-1, len(dims))
        m = index.shape[0]
        if m == 0:
            return None
        rows = np.asarray(rows, np.int64)
        cols = np.asarray(cols, np.int64)
        vals = np.asarray(vals, float)
        keep = vals != 0
        blk = ConBlock(
            name, tuple(dims), index, rows[keep], cols[keep], snap(vals[keep]),
            snap(np.broadcast_to(np.asarray(lower, float), (m,))),
            snap(np.broadcast_to(np.asarray(upper, float), (m,))),
            self.nrows, doc,
        )
        self.con_blocks.append(blk)
        self.nrows += m
        return blk

    def add_expression(self, name: str, cols, vals) -> np.ndarray:
        vec = np.zeros(self.ncols)
        np.add.at(vec, np.asarray(cols, np.int64), np.asarray(vals, float))
        vec = snap(vec)
        self.expressions[name] = vec
        return vec

    # ---- access
    def block(self, name: str) -> VarBlock:
        for b in self.var_blocks:
            if b.name == name:
                return b
        raise KeyError(name)

    def con_block(self, name: str) -> ConBlock | None:
        for b in self.con_blocks:
            if b.name == name:
                return b
        return None

    @property
    def lower(self) -> np.ndarray:
        return np.concatenate([b.lower for b in self.var_blocks]) if self.var_blocks else np.zeros(0)

    @property
    def upper(self) -> np.ndarray:
        return np.concatenate([b.upper for b in self.var_blocks]) if self.var_blocks else np.zeros(0)

    @property
    def integrality(self) -> np.ndarray:
        return np.concatenate([np.full(b.size, b.integer) for b in self.var_blocks]) if self.var_blocks else np.zeros(0, bool)

    @property
    def row_lower(self) -> np.ndarray:
        return np.concatenate([b.lower for b in self.con_blocks]) if self.con_blocks else np.zeros(0)

    @property
    def row_upper(self) -> np.ndarray:
        return np.concatenate([b.upper for b in self.con_blocks]) if self.con_blocks else np.zeros(0)

    def triplets(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All nonzeros as global (row, col, value)."""
        if not self.con_blocks:
            z = np.zeros(0, np.int64)
            return z, z, np.zeros(0)
        r = np.concatenate([b.rows + b.start for b in self.con_blocks])
        c = np.concatenate([b.cols for b in self.con_blocks])
        v = np.concatenate([b.vals for b in self.con_blocks])
        return r, c, v

    def csc(self):
        """Constraint matrix in CSC form: (start[ncols+1], index, value)."""
        r, c, v = self.triplets()
        order = np.lexsort((r, c))
        r, c, v = r[order], c[order], v[order]
        start = np.zeros(self.ncols + 1, np.int64)
        np.add.at(start, c + 1, 1)
        return np.cumsum(start), r, v

    def csr_rows(self):
        """Constraint matrix in CSR form: (start[nrows+1], col index, value)."""
        r, c, v = self.triplets()
        order = np.lexsort((c, r))
        r, c, v = r[order], c[order], v[order]
        start = np.zeros(self.nrows + 1, np.int64)
        np.add.at(start, r + 1, 1)
        return np.cumsum(start), c, v

    def index_label(self, dims, codes) -> str:
        return ",".join(self.labels[d][int(i)] if d in self.labels else str(int(i)) for d, i in zip(dims, codes))

    def var_names(self, safe: bool = False) -> list[str]:
        """Names of every column, e.g. ``replicas[us-west,llama-8b|H100|tp1|pp1|1980,3]``."""
        out = []
        for b in self.var_blocks:
            for row in b.index:
                out.append(_name(b.name, self.index_label(b.dims, row), safe))
        return out

    def row_names(self, safe: bool = False) -> list[str]:
        out = []
        for b in self.con_blocks:
            for row in b.index:
                out.append(_name(b.name, self.index_label(b.dims, row), safe))
        return out

    def row_family(self, row: int) -> tuple[ConBlock, int]:
        for b in self.con_blocks:
            if b.start <= row < b.start + b.size:
                return b, row - b.start
        raise IndexError(row)


def _name(block: str, label: str, safe: bool) -> str:
    if not safe:
        return f"{block}[{label}]"
    # solver-file-safe: letters, digits and _ only (LP/MPS writers and PuLP reject many characters)
    clean = "".join(ch if ch.isalnum() else "_" for ch in label)
    return f"{block}__{clean}"

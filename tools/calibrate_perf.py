"""Calibrate the performance and DVFS model on the public measurements in shared/data/perf.

    python tools/calibrate_perf.py [--shared PATH]

Reads ML.ENERGY v2/v3, Splitwise, Perseus and TensorRT-LLM tables (never copied into the project),
fits the parameters of planner/perf/model.py and writes
  data/perf_calibration.json   fitted parameters, read by the library at run time
  data/calibration_errors.csv  held-out errors per source and metric (docs/performance-model.md)
Deterministic: running it twice gives the same bytes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from planner.perf.calibration import calibrate, dump_calibration


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=HERE.parent.parent / "shared" / "data",
                    help="raw public data folder (default: ../shared/data next to the repository)")
    ap.add_argument("--out", type=Path, default=HERE.parent / "data", help="where to write the two files (default: data/)")
    args = ap.parse_args(argv)
    if not (args.shared / "perf").is_dir():
        print(f"error: {args.shared / 'perf'} not found (pass --shared)", file=sys.stderr)
        return 2
    cal, table = calibrate(args.shared)
    (args.out / "perf_calibration.json").write_text(dump_calibration(cal))
    table.to_csv(args.out / "calibration_errors.csv", index=False, lineterminator="\n")
    print(table.to_string(index=False))
    print(json.dumps({k: cal[k] for k in ("gpu", "default_gpu", "software", "power", "dvfs", "expected_error")},
                     indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Re-run the calibration on the raw public data (when present) and hold it to its documented bounds.

Skipped when ../shared/data is absent: the library itself only needs data/perf_calibration.json.
"""

import io

import pandas as pd
import pytest
from conftest import SHARED

from planner.perf import model as pm

pytestmark = pytest.mark.skipif(not (SHARED / "perf").is_dir(), reason="raw data (shared/data/perf) not available")


@pytest.fixture(scope="module")
def calibrated():
    from planner.perf.calibration import calibrate

    return calibrate(SHARED)


def test_heldout_errors_within_bounds(calibrated):
    _, table = calibrated
    seen = set()
    for r in table.itertuples(index=False):
        key = (r.source, r.metric)
        if key in pm.ERROR_BOUNDS:
            med, p90 = pm.ERROR_BOUNDS[key]
            assert r.median_ape <= med, f"{key}: held-out median error {r.median_ape} > bound {med}"
            assert r.p90_ape <= p90, f"{key}: held-out p90 error {r.p90_ape} > bound {p90}"
            seen.add(key)
    assert seen == set(pm.ERROR_BOUNDS), f"no error computed for {set(pm.ERROR_BOUNDS) - seen}"


def test_vllm_below_tensorrt_upper_bound(calibrated):
    _, table = calibrated
    trt = table[table.source == "tensorrt-llm"].iloc[0]
    assert trt.n > 10
    assert trt.bias < pm.TRT_RATIO_MAX  # bias column holds the largest ratio
    assert pm.TRT_RATIO_MAX <= 0.6  # observed max 0.50: a looser bound would not catch a regression


def test_committed_files_match_the_script(calibrated):
    from planner.perf.calibration import dump_calibration

    cal, table = calibrated
    assert dump_calibration(cal) == pm._data_text("perf_calibration.json"), \
        "data/perf_calibration.json is stale: run python tools/calibrate_perf.py"
    committed = pd.read_csv(io.StringIO(pm._data_text("calibration_errors.csv")))
    pd.testing.assert_frame_equal(committed, table.reset_index(drop=True), check_dtype=False)


def test_per_gpu_expected_error_and_sources(calibrated):
    """A100-80GB (Splitwise only) carries the ML.ENERGY throughput error combined with its own held-out
    Splitwise error; GPUs with ML.ENERGY measurements carry the throughput error."""
    import math

    import numpy as np

    cal, _ = calibrated
    meas = cal["expected_error"]["measured"]
    a = cal["gpu"]["A100-80GB"]
    assert a["sources"] == ["splitwise"] and a["expected_error"] > meas
    assert a["expected_error"] == pytest.approx(math.hypot(meas, 0.116), abs=0.01)
    for g in ("A100-40GB", "B200", "H100-80GB"):
        assert cal["gpu"][g]["expected_error"] == meas and any(s.startswith("ml-energy") for s in cal["gpu"][g]["sources"])
    assert np.isfinite(meas)

"""The performance, power and DVFS model, its calibration, and the profile table's importers and estimator.

* :mod:`~planner.perf.model`: a replica's step times, capacity, latencies and power from datasheet
  figures and fitted parameters (``data/perf_calibration.json``), at any GPU clock;
* :mod:`~planner.perf.calibration`: the fit of those parameters to public measurements (run by
  ``tools/calibrate_perf.py``; held to its documented bounds by the tests);
* :mod:`~planner.perf.importers`: profiled runs (vLLM benchmark JSON, ML.ENERGY, CSV) into profile rows;
* :mod:`~planner.perf.estimate`: profile rows the scenario lacks, estimated by the model.
"""

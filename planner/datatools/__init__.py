"""Scenario tables from users' own data: carbon-intensity exports and request traces.

* :mod:`~planner.datatools.carbon`: Electricity Maps and EIA-930 exports into ``carbon_intensity``;
* :mod:`~planner.datatools.traces`: request traces into ``demand`` and request shapes;
* :mod:`~planner.datatools.common`: timestamps, numeric columns and CSV output they share.
"""

from planner.datatools.carbon import (
    EIA_FACTORS,
    EIA_FUELS,
    EIA_OFFICIAL_FUELS,
    FORMATS,
    SIGNALS,
    carbon_series,
    carbon_table,
    detect_carbon_format,
    parse_region_map,
)
from planner.datatools.common import TS_FMT, table_csv
from planner.datatools.traces import (
    MAX_ROWS,
    MAX_SLOTS,
    TRACE_HEADERS,
    Bucket,
    Trace,
    assign_classes,
    demand_table,
    load_trace,
    parse_bucket,
    trace_shapes,
)

__all__ = [
    "EIA_FACTORS", "EIA_FUELS", "EIA_OFFICIAL_FUELS", "FORMATS", "SIGNALS", "carbon_series", "carbon_table",
    "detect_carbon_format", "parse_region_map", "TS_FMT", "table_csv", "MAX_ROWS", "MAX_SLOTS", "TRACE_HEADERS",
    "Bucket", "Trace", "assign_classes", "demand_table", "load_trace", "parse_bucket", "trace_shapes",
]

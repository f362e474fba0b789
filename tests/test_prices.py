"""GPU price table from the shared catalogs (tools/prices.py); skipped without /work/shared/data.

Hand-computed rows (raw catalog lines quoted):

* azure ``Standard_ND96amsr_A100_v4,A100-80GB,8,96,1800,A100-80GB,32.77,8.5202,eastus,V2``:
  on-demand 32.77 / 8 = 4.09625, spot 8.5202 / 8 = 1.065025 -> 1.06503.
* gcp ``,,,L4,8,...,us-central1,us-central1-a,4.48032,1.8744`` (GPU-only). Host g2-standard-96 =
  96 x 0.024988 + 384 x 0.002927 = 2.398848 + 1.123968 = 3.522816 (us-central1 is the reference
  region, factor 1). On-demand (4.48032 + 3.522816) / 8 = 1.000392 -> 1.00039; spot = 1.8744 / 8 x
  (1 + 0.440352 / 0.56004) = 0.2343 x 1.786287 = 0.418527 -> 0.41853.
* gcp ``,,,H100,8,...,us-east4,us-east4-a,78.37241,23.9136``: GPU-only 9.79655 per GPU; host
  a3-highgpu-8g = 8 x 1.18251 (us-east4 is the reference). On-demand 9.79655 + 1.18251 = 10.97906
  (= the full-VM a3-highgpu-1g price in the upstream catalog); spot 2.9892 x (1 + 1.18251 / 9.79655)
  = 3.35002.
* lambda ``gpu_8x_h100_sxm5,H100,8.0,...,31.92,us-east-1,...``: 31.92 / 8 = 3.99, no spot.
* azure ``Standard_ND96isr_H200_v5,H200,8,...,84.8,84.8,eastus2,V2``: 84.8 / 8 = 10.6; spot equals
  on-demand, so spot is NaN (rule 3).
* gcp H100 us-central1 GPU-only 4.20076 with spot 4.0013 (ratio 0.95 > 0.6): dropped (rule 1).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
from conftest import SHARED

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

pytestmark = pytest.mark.skipif(not (SHARED / "prices" / "gcp_gpu_vms.csv").is_file(), reason="shared data missing")


@pytest.fixture(scope="module")
def prices():
    from tools.prices import gpu_prices

    return gpu_prices(SHARED)


def row(df, provider, region, gpu):
    r = df[(df.provider == provider) & (df.cloud_region == region) & (df.gpu == gpu)]
    assert len(r) == 1, (provider, region, gpu, r)
    return r.iloc[0]


def test_columns_and_one_row_per_key(prices):
    assert list(prices.columns) == ["provider", "cloud_region", "gpu", "on_demand_usd_per_gpu_hour",
                                    "spot_usd_per_gpu_hour", "instance_type", "source"]
    assert not prices.duplicated(["provider", "cloud_region", "gpu"]).any()
    assert (prices.on_demand_usd_per_gpu_hour > 0).all()
    assert prices.source.str.len().gt(20).all()
    sp = prices.spot_usd_per_gpu_hour.dropna()
    assert (sp < prices.loc[sp.index, "on_demand_usd_per_gpu_hour"]).all()


def test_azure_row(prices):
    r = row(prices, "azure", "eastus", "A100-80GB")
    assert r.instance_type == "Standard_ND96amsr_A100_v4"
    assert r.on_demand_usd_per_gpu_hour == pytest.approx(4.09625)
    assert r.spot_usd_per_gpu_hour == pytest.approx(1.06503)


def test_gcp_l4_includes_host(prices):
    r = row(prices, "gcp", "us-central1", "L4")
    assert r.instance_type == "g2-standard-96"
    assert r.on_demand_usd_per_gpu_hour == pytest.approx(1.00039)
    assert r.spot_usd_per_gpu_hour == pytest.approx(0.41853)
    assert "host g2-standard-96" in r.source


def test_gcp_h100_matches_full_vm_price(prices):
    r = row(prices, "gcp", "us-east4", "H100-80GB")
    assert r.instance_type == "a3-highgpu-8g"
    assert r.on_demand_usd_per_gpu_hour == pytest.approx(10.97906)
    assert r.spot_usd_per_gpu_hour == pytest.approx(3.35002)


def test_lambda_and_spot_rules(prices):
    r = row(prices, "lambda", "us-east-1", "H100-80GB")
    assert r.on_demand_usd_per_gpu_hour == pytest.approx(3.99) and math.isnan(r.spot_usd_per_gpu_hour)
    r = row(prices, "azure", "eastus2", "H200")
    assert r.on_demand_usd_per_gpu_hour == pytest.approx(10.6) and math.isnan(r.spot_usd_per_gpu_hour)
    assert "spot price >= on-demand" in r.source


def test_outliers_dropped_and_listed(prices):
    from tools.prices import price_outliers

    out = price_outliers(SHARED)
    h = out[(out.provider == "gcp") & (out.cloud_region == "us-central1") & (out.gpu == "H100-80GB")]
    assert set(h.instance_type) >= {"a3-highgpu-8g"} and h.reason.str.contains("spot").all()
    # the kept us-central1 H100 price is the a3-megagpu one, not the 4.20 GPU-only outlier
    r = row(prices, "gcp", "us-central1", "H100-80GB")
    assert r.instance_type == "a3-megagpu-8g" and r.on_demand_usd_per_gpu_hour > 9
    # no kept GCP H100 price below half the median of the others
    g = prices[(prices.provider == "gcp") & (prices.gpu == "H100-80GB")].on_demand_usd_per_gpu_hour
    assert g.min() > g.median() / 2


def test_deterministic(prices):
    from tools.prices import gpu_prices

    again = gpu_prices(SHARED)
    assert again.to_csv(index=False) == prices.to_csv(index=False)

"""Generate a large, realistic NDJSON feed for the validator benchmark.

Values follow the statistical models the validator checks (indices computed from limits, mean
and sigma; ppm from counts), so a generated feed is valid and plausible, like the bulk of real
feeds: the benchmark measures the normal path, not error reporting.

    python benchmarks/generate_feed.py --records 100000 --out /tmp/feed.ndjson
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SUPPLIER = {
    "name": "Benchmark Präzisionsteile GmbH",
    "identifiers": [{"scheme": "LEI", "code": "529900SQMKRAFTWERK41"}],
    "country": "DE",
}
MONTHS = [f"2026-{m:02d}" for m in range(1, 11)]


def _period(month: str) -> dict[str, Any]:
    year, number = (int(x) for x in month.split("-"))
    end = f"{year + (number == 12):04d}-{number % 12 + 1:02d}-01T00:00:00+01:00"
    return {
        "start": f"{month}-01T00:00:00+01:00",
        "end": end,
        "start_inclusive": True,
        "end_inclusive": False,
    }


def _fresh(month: str) -> dict[str, Any]:
    return {
        "as_of": "2026-11-02T06:00:00+01:00",
        "update_interval": "P1M",
        "next_update_due": "2026-12-03T00:00:00+01:00",
    }


def _link(kind: str, index: int) -> dict[str, Any]:
    """A digest-bound evidence link, as the standard asks every claim to carry."""
    url = f"https://evidence.benchmark.example/{kind}/2026/{index:08d}.csv"
    return {
        "url": url,
        "digest": {"algorithm": "sha-256", "hex_value": hashlib.sha256(url.encode()).hexdigest()},
        "media_type": "text/csv",
        "title": f"Raw {kind} export {index}",
    }


def _assurance(rng: random.Random, index: int) -> dict[str, Any]:
    if rng.random() < 0.5:
        return {"level": "self_declared", "evidence": [_link("report", index)]}
    return {
        "level": "instrumented_feed",
        "assurance_method": "automated_collection",
        "evidence": [_link("telemetry", index)],
    }


def _derivation(index: int, method: str, calculation: str) -> dict[str, Any]:
    return {
        "source_system": {
            "name": "MES Nexus",
            "vendor": "Benchmark IT",
            "software_version": "4.8.2",
        },
        "collection_method": method,
        "calculation": calculation,
        "software": {"name": "qs-STAT", "vendor": "Hexagon", "software_version": "12.1"},
        "computed_at": "2026-11-02T05:00:00+01:00",
        "responsible_role": "Quality engineering",
        "source_data": [_link("measurements", index)],
    }


def _capability(rng: random.Random, index: int, char: dict[str, Any], month: str) -> dict[str, Any]:
    lsl, usl = char["lower_spec_limit"], char["upper_spec_limit"]
    width = usl - lsl
    sigma_w = width / (6 * rng.uniform(1.35, 2.2))
    sigma_o = sigma_w * rng.uniform(1.02, 1.15)
    mean = (lsl + usl) / 2 + rng.uniform(-0.25, 0.25) * 3 * sigma_w
    d = min(usl - mean, mean - lsl)
    n = rng.choice([100, 125, 150, 200])
    return {
        "id": f"cap-{index}",
        "site": char["site"],
        "product": char["product"],
        "characteristic": char["id"],
        "period": _period(month),
        **_fresh(month),
        "assurance": _assurance(rng, index),
        "derivation": _derivation(
            index, "automated_gauge", "ISO 22514-2 indices; sigma within = Rbar/d2, subgroups of 5"
        ),
        "study_type": "ongoing",
        "cp": round(width / (6 * sigma_w), 2),
        "cpk": round(d / (3 * sigma_w), 2),
        "pp": round(width / (6 * sigma_o), 2),
        "ppk": round(d / (3 * sigma_o), 2),
        "process_mean": round(mean, 6),
        "sigma_within": round(sigma_w, 7),
        "sigma_overall": round(sigma_o, 7),
        "sigma_estimator": "rbar_d2",
        "sample_size": n,
        "subgroup_size": 5,
        "subgroup_count": n // 5,
        "distribution": "normal",
        "normality_test": {
            "test_method": "anderson_darling",
            "test_statistic": round(rng.uniform(0.1, 0.7), 3),
            "p_value": round(rng.uniform(0.06, 0.9), 3),
            "passed": True,
        },
        "in_statistical_control": True,
    }


def _defects(rng: random.Random, index: int, product: str, site: str, month: str) -> dict[str, Any]:
    inspected = rng.randint(20_000, 400_000)
    defective = rng.randint(0, 40)
    return {
        "id": f"ppm-{index}",
        "site": site,
        "product": product,
        "period": _period(month),
        **_fresh(month),
        "assurance": _assurance(rng, index),
        "derivation": _derivation(
            index, "customer_report", "ppm = rejected / delivered x 10^6 per customer scorecard"
        ),
        "detection_point": "customer_incoming",
        "counting_rule": "per_unit",
        "inspected_count": inspected,
        "defective_count": defective,
        "ppm": round(defective / inspected * 1e6, 2),
        "defect_categories": [
            {"category": "dimensional", "count": defective // 2},
            {"category": "cosmetic", "count": defective - defective // 2},
        ],
    }


def _delivery(
    rng: random.Random, index: int, product: str, site: str, month: str
) -> dict[str, Any]:
    on_time = round(rng.uniform(90, 100), 1)
    in_full = round(rng.uniform(97, 100), 1)
    return {
        "id": f"otif-{index}",
        "site": site,
        "product": product,
        "period": _period(month),
        **_fresh(month),
        "assurance": _assurance(rng, index),
        "derivation": _derivation(
            index, "system_export", "Order lines received within -0/+3 days of the confirmed date"
        ),
        "date_basis": "committed_date",
        "tolerance_window": {"days_early": 0, "days_late": 3},
        "order_lines_count": rng.randint(50, 3000),
        "on_time_percent": on_time,
        "in_full_percent": in_full,
        "otif_percent": round(min(on_time, in_full) - rng.uniform(0, 1.5), 1),
        "scor_metric": "RL.2.1",
    }


def _lead_time(
    rng: random.Random, index: int, product: str, site: str, month: str
) -> dict[str, Any]:
    median = rng.randint(5, 40)
    p95 = median + rng.randint(2, 20)
    return {
        "id": f"lt-{index}",
        "site": site,
        "product": product,
        "period": _period(month),
        **_fresh(month),
        "assurance": _assurance(rng, index),
        "derivation": _derivation(
            index, "system_export", "Order receipt to goods receipt at the customer, calendar days"
        ),
        "lead_time_definition": "order_to_delivery",
        "quoted_lead_time": {"value": median + 3, "unit": "DAY"},
        "actual_lead_time": {
            "unit": "DAY",
            "minimum": max(1, median - 4),
            "median": median,
            "mean": median + 0.7,
            "p95": p95,
            "maximum": p95 + 6,
        },
        "order_count": rng.randint(20, 900),
    }


def lines(records: int, seed: int = 2026) -> Iterator[dict[str, Any]]:
    """The feed as NDJSON line objects: header, declarations, then records."""
    rng = random.Random(seed)
    sites = [f"site-{i}" for i in range(40)]
    products = max(50, records // 40)
    characteristics_per_product = 4
    yield {
        "header": {
            "sqm_version": "0.1",
            "feed_id": f"urn:sqm:benchmark:{records}",
            "supplier": SUPPLIER,
            "issued_at": "2026-11-03T09:00:00+01:00",
            "period": {
                "start": "2026-01-01T00:00:00+01:00",
                "end": "2026-11-01T00:00:00+01:00",
                "start_inclusive": True,
                "end_inclusive": False,
            },
            "sequence": 0,
        }
    }
    for site in sites:
        yield {
            "sites": {
                "id": site,
                "name": f"Plant {site}",
                "roles": ["manufacturing"],
                "address": {"locality": "Stuttgart", "country": "DE"},
            }
        }
    chars: list[dict[str, Any]] = []
    for p in range(products):
        product, site = f"prod-{p}", sites[p % len(sites)]
        yield {
            "products": {
                "id": product,
                "name": f"Machined part {p}",
                "part_number": f"PN-{p:06d}",
                "classifications": [{"scheme": "UNSPSC", "code": "31161500"}],
                "manufactured_at": [site],
            }
        }
        for c in range(characteristics_per_product):
            nominal = round(rng.uniform(2, 80), 3)
            tolerance = round(rng.choice([0.01, 0.018, 0.025, 0.05, 0.1]), 3)
            char = {
                "id": f"char-{p}-{c}",
                "name": f"Diameter {c} of part {p}",
                "product": product,
                "unit": "MMT",
                "nominal": nominal,
                "lower_spec_limit": round(nominal - tolerance / 2, 4),
                "upper_spec_limit": round(nominal + tolerance / 2, 4),
                "special_characteristic_class": "standard",
            }
            yield {"characteristics": char}
            chars.append({**char, "site": site})
    # Each record gets its own (subject, month): a real feed has one value per subject and period.
    product_ids = [f"prod-{p}" for p in range(products)]
    for index in range(records):
        month, slot = MONTHS[index % len(MONTHS)], index // len(MONTHS)
        draw = rng.random()
        if draw < 0.55:
            yield {"capability_records": _capability(rng, index, chars[slot % len(chars)], month)}
            continue
        product = product_ids[slot % products]
        site = sites[(slot // products) % len(sites)]
        if draw < 0.75:
            yield {"defect_rate_records": _defects(rng, index, product, site, month)}
        elif draw < 0.9:
            yield {"delivery_records": _delivery(rng, index, product, site, month)}
        else:
            yield {"lead_time_records": _lead_time(rng, index, product, site, month)}


def write(path: Path, records: int) -> str:
    """Write the feed; return the SHA-256 of the file."""
    digest = hashlib.sha256()
    with path.open("wb") as handle:
        for line in lines(records):
            data = (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
            digest.update(data)
            handle.write(data)
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    print(write(args.out, args.records))


if __name__ == "__main__":
    main()

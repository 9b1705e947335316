"""Realistic suppliers and their monthly feeds, for the registry search benchmark.

Deterministic from a seed and the supplier's number, so that any process can generate any
supplier: its identity (a valid LEI), its Ed25519 key, its sites, products (UNSPSC and HS
classifications), characteristics and certificates, and its feeds over time, each a small
valid SQM feed (a few records) chained to the previous one (``header.previous_feed``).

Distributions (per supplier, with month-to-month noise per feed):

- country: weighted like a global automotive and industrial supply base (DE, CN, US, JP, IT,
  MX, PL, ...); 30 % of suppliers have a second plant abroad;
- products: 1-3, classified by UNSPSC and HS codes drawn from ~24 part families (Zipf-like);
  1-2 characteristics each (critical 15 %, significant 25 %, key 10 %, standard 50 %);
- Cpk: the supplier's level ~ lognormal around 1.4 (sigma 0.2), each characteristic around it,
  each month +-5 %; Cp, Pp, Ppk, mean and sigmas computed from it and the tolerance;
- ppm at the customer: lognormal, median ~25 ppm (sigma 1.3), from real counts;
- on time %: the supplier's level ~ beta(19, 1) (mean 95 %), each month beta around it;
  in full % ~ beta(60, 1); OTIF below both;
- lead time: in days (75 %) or weeks, median 5-40 days;
- certificates: ISO 9001 75 %, IATF 16949 30 %, ISO 14001 40 %, ISO 45001 15 %, ISO 50001
  8 %, AS 9100 5 %, ISO 13485 5 %; three-year cycles renewed on time, 4 % lapsed (expired) and
  2 % suspended;
- publishing: monthly; the number of feeds per supplier ~ lognormal around the mean asked
  for; 10 % of suppliers stopped publishing 2-12 months ago.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from stdnum.iso7064 import mod_97_10

from sqm.registry.db import envelope_of, envelope_text
from sqm.trust import bundle, dsse

MONTH = timedelta(days=30.4375)

COUNTRIES = (
    ("DE", 18, "Stuttgart"), ("CN", 16, "Suzhou"), ("US", 11, "Detroit"), ("JP", 6, "Nagoya"),
    ("IT", 6, "Torino"), ("MX", 5, "Querétaro"), ("PL", 5, "Wrocław"), ("FR", 4, "Lyon"),
    ("KR", 4, "Ulsan"), ("CZ", 4, "Mladá Boleslav"), ("IN", 4, "Pune"), ("TR", 3, "Bursa"),
    ("ES", 3, "Zaragoza"), ("GB", 3, "Coventry"), ("HU", 2, "Győr"), ("TW", 2, "Taichung"),
    ("VN", 2, "Hai Phong"), ("BR", 1, "São Paulo"), ("TH", 1, "Rayong"), ("RO", 1, "Pitești"),
)  # fmt: skip
SECOND_PLANT = ("CN", "MX", "PL", "CZ", "HU", "VN", "IN", "RO", "US")
CITY = {code: city for code, _, city in COUNTRIES}
# Part families: UNSPSC class, HS subheading, what it is, tolerance band (mm) of its features.
FAMILIES = (
    ("40141600", "848180", "Valve body", 0.018), ("31161500", "731815", "Screw", 0.05),
    ("31171500", "848210", "Ball bearing", 0.008), ("26101700", "840991", "Injector sleeve", 0.01),
    ("31162800", "731829", "Retaining clip", 0.1), ("40161500", "842123", "Oil filter housing", 0.05),
    ("31181700", "848410", "Cylinder head gasket", 0.1), ("39121000", "853690", "Connector", 0.02),
    ("32101600", "854231", "Microcontroller board", 0.05), ("25172000", "870880", "Damper rod", 0.02),
    ("31132000", "760421", "Aluminium profile", 0.2), ("31101600", "732599", "Cast iron bracket", 0.25),
    ("40151500", "841330", "Fuel pump housing", 0.015), ("26111700", "850710", "Battery tray", 0.3),
    ("31151500", "731512", "Drive chain", 0.05), ("23153100", "848340", "Gear wheel", 0.012),
    ("31231100", "722830", "Steel bar", 0.1), ("40142000", "400942", "Brake hose", 0.2),
    ("39121500", "853650", "Relay", 0.03), ("31211500", "320890", "Coating", 0.01),
    ("26121600", "854449", "Wire harness", 0.5), ("41111900", "902620", "Pressure sensor", 0.01),
    ("31191500", "681320", "Brake pad", 0.05), ("31201600", "350610", "Structural adhesive", 0.1),
)  # fmt: skip
FAMILY_WEIGHTS = tuple(1 / (rank + 1) ** 0.8 for rank in range(len(FAMILIES)))
CLASSES = (("critical", 15), ("significant", 25), ("key", 10), ("standard", 50))
SCHEMES = (
    ("ISO_9001", 0.75, "ISO 9001 quality management"),
    ("IATF_16949", 0.30, "IATF 16949 automotive quality management"),
    ("ISO_14001", 0.40, "ISO 14001 environmental management"),
    ("ISO_45001", 0.15, "ISO 45001 occupational health and safety"),
    ("ISO_50001", 0.08, "ISO 50001 energy management"),
    ("AS_9100", 0.05, "AS 9100 aerospace quality management"),
    ("ISO_13485", 0.05, "ISO 13485 medical devices quality management"),
)
BODIES = ("TÜV SÜD Management Service", "DEKRA Certification", "Bureau Veritas Certification",
          "SGS United Kingdom", "DNV Business Assurance", "Intertek Certification",
          "LRQA", "TÜV Rheinland Cert")  # fmt: skip
ASSURANCE = (("self_declared", 60), ("instrumented_feed", 25), ("second_party", 10),
             ("third_party", 5))  # fmt: skip


def lei(prefix: str, number: int) -> str:
    """A valid 20-character LEI: 4-character LOU prefix, "00", 12 characters, check digits."""
    base = f"{prefix}00{number:012d}"[:18]
    return base + mod_97_10.calc_check_digits(base)


def _weighted(rng: random.Random, table: tuple[tuple[Any, ...], ...]) -> Any:
    return rng.choices(table, weights=[row[1] for row in table])[0]


def _body(number: int) -> dict[str, Any]:
    return {
        "name": BODIES[number],
        "identifiers": [{"scheme": "LEI", "code": lei("5493", 900 + number)}],
        "country": "DE",
    }


@dataclass(frozen=True)
class Certificate:
    scheme: str
    title: str
    body: int
    anchor: date  # the first cycle's issue date; cycles of three years follow
    lapsed_after: date | None  # not renewed after this cycle's end
    suspended: bool
    number: str


@dataclass(frozen=True)
class Profile:
    """A supplier: identity, plants, products and how good it is."""

    number: int
    identity: str
    organization: dict[str, Any]
    key: Ed25519PrivateKey
    public: bytes
    sites: list[dict[str, Any]]
    products: list[dict[str, Any]]
    characteristics: list[dict[str, Any]]
    cpk: dict[str, float]  # per characteristic
    ppm_median: float
    on_time: tuple[float, float]  # beta parameters
    lead_days: int
    lead_in_weeks: bool
    certificates: list[Certificate]
    assurance: str

    @property
    def key_id(self) -> str:
        return bundle.key_id(self.public)


def profile(seed: int, number: int) -> Profile:
    rng = random.Random(f"{seed}:supplier:{number}")
    code = lei("5299", 10_000_000 + number)
    country, _, city = _weighted(rng, COUNTRIES)
    name = f"{city} {rng.choice(('Präzision', 'Components', 'Industries', 'Manufacturing', 'Technik', 'Metal Works'))} {number}"
    organization = {
        "name": name,
        "identifiers": [{"scheme": "LEI", "code": code}],
        "country": country,
    }
    secret = hashlib.sha256(f"{seed}:key:{number}".encode()).digest()
    key = Ed25519PrivateKey.from_private_bytes(secret)
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    sites = [
        {
            "id": "site-1",
            "name": f"{city} plant",
            "roles": ["manufacturing", "headquarters"],
            "address": {"locality": city, "country": country},
        }
    ]
    if rng.random() < 0.3:
        abroad = rng.choice([c for c in SECOND_PLANT if c != country])
        sites.append(
            {
                "id": "site-2",
                "name": f"{CITY[abroad]} plant",
                "roles": ["manufacturing"],
                "address": {"locality": CITY[abroad], "country": abroad},
            }
        )
    level = rng.lognormvariate(math.log(1.4), 0.2)
    products, characteristics, cpk = [], [], {}
    for p in range(rng.choice((1, 1, 2, 2, 3))):
        unspsc, hs, what, tolerance = rng.choices(FAMILIES, weights=FAMILY_WEIGHTS)[0]
        product = f"prod-{p + 1}"
        products.append(
            {
                "id": product,
                "name": f"{what} {rng.randint(100, 999)}",
                "part_number": f"{rng.randint(1000, 9999)}-{rng.randint(100, 999)}",
                "classifications": [
                    {"scheme": "UNSPSC", "code": unspsc},
                    {"scheme": "HS", "code": hs},
                ],
                "manufactured_at": [s["id"] for s in sites if rng.random() < 0.7] or ["site-1"],
            }
        )
        for c in range(rng.choice((1, 1, 2))):
            nominal = round(rng.uniform(2, 120), 3)
            width = tolerance * rng.choice((0.5, 1, 1, 2))
            characteristic = f"char-{p + 1}-{c + 1}"
            characteristics.append(
                {
                    "id": characteristic,
                    "name": f"Feature {c + 1} of {what.lower()}",
                    "product": product,
                    "unit": "MMT",
                    "nominal": nominal,
                    "lower_spec_limit": round(nominal - width / 2, 4),
                    "upper_spec_limit": round(nominal + width / 2, 4),
                    "special_characteristic_class": _weighted(rng, CLASSES)[0],
                }
            )
            cpk[characteristic] = min(3.5, max(0.6, level * rng.lognormvariate(0, 0.08)))
    certificates = []
    for scheme, share, title in SCHEMES:
        if rng.random() < share:
            anchor = date(2017, 1, 1) + timedelta(days=rng.randrange(3 * 365))
            lapsed = None
            if rng.random() < 0.04:
                lapsed = date(2024, 1, 1) + timedelta(days=rng.randrange(2 * 365))
            certificates.append(
                Certificate(
                    scheme, title, rng.randrange(len(BODIES)), anchor, lapsed,
                    rng.random() < 0.02, f"{scheme[:4]}-{rng.randrange(10**7):07d}",
                )
            )  # fmt: skip
    mean_on_time = rng.betavariate(19, 1)
    return Profile(
        number=number,
        identity=f"LEI:{code}",
        organization=organization,
        key=key,
        public=public,
        sites=sites,
        products=products,
        characteristics=characteristics,
        cpk=cpk,
        ppm_median=rng.lognormvariate(math.log(25), 1.3),
        on_time=(40 * mean_on_time, 40 * (1 - mean_on_time)),
        lead_days=rng.randint(5, 40),
        lead_in_weeks=rng.random() < 0.25,
        certificates=certificates,
        assurance=_weighted(rng, ASSURANCE)[0],
    )


def feed_counts(seed: int, suppliers: int, attestations: int) -> list[int]:
    """Feeds per supplier: at least one each, the rest ~ lognormal weights, summing exactly
    to ``attestations`` (which must be at least ``suppliers``)."""
    rng = random.Random(f"{seed}:counts")
    weights = [rng.lognormvariate(0, 0.6) for _ in range(suppliers)]
    extra = attestations - suppliers
    total = sum(weights)
    counts = [1 + int(extra * w / total) for w in weights]
    missing = attestations - sum(counts)
    for n in rng.sample(range(suppliers), missing):
        counts[n] += 1
    return counts


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def _period(end: datetime) -> dict[str, Any]:
    start = end - MONTH
    return {
        "start": _iso(start),
        "end": _iso(end),
        "start_inclusive": True,
        "end_inclusive": False,
    }


def _assurance(rng: random.Random, level: str, customer: int) -> dict[str, Any]:
    if level == "self_declared" or rng.random() < 0.3:
        return {"level": "self_declared"}
    if level == "instrumented_feed":
        return {"level": level, "assurance_method": "automated_collection"}
    assurer = _body(customer % len(BODIES))
    method = "document_review" if level == "second_party" else "audit"
    return {"level": level, "assurer": assurer, "assurance_method": method}


def _capability(
    rng: random.Random, supplier: Profile, char: dict[str, Any], common: dict[str, Any]
) -> dict[str, Any]:
    lsl, usl = char["lower_spec_limit"], char["upper_spec_limit"]
    width = usl - lsl
    cpk = max(0.5, supplier.cpk[char["id"]] * rng.uniform(0.95, 1.05))
    cp = cpk * rng.uniform(1.0, 1.2)
    sigma_w = width / (6 * cp)
    sigma_o = sigma_w * rng.uniform(1.02, 1.12)
    off = width / 2 - 3 * sigma_w * cpk
    mean = (lsl + usl) / 2 + rng.choice((-1, 1)) * off
    d = min(usl - mean, mean - lsl)
    n = rng.choice((100, 125, 150, 200))
    product = char["product"]
    site = next(p for p in supplier.products if p["id"] == product)["manufactured_at"][0]
    return {
        "id": f"cap-{char['id']}",
        "site": site,
        "product": product,
        "characteristic": char["id"],
        **common,
        "study_type": "ongoing",
        "cp": round(width / (6 * sigma_w), 2),
        "cpk": round(d / (3 * sigma_w), 2),
        "pp": round(width / (6 * sigma_o), 2),
        "ppk": round(d / (3 * sigma_o), 2),
        "process_mean": round(mean, 6),
        "sigma_within": float(f"{sigma_w:.3g}"),
        "sigma_overall": float(f"{sigma_o:.3g}"),
        "sigma_estimator": "rbar_d2",
        "sample_size": n,
        "subgroup_size": 5,
        "subgroup_count": n // 5,
        "distribution": "normal",
        "in_statistical_control": True,
    }


def feeds(
    seed: int, supplier: Profile, count: int, end: datetime
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """The supplier's ``count`` monthly feeds with their in-toto Statements, oldest first, the
    newest issued before ``end`` (10 % of suppliers stopped publishing months before); each
    names its predecessor."""
    rng = random.Random(f"{seed}:feeds:{supplier.number}")
    last = end - timedelta(days=rng.uniform(0.5, 29.5))
    if rng.random() < 0.1:
        last -= MONTH * rng.randint(2, 12)
    previous: dict[str, Any] | None = None
    for number in range(count):
        issued = last - MONTH * (count - 1 - number) + timedelta(minutes=rng.randint(-90, 90))
        as_of = issued - timedelta(hours=rng.randint(2, 30))
        close = as_of - timedelta(hours=as_of.hour, minutes=as_of.minute, seconds=as_of.second)
        common = {
            "period": _period(close),
            "as_of": _iso(as_of),
            "update_interval": "P1M",
            "next_update_due": _iso(as_of + MONTH + timedelta(days=3)),
        }
        records: dict[str, list[dict[str, Any]]] = {}
        chars = rng.sample(supplier.characteristics, min(2, len(supplier.characteristics)))
        records["capability_records"] = [
            {
                **_capability(rng, supplier, char, common),
                "assurance": _assurance(rng, supplier.assurance, supplier.number),
            }
            for char in chars
        ]
        inspected = rng.randint(5_000, 500_000)
        ppm = supplier.ppm_median * rng.lognormvariate(0, 0.5)
        defective = round(ppm * inspected / 1e6)
        records["defect_rate_records"] = [
            {
                "id": "ppm-customer",
                "site": "site-1",
                **common,
                "assurance": _assurance(rng, supplier.assurance, supplier.number),
                "detection_point": "customer_incoming",
                "counting_rule": "per_unit",
                "inspected_count": inspected,
                "defective_count": defective,
                "ppm": round(defective / inspected * 1e6, 2),
            }
        ]
        on_time = round(100 * rng.betavariate(*supplier.on_time), 1)
        in_full = round(100 * rng.betavariate(60, 1), 1)
        records["delivery_records"] = [
            {
                "id": "otif",
                **common,
                "assurance": _assurance(rng, supplier.assurance, supplier.number),
                "date_basis": "committed_date",
                "tolerance_window": {"days_early": 0, "days_late": rng.choice((0, 1, 3))},
                "order_lines_count": rng.randint(40, 4000),
                "on_time_percent": on_time,
                "in_full_percent": in_full,
                "otif_percent": round(max(0.0, min(on_time, in_full) - rng.uniform(0, 1.5)), 1),
            }
        ]
        median = max(2, round(supplier.lead_days * rng.uniform(0.85, 1.2)))
        p95 = median + rng.randint(2, 15)
        unit, scale = ("WEE", 7) if supplier.lead_in_weeks else ("DAY", 1)
        product = rng.choice(supplier.products)["id"]
        records["lead_time_records"] = [
            {
                "id": f"lt-{product}",
                "product": product,
                **common,
                "assurance": {"level": "self_declared"},
                "lead_time_definition": "order_to_delivery",
                "quoted_lead_time": {"value": max(1, round((median + 3) / scale)), "unit": unit},
                "actual_lead_time": {
                    "unit": unit,
                    "minimum": round(max(1, median - 4) / scale, 1),
                    "median": round(median / scale, 1),
                    "mean": round((median + 0.7) / scale, 1),
                    "p95": round(p95 / scale, 1),
                    "maximum": round((p95 + 6) / scale, 1),
                },
                "order_count": rng.randint(20, 900),
            }
        ]
        certifications = [
            record
            for certificate in supplier.certificates
            if (record := _certification(certificate, issued, supplier)) is not None
        ]
        if certifications:
            records["certification_records"] = certifications
        header: dict[str, Any] = {
            "sqm_version": "0.1",
            "feed_id": f"urn:uuid:{uuid.UUID(int=rng.getrandbits(128), version=4)}",
            "supplier": supplier.organization,
            "issued_at": _iso(issued),
            "period": _period(close),
            "sequence": number,
        }
        if previous is not None:
            header["previous_feed"] = previous
        feed = {
            "header": header,
            "sites": supplier.sites,
            "products": supplier.products,
            "characteristics": supplier.characteristics,
            **records,
        }
        statement = bundle.statement(feed)
        yield feed, statement
        previous = {
            "feed_id": header["feed_id"],
            "sequence": number,
            "sha256": statement["subject"][0]["digest"]["sha256"],
        }


def _certification(
    certificate: Certificate, issued: datetime, supplier: Profile
) -> dict[str, Any] | None:
    today = (issued - timedelta(days=1)).date()  # the record's as_of
    if today < certificate.anchor:
        return None
    cycle = (today - certificate.anchor).days // 1095
    start = certificate.anchor + timedelta(days=1095 * cycle)
    status = "active"
    if certificate.lapsed_after is not None and today > certificate.lapsed_after:
        # Not renewed: the feed lists the last certificate, expired once its cycle ended.
        cycle = (certificate.lapsed_after - certificate.anchor).days // 1095
        start = certificate.anchor + timedelta(days=1095 * cycle)
        if today > start + timedelta(days=1094):
            status = "expired"
    elif certificate.suspended:
        status = "suspended"
    body = _body(certificate.body)
    return {
        "id": f"cert-{certificate.scheme.lower()}",
        "as_of": _iso(issued - timedelta(days=1)),
        "update_interval": "P6M",
        "next_update_due": _iso(issued + timedelta(days=180)),
        "assurance": {
            "level": "third_party_accredited",
            "assurer": body,
            "assurance_method": "certification",
        },
        "scheme": certificate.scheme,
        "certificate_number": certificate.number,
        "certification_body": body,
        "scope": f"{certificate.title} for the manufacture of machined and assembled parts",
        "covered_sites": [
            {"site": site["id"], "coverage_role": "certified_site"} for site in supplier.sites
        ],
        "status": status,
        "issued_on": start.isoformat(),
        "valid_from": start.isoformat(),
        "valid_until": (start + timedelta(days=1094)).isoformat(),
    }


# --- signed, loggable rows ----------------------------------------------------------------------


@dataclass(frozen=True)
class Registration:
    at: datetime
    identity: str
    organization: dict[str, Any]
    public: bytes
    key_id: str
    leaf: bytes


@dataclass(frozen=True)
class Attestation:
    at: datetime
    identity: str
    feed_sequence: int
    payload_sha256: str
    key_id: str
    envelope: str  # the envelope as the attestations table holds it (registry.db.envelope_text)
    leaf: bytes  # the chain template integration completes with previousIndex
    feed: dict[str, Any] | None  # kept only for the feeds chosen for validation


def registration(supplier: Profile, at: datetime) -> Registration:
    """What ``Ingest.register_supplier`` logs: a key leaf with a real proof of possession."""
    possession = supplier.key.sign(bundle.registration_message(supplier.identity, supplier.public))
    leaf = bundle.key_leaf(supplier.identity, supplier.public, at.isoformat(), possession)
    return Registration(
        at, supplier.identity, supplier.organization, supplier.public, supplier.key_id, leaf
    )


def attestation(
    supplier: Profile, feed: dict[str, Any], statement: dict[str, Any], keep: bool
) -> Attestation:
    """What ``Ingest.attest`` logs for a feed signed by the supplier's key (its payload: the
    feed's in-toto Statement, as ``sqm.client.requests.attestation`` builds it)."""
    payload = json.dumps(statement).encode()
    envelope = dsse.sign(bundle.PAYLOAD_TYPE, payload, supplier.key, supplier.key_id)
    at = datetime.fromisoformat(feed["header"]["issued_at"]) + timedelta(
        seconds=30 + (int.from_bytes(payload[-4:], "big") % 3000)
    )
    return Attestation(
        at=at,
        identity=supplier.identity,
        feed_sequence=feed["header"]["sequence"],
        payload_sha256=hashlib.sha256(payload).hexdigest(),
        key_id=supplier.key_id,
        envelope=envelope_text(envelope).decode(),
        leaf=bundle.attestation_leaf(supplier.identity, envelope, None),
        feed=feed if keep else None,
    )


def supplier_rows(
    seed: int, number: int, count: int, end: datetime, validate_every: int
) -> tuple[Registration, list[Attestation]]:
    """A supplier's registration and its ``count`` attestations; feeds whose position in the
    whole run is a multiple of ``validate_every`` are kept for validation."""
    supplier = profile(seed, number)
    made = [
        attestation(supplier, feed, statement, (number * 7919 + n) % validate_every == 0)
        for n, (feed, statement) in enumerate(feeds(seed, supplier, count, end))
    ]
    registered = made[0].at - timedelta(hours=random.Random(f"{seed}:reg:{number}").randint(1, 72))
    return registration(supplier, registered), made


def payload_of(envelope: str) -> bytes:
    return envelope_of(envelope).payload

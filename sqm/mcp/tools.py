"""What the MCP tools do, independent of the protocol: registry reads through the verifying
client, and the validator's rules and checks, turned into JSON-ready answers for an agent.

Every answer says what was verified and what was not. The registry's search index is derived
from the log and is not authoritative; a signed feed inside a verified bundle is. So a search
hit is only handed out once its log entry is proven in a checkpoint signed by the pinned log
key (the client does that), and a bundle only once every offline step passes.

Failures are raised, never returned: :class:`sqm.client.ClientError` for a refusal or an
unreachable registry, :class:`sqm.trust.VerificationError` for an answer that does not verify,
:class:`ArgumentError` for a request this side can already tell is wrong. The MCP layer
(:mod:`sqm.mcp.server`) turns them into tool errors.
"""

from __future__ import annotations

import io
import itertools
import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqm.client import Hit, RegistryClient
from sqm.registry.facts import extract
from sqm.schema.artifacts import units
from sqm.trust import TrustError
from sqm.trust import bundle as trust_bundle
from sqm.trust.bundle import Bundle, Report, Step
from sqm.trust.errors import VerificationError
from sqm.validator import Finding, Severity, ValidatorError, iter_findings
from sqm.validator import rules as validator_rules
from sqm.validator.api import collect, iter_stream_findings

# Findings shown by validate_feed and the bundle tool; the rest are counted, never hidden.
MAX_FINDINGS = 100
# A feed pasted into a tool call; larger feeds belong in `sqm validate` on a file.
MAX_FEED_BYTES = 5_000_000
# The registry's own page of a supplier's history (registry/profiles.py HISTORY_LIMIT).
HISTORY_LIMIT = 100

IDENTITY_MEANINGS = {
    "verified": "the registry operator has checked that the holder of the signing key is the "
    "organisation named (its legal identifier).",
    "unverified": "UNVERIFIED IDENTITY: anyone may register an identifier with a key; the "
    "registry operator has not confirmed that the key holder is the organisation named. Treat "
    "the name and identifier as claimed, not proven; the signatures still prove that the same "
    "key holder published every attestation of this supplier.",
    "suspended": "SUSPENDED: the registry operator has suspended this identity; do not rely on "
    "its attestations until the suspension is lifted.",
}
SEVERITY_MEANINGS = {
    Severity.ERROR: "an error makes the feed invalid: `sqm attest` refuses to sign it and the "
    "registry refuses to log it (422 invalid_feed) until it is fixed.",
    Severity.WARNING: "a warning leaves the feed valid and publishable, but says that a value "
    "is suspicious or incomplete; a buyer's agent may discount it.",
    Severity.INFO: "an info finding is advice only; the feed is valid.",
}
LAYER_MEANINGS = {
    "syntax": "the bytes cannot be read as a feed at all",
    "structure": "the feed does not match the standard's JSON Schema (core or a declared "
    "profile): fields, types, required parts",
    "semantics": "values that are well-formed but contradict each other or the standard's "
    "definitions (units, formulas, dates)",
    "cross-record": "records that do not fit together: references, duplicates, coverage",
    "plausibility": "values that are possible but unlikely, or jumps against the previous feed",
}


class ArgumentError(Exception):
    """A tool argument this side can already tell is wrong (before asking the registry)."""


@dataclass(frozen=True)
class Checked:
    """A bundle with every step of its offline verification (and the feed's validity)."""

    bundle: Bundle
    report: Report
    findings: list[Finding]

    @property
    def ok(self) -> bool:
        return self.report.ok


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def _steps(report: Report) -> list[dict[str, Any]]:
    return [{"name": s.name, "passed": s.ok, "detail": s.detail} for s in report.steps]


def steps_text(report: Report) -> str:
    """The steps of a verification, one line each, PASS or FAIL first (for error messages)."""
    return "\n".join(f"{'PASS' if s.ok else 'FAIL'}  {s.name}: {s.detail}" for s in report.steps)


class RegistryTools:
    """The tools' logic over one registry, reached through a verifying :class:`RegistryClient`."""

    def __init__(self, client: RegistryClient) -> None:
        self.client = client
        # Bundle links in answers are absolute, so that an agent can hand them on as they are.
        self.origin = client.transport.api_root.removesuffix("/api/v1")

    # --- what the answers share -----------------------------------------------------------------

    def _link(self, path: str) -> str:
        return f"{self.origin}{path}" if path.startswith("/") else path

    def _trust(self) -> str:
        if self.client.trust_root_pinned:
            return "pinned: the trust root given to this server (--trust-root)"
        return (
            "NOT pinned: the registry's own trust root, fetched on first use; a verification "
            "proves consistency with what this registry serves, not that it is the registry "
            "you meant"
        )

    # --- search_suppliers -------------------------------------------------------------------------

    def search_suppliers(
        self,
        where: Sequence[str],
        filters: Mapping[str, str | None],
        limit: int,
        cursor: str | None,
    ) -> dict[str, Any]:
        """One page of suppliers meeting every condition, each hit's log entry proven."""
        page = self.client.search(list(where), cursor=cursor, limit=limit, **filters)
        checkpoint = page.checkpoint
        size = None if checkpoint is None else checkpoint.size
        return {
            "hits": [self._hit(hit, size) for hit in page.hits],
            "count": len(page.hits),
            "nextCursor": page.next_cursor,
            "verification": {
                "checkpoint": None
                if checkpoint is None
                else {
                    "origin": checkpoint.origin,
                    "size": checkpoint.size,
                    "rootHash": checkpoint.root.hex(),
                },
                "trustRoot": self._trust(),
                "verified": "the checkpoint's signature by the log key, and for every hit an "
                "inclusion proof showing that its logIndex is an attestation by that supplier "
                "in this checkpoint, chained to the previousIndex it names",
                "notVerified": "that the hit's numbers meet the conditions and that no later "
                "attestation exists: the search index says so, but it is derived from the log "
                "and not authoritative. The signed feed is: call fetch_and_verify_bundle with "
                "the hit's logIndex before relying on a number.",
            },
        }

    def _hit(self, hit: Hit, size: int | None) -> dict[str, Any]:
        return {
            "supplier": hit.supplier,
            "name": hit.name,
            "country": hit.country,
            "identityVerification": hit.verification,
            "logIndex": hit.log_index,
            "issuedAt": hit.issued_at,
            "feedSequence": hit.feed_sequence,
            "previousIndex": hit.previous_index,
            "assurance": hit.assurance,
            "bundle": self._link(hit.bundle),
            "matches": [
                {
                    "where": m.where,
                    "metric": m.metric,
                    "min": m.minimum,
                    "max": m.maximum,
                    "values": m.values,
                    "unit": m.unit,
                }
                for m in hit.matches
            ],
            "proof": f"verified: log entry {hit.log_index} is included in the checkpoint of "
            f"size {size} and is an attestation by {hit.supplier}",
        }

    # --- list_metrics -----------------------------------------------------------------------------

    def list_metrics(self, section: str | None) -> dict[str, Any]:
        """The registry's searchable metrics (optionally of one section) and the unit codes."""
        metrics = self.client.metrics()
        sections = sorted({str(m.get("section")) for m in metrics})
        if section is not None:
            if section not in sections:
                raise ArgumentError(
                    f"no section {section!r}; the sections are: {', '.join(sections)}"
                )
            metrics = [m for m in metrics if m.get("section") == section]
        grouped: dict[str, list[dict[str, str]]] = {}
        for code, unit in sorted(units().items()):
            grouped.setdefault(str(unit["quantity_kind"]), []).append(
                {"code": code, "name": str(unit["name"])}
            )
        return {
            "syntax": "METRIC OPERATOR NUMBER [UNIT], e.g. capability_records.cpk>=1.33, "
            "defect_rate_records.ppm<=50, lead_time_records.quoted_lead_time<=3 WEE",
            "operators": [">=", "<=", ">", "<", "="],
            "count": len(metrics),
            "sections": sections,
            "metrics": metrics,
            "units": grouped,
            "unitNote": "a unitBearing metric needs a UN/ECE Rec 20 unit code after the number "
            "and is compared unit-aware (3 WEE = 21 DAY); values stated in a unit of another "
            "quantity kind never match. Other metrics take no unit (percentages are plain "
            "numbers, 98 for 98 %).",
        }

    # --- get_supplier_profile ---------------------------------------------------------------------

    def get_supplier_profile(
        self, supplier: str, as_of: str | None, verify_latest: bool
    ) -> dict[str, Any]:
        """The supplier's profile from the index, its latest attestation verified."""
        profile = self.client.supplier(supplier, as_of)
        status = str(profile.get("verification"))
        latest = profile.get("latest")
        answer: dict[str, Any] = {
            "supplier": profile.get("supplier"),
            "name": profile.get("name"),
            "role": profile.get("role"),
            "identityVerification": {
                "status": status,
                "meaning": IDENTITY_MEANINGS.get(status, f"unknown status {status!r}"),
            },
            "identity": profile.get("identity"),
            "keys": profile.get("keys", []),
            "asOf": profile.get("asOf"),
            "latest": None
            if latest is None
            else {**latest, "bundle": self._link(latest["bundle"])},
            "metrics": profile.get("metrics", []),
            "certifications": profile.get("certifications", []),
            "history": [
                {**h, "bundle": self._link(str(h.get("bundle")))}
                for h in profile.get("history", [])
            ],
            "historyChain": _chain(profile.get("history", [])),
        }
        if latest is None:
            answer["latestVerified"] = None
            answer["authority"] = "this supplier has not published an attestation yet"
            return answer
        if not verify_latest:
            answer["latestVerified"] = None
            answer["authority"] = (
                "NOT verified (verify_latest=false): everything here comes from the registry's "
                "index, which is derived from the log and not authoritative."
            )
            return answer
        checked = self.check_bundle(int(latest["logIndex"]))
        if not checked.ok:
            raise VerificationError(
                f"the latest attestation (log index {latest['logIndex']}) does not verify:\n"
                + steps_text(checked.report)
            )
        # The bundle proves its own entry; check that it is the entry the profile names.
        leaf = json.loads(checked.bundle.attestation.leaf)
        if leaf.get("supplier") != supplier or profile.get("supplier") != supplier:
            raise VerificationError(
                f"log entry {latest['logIndex']} is an attestation by {leaf.get('supplier')}, "
                f"not by {supplier}"
            )
        if leaf.get("payloadSha256") != latest.get("payloadSha256"):
            raise VerificationError(
                f"log entry {latest['logIndex']} binds another payload than the profile names"
            )
        feed = checked.report.feed or {}
        # The index is only a copy: compare what it lists with what the supplier signed.
        differences = _metrics_differ(answer["metrics"], feed) + _certifications_differ(
            answer["certifications"], feed
        )
        answer["latestVerified"] = {
            "logIndex": latest["logIndex"],
            "bundleVerified": True,
            "stepsPassed": len(checked.report.steps),
            "checkpointSize": checked.bundle.attestation.tree_size,
            "timestamp": _iso(checked.report.timestamp),
            "indexMatchesSignedFeed": not differences,
            "differences": differences,
        }
        answer["authority"] = (
            "The latest attestation's bundle was verified offline against the trust root "
            f"({self._trust()}), and the metrics and certifications listed were compared with "
            "its signed feed. The history comes from the index (derived from the log, not "
            "authoritative): verify any other entry with fetch_and_verify_bundle."
        )
        if differences:
            answer["authority"] += (
                " WARNING: the index differs from the signed feed (see "
                "latestVerified.differences); rely on the signed feed, from "
                "fetch_and_verify_bundle, not on the metrics listed here."
            )
        return answer

    # --- fetch_and_verify_bundle ------------------------------------------------------------------

    def check_bundle(self, index: int) -> Checked:
        """Fetch the bundle of log ``index`` and run every verification step, the feed's
        validity last (time rules judged as of the trusted timestamp, as `sqm verify` does).

        Unlike :meth:`RegistryClient.bundle`, which raises naming only the first failed step,
        this keeps the whole report, so that a failure can be shown step by step.
        """
        if index < 0:
            raise ArgumentError("log_index must be a whole number >= 0")
        made = self.client.fetch_bundle(index)
        report = trust_bundle.verify(made, self.client.trust_root)
        findings: list[Finding] = []
        if made.attestation.index != index:
            report.steps.append(
                Step(
                    "the entry asked for", False, f"the bundle is of entry {made.attestation.index}"
                )
            )
        if report.feed is not None:
            report.steps.append(_names_signer(made, report.feed))
            findings = list(iter_findings(report.feed, now=report.timestamp))
            errors = [f for f in findings if f.severity is Severity.ERROR]
            detail = (
                f"valid ({len(findings)} warnings or infos)"
                if not errors
                else f"{len(errors)} errors, first: {errors[0].code} {errors[0].message}"
            )
            report.steps.append(Step("feed valid", not errors, detail))
        return Checked(made, report, findings)

    def fetch_and_verify_bundle(self, index: int, include_feed: bool) -> dict[str, Any]:
        """The verified bundle's steps, timestamp and the key facts of its signed feed."""
        checked = self.check_bundle(index)
        claim = checked.report.endorsement
        if checked.bundle.endorsing:
            # Its claim is about another entry's feed: named, so the agent asks for that one.
            about = "" if claim is None else f" of entry {claim.index} ({claim.assurance})"
            raise ArgumentError(
                f"log entry {index} is an endorsement{about}, not an attestation: ask for the "
                "attestation's log index (`sqm verify` checks an endorsement's bundle)"
            )
        if not checked.ok:
            raise VerificationError(
                f"the bundle of log entry {index} does NOT verify; do not rely on it:\n"
                + steps_text(checked.report)
            )
        feed = checked.report.feed or {}
        leaf = json.loads(checked.bundle.attestation.leaf)
        answer: dict[str, Any] = {
            "logIndex": index,
            "verified": True,
            "steps": _steps(checked.report),
            "stepsPassed": len(checked.report.steps),
            "timestamp": _iso(checked.report.timestamp),
            "loggedAt": _iso(checked.report.logged),
            "timeMeaning": "loggedAt: the TSAs' (latest) time of the first checkpoint that held "
            "the attestation (when it was logged, provably); timestamp: the TSA's time of the "
            "newer checkpoint this bundle proves against",
            "checkpointSize": checked.bundle.attestation.tree_size,
            "trustRoot": self._trust(),
            "bundle": self._link(f"/api/v1/bundles/{index}"),
            "previousIndex": leaf.get("previousIndex"),
            "payloadSha256": leaf.get("payloadSha256"),
            "feed": _key_facts(feed, str(leaf.get("supplier"))),
            "findings": [f.to_dict() for f in checked.findings[:MAX_FINDINGS]],
            "meaning": "Every number in `feed` (and in `fullFeed`, when asked for) is what the "
            "supplier's registered key signed, logged in the registry's append-only log and "
            "timestamped by the TSA of the trust root. Signatures do not make the numbers "
            "true: the feed's `assurance` levels say who vouches for them.",
        }
        if include_feed:
            answer["fullFeed"] = feed
        return answer

    # --- explain_finding and validate_feed (local, no registry) -----------------------------------

    def explain_finding(self, code: str) -> dict[str, Any]:
        """What a validator rule code means, from the validator's rules registry."""
        wanted = code.strip().upper()
        try:
            rule = validator_rules.get(wanted)
        except ValidatorError:
            known = [r.code for r in validator_rules.all_rules()]
            letter = wanted[4:5] if wanted.startswith("SQM-") else ""
            near = [c for c in known if letter and c[4] == letter]
            hint = (
                f"codes of that layer: {', '.join(near)}"
                if near
                else f"codes are SQM- plus a layer letter ({', '.join(validator_rules.LAYERS)}) "
                f"and three digits, e.g. SQM-E003; there are {len(known)}"
            )
            raise ArgumentError(f"unknown rule code {code!r}; {hint}") from None
        return {
            "code": rule.code,
            "title": rule.title,
            "severity": rule.severity.value,
            "layer": rule.layer,
            "meaning": f"{rule.title}. A {rule.layer} finding: {LAYER_MEANINGS[rule.layer]}.",
            "whyItMatters": SEVERITY_MEANINGS[rule.severity],
            "howToFix": rule.hint,
            "failingExample": rule.failing,
            "passingExample": rule.passing,
            "reference": f"docs/reference/rules.md#{rule.code.lower()}",
        }

    def validate_feed(self, feed: str, profiles: Sequence[str]) -> dict[str, Any]:
        """The local validator's findings for a feed given as JSON, YAML or NDJSON text."""
        data = feed.encode()
        if len(data) > MAX_FEED_BYTES:
            raise ArgumentError(
                f"the feed is {len(data)} bytes; give at most {MAX_FEED_BYTES} here, or run "
                "`sqm validate FILE` on larger feeds"
            )
        try:
            found = iter_stream_findings(io.BytesIO(data), "<feed>", list(profiles))
            result = collect(found, "<feed>", MAX_FINDINGS)
        except ValidatorError as exc:
            raise ArgumentError(str(exc)) from exc
        return {
            "valid": result.is_valid,
            "counts": result.counts(),
            "findings": [f.to_dict() for f in result.findings],
            "omitted": result.omitted,
            "note": "valid means no error finding; explain any code with explain_finding.",
        }


# --- helpers over the profile and the signed feed -----------------------------------------------


def _chain(history: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Whether each attestation names the one before it (as the index lists them)."""
    gaps = [
        f"entry {newer.get('logIndex')} names {newer.get('previousIndex')} as its previous "
        f"entry, but the next older one listed is {older.get('logIndex')}"
        for newer, older in itertools.pairwise(history)
        if newer.get("previousIndex") != older.get("logIndex")
    ]
    if history and len(history) < HISTORY_LIMIT and history[-1].get("previousIndex") is not None:
        gaps.append(
            f"the oldest entry listed ({history[-1].get('logIndex')}) names a previous entry "
            f"{history[-1].get('previousIndex')} that is not listed"
        )
    return {
        "intact": not gaps,
        "entries": len(history),
        "gaps": gaps,
        "meaning": "each attestation's log leaf names the supplier's previous attestation "
        "(previousIndex), so a hidden or skipped attestation shows as a gap; the leaves of "
        "verified bundles prove their own link.",
    }


def _metrics_differ(listed: Sequence[Mapping[str, Any]], feed: Mapping[str, Any]) -> list[str]:
    """Where the index's metrics differ from the signed feed's (empty when they agree)."""
    try:
        signed = Counter((f.record_id, f.metric, _rounded(f.value)) for f in extract(feed).facts)
    except (KeyError, TypeError, ValueError, IndexError):
        return ["the signed feed's metrics could not be read for comparison"]
    indexed = Counter(
        (str(m.get("recordId")), str(m.get("metric")), _rounded(m.get("value"))) for m in listed
    )
    return _differences(indexed, signed)


def _certifications_differ(
    listed: Sequence[Mapping[str, Any]], feed: Mapping[str, Any]
) -> list[str]:
    try:
        signed = Counter(
            (c.record_id, c.scheme, c.status, None if c.valid_until is None else str(c.valid_until))
            for c in extract(feed).certifications
        )
    except (KeyError, TypeError, ValueError, IndexError):
        return ["the signed feed's certifications could not be read for comparison"]
    indexed = Counter(
        (str(c.get("recordId")), str(c.get("scheme")), str(c.get("status")), c.get("validUntil"))
        for c in listed
    )
    return _differences(indexed, signed)


def _differences(indexed: Counter[Any], signed: Counter[Any]) -> list[str]:
    only_index = list((indexed - signed).elements())[:10]
    only_feed = list((signed - indexed).elements())[:10]
    return [f"the index lists {item} but the signed feed does not" for item in only_index] + [
        f"the signed feed states {item} but the index does not list it" for item in only_feed
    ]


def _rounded(value: Any) -> float | None:
    # The index stores floats (on PostgreSQL double precision): compare at 9 significant digits.
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return None
    return float(f"{value:.9g}")


def _names_signer(made: Bundle, feed: Mapping[str, Any]) -> Step:
    """The feed's header must name the supplier whose key signed it (the log leaf's supplier):
    otherwise a registered key could vouch for a feed that claims to be another company's."""
    leaf = json.loads(made.attestation.leaf)
    try:
        named = trust_bundle.supplier_identity(feed["header"]["supplier"])
    except (KeyError, TypeError, TrustError):
        return Step("feed names its signer", False, "the feed's header names no supplier")
    ok = named == leaf.get("supplier")
    detail = (
        f"the feed is {named}'s, signed with {named}'s registered key"
        if ok
        else f"the feed claims to be {named}'s but is signed as {leaf.get('supplier')}"
    )
    return Step("feed names its signer", ok, detail)


def _key_facts(feed: Mapping[str, Any], signer: str) -> dict[str, Any]:
    """What an agent usually needs from a signed feed, without its whole text."""
    header = feed.get("header") or {}
    organization = header.get("supplier") or {}
    facts: dict[str, Any] = {
        "supplier": {
            "id": signer,
            "name": organization.get("name"),
            "country": organization.get("country"),
        },
        "feedId": header.get("feed_id"),
        "sequence": header.get("sequence"),
        "issuedAt": header.get("issued_at"),
        "period": header.get("period"),
        "previousFeed": header.get("previous_feed"),
        "profiles": header.get("profiles", []),
        "records": {
            name: len(items)
            for name, items in feed.items()
            if name != "header" and isinstance(items, list)
        },
    }
    try:
        extracted = extract(feed)
    except (KeyError, TypeError, ValueError, IndexError):
        return facts
    summary: dict[tuple[str, str | None], list[float]] = {}
    for fact in extracted.facts:
        summary.setdefault((fact.metric, fact.unit), []).append(fact.value)
    facts["metrics"] = [
        {"metric": metric, "values": len(values), "min": min(values), "max": max(values), "unit": unit}
        for (metric, unit), values in sorted(summary.items(), key=lambda item: (item[0][0], item[0][1] or ""))
    ]  # fmt: skip
    facts["certifications"] = [
        {
            "recordId": c.record_id,
            "scheme": c.scheme,
            "status": c.status,
            "validFrom": None if c.valid_from is None else c.valid_from.isoformat(),
            "validUntil": None if c.valid_until is None else c.valid_until.isoformat(),
            "certificateNumber": c.certificate_number,
            "site": c.site,
        }
        for c in extracted.certifications
    ]
    facts["classifications"] = [
        {"product": product, "scheme": scheme, "code": code}
        for product, scheme, code in extracted.classifications
    ]
    facts["countries"] = list(extracted.countries)
    return facts

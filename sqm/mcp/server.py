"""The MCP surface of the registry: tool names, argument schemas, descriptions and errors.

The descriptions are written for an agent that has no other documentation: each says what
the tool does, the syntax and units of its arguments, what "verified" means in its answer and
what is not verified. The work is done in :mod:`sqm.mcp.tools`; this module only adapts it to
the Model Context Protocol (``mcp`` 2.x, :class:`mcp.server.mcpserver.MCPServer`).

Every anticipated failure becomes an MCP tool error (``isError``) whose text says what went
wrong and how to go on: the registry's refusal with its stable error code, an answer that does
not verify (with each step), a bad argument. The server process never stops for one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field

from sqm import __version__
from sqm.client import ClientError, RegistryClient
from sqm.mcp.tools import ArgumentError, RegistryTools
from sqm.trust import TrustError
from sqm.trust.errors import VerificationError

NAME = "sqm-registry"
INSTRUCTIONS = """\
Tools over an SQM registry: suppliers' signed, timestamped quality feeds (process capability,
defect rates, delivery, lead time, certifications, ESG figures) kept in a tamper-evident
transparency log. A typical session: list_metrics to learn the searchable metric names and
units; search_suppliers with conditions such as capability_records.cpk>=1.33; then, before
relying on a supplier's numbers, fetch_and_verify_bundle with the hit's logIndex (the signed
feed is authoritative, the search index is not); get_supplier_profile for the identity status,
certifications and history; explain_finding for any validator code (SQM-E003, ...) you meet;
validate_feed to check a feed locally. Everything the registry answers is verified against the
trust root this server was started with before you see it; answers say what was verified."""

# Read-only tools that reach the registry (an open world: its content changes).
REMOTE = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=True)
# Read-only tools answered from the validator shipped with this server.
LOCAL = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)

SEARCH = """\
Find suppliers whose LATEST signed quality feed (or the latest issued by as_of) meets every
condition and filter. Returns one page of hits (limit, default 20, at most 100) and nextCursor:
pass it back as cursor, with the same other arguments, for the next page.

Conditions (where: up to 8, all must hold) are METRIC OPERATOR NUMBER [UNIT]:
capability_records.cpk>=1.33, defect_rate_records.ppm<=50,
delivery_records.on_time_percent>=98, lead_time_records.quoted_lead_time<=3 WEE.
METRIC is a name from list_metrics; OPERATOR is one of >= <= > < =; percentages are plain
numbers (98 means 98 %). A unit-bearing metric needs a UN/ECE Rec 20 unit code after the number
(DAY, WEE, HUR, KGM, KWH, MTQ, ...; list_metrics lists them) and is compared unit-aware
(3 WEE = 21 DAY); other metrics take no unit. With match=all (default) every in-scope value of
the feed must meet each condition; match=any needs one. Each hit's matches give the min, max
and number of the values compared, in the unit stated.

Verified before you see it: the checkpoint's signature by the registry's log key (from the
trust root), and for every hit a Merkle inclusion proof that its logIndex is an attestation by
that supplier in that checkpoint. NOT verified: the numbers themselves. The search index is
derived from the log and is not authoritative; the signed feed in the bundle is: call
fetch_and_verify_bundle(logIndex) before relying on a value. identityVerification is whether the
registry operator confirmed the supplier's legal identity ('unverified': the name is only
claimed).

A refused search is a tool error naming the registry's error code (invalid_condition,
unknown_metric, unit_required, unknown_unit, unit_mismatch, unexpected_unit,
too_many_conditions, invalid_parameter, invalid_cursor) and how to fix it."""

METRICS = """\
The metrics search_suppliers can filter on, from the registry's catalogue (derived from the
SQM standard: every numeric field of every record section), each with its name (the METRIC of
a condition), section, unitBearing (true: a condition needs a unit code after the number) and
description; plus the UN/ECE Rec 20 unit codes grouped by quantity kind (time: SEC MIN HUR DAY
WEE MON ANN; mass: GRM KGM TNE; energy: KWH MWH; ...). Give section (e.g. capability_records)
to list only that section. No proofs are involved: the catalogue is a vocabulary, not a claim."""

PROFILE = """\
A supplier's quality profile: identity and its verification status, registered keys, the
latest attestation (as of as_of, if given), its metrics and certifications, and the history of
attestations (newest first, up to 100). supplier is the registry's id SCHEME:CODE, as in search
hits, e.g. LEI:529900SQMKRAFTWERK41.

identityVerification.status: 'verified' (the registry operator checked that the key holder is
the organisation named), 'unverified' (anyone may register an identifier: the name is claimed,
not proven; the signatures only show that one key holder published every attestation), or
'suspended' (do not rely on it).

The profile comes from the registry's index, which is derived from the log and not
authoritative. By default (verify_latest=true) the latest attestation's bundle is fetched and
verified offline against the trust root, and the metrics and certifications listed are compared
with its signed feed: latestVerified says what passed, and indexMatchesSignedFeed whether the
index agrees with the signed feed. historyChain says whether each attestation names the one
before it (a gap means an attestation is missing from the history). An unknown supplier is a
tool error no_such_supplier."""

BUNDLE = """\
Fetch the offline-verification bundle of the attestation at log_index (a search hit's logIndex)
and verify it against the trust root this server was started with, step by step: the
checkpoint's signature by the log key, the checkpoint's RFC 3161 timestamp by the trust root's
TSA, the key registration's inclusion in the log and the key's proof of possession, the DSSE
signature over the feed, the log leaf binding that envelope, the attestation's inclusion in the
checkpoint, the in-toto statement and its digest, the key's validity when the entry was logged
(not revoked before), that the feed names the supplier whose key signed it, and that the feed
passes the SQM validator (time rules judged at the trusted timestamp).

Answers only when EVERY step passes: steps (name, passed, detail), the trusted timestamp, the
checkpoint size, and the key facts of the signed feed (supplier, feed id and sequence, issue
time, period, record counts, each metric's min and max with its unit, certifications with
validity, product classifications, countries), plus the validator's warnings (explain their
codes with explain_finding). include_feed=true adds the whole signed feed. A bundle that fails
any step is a tool error listing every step as PASS or FAIL: do not rely on that attestation.
An index that is not an attestation (a key registration, an endorsement) is a tool error."""

EXPLAIN = """\
Explain an SQM validator finding code (SQM- plus a layer letter X syntax, S structure,
E semantics, R cross-record, P plausibility, and three digits, e.g. SQM-E003): what it means,
its severity and why that matters (an error makes a feed invalid: it cannot be signed or
logged; a warning leaves it valid but suspicious), how to fix it, and the rule's documented
failing and passing examples. Answered from the validator's rules registry shipped with this
server; the registry is not asked. An unknown code is a tool error listing the codes of that
layer."""

VALIDATE = """\
Validate an SQM feed locally with the reference validator (syntax, JSON Schema structure of
the core and declared profiles, semantics such as Cpk <= Cp and unit rules, cross-record
references, plausibility). feed is the feed serialised as text (a JSON object or YAML
mapping with a header, or NDJSON), at most 5 MB; pass a JSON feed as a string, not as an
object. Returns valid (no error finding), counts per severity and up to 100 findings, each with
code, severity, message, JSON Pointer, line and column, and a hint; explain a code with
explain_finding. Nothing is sent to the registry."""

# --- argument types (their descriptions are part of each tool's input schema) -------------------

Where = Annotated[
    list[str],
    Field(
        description="Conditions METRIC OPERATOR NUMBER [UNIT], all must hold (at most 8), e.g. "
        "['capability_records.cpk>=1.33', 'lead_time_records.quoted_lead_time<=3 WEE'].",
        max_length=8,
    ),
]
Country = Annotated[
    str | None,
    Field(description="ISO 3166-1 alpha-2 code, e.g. DE: the supplier's or one of its sites'."),
]
Certification = Annotated[
    str | None,
    Field(
        description="A certification scheme code (IATF_16949, ISO_9001, ISO_14001, AS_9100, "
        "ISO_13485, FSSC_22000, ...): an active certificate of it, valid on valid_on, is needed."
    ),
]
ValidOn = Annotated[
    str | None,
    Field(description="YYYY-MM-DD: the day the certificate must be valid (default: today)."),
]
Classification = Annotated[
    str | None,
    Field(
        description="A product classification SCHEME:CODE, a trailing * for a prefix: "
        "UNSPSC:40141600, UNSPSC:4014*. Conditions then count only that product's values."
    ),
]
CharacteristicClass = Annotated[
    Literal["critical", "significant", "key", "standard"] | None,
    Field(
        description="Count capability values only of characteristics of this special "
        "characteristic class."
    ),
]
Level = Literal[
    "self_declared", "instrumented_feed", "second_party", "third_party", "third_party_accredited"
]
Assurance = Annotated[
    Level | None,
    Field(
        description="Minimum assurance of the attestation as endorsed in the log by a "
        "certification body or auditor whose identity the registry's operator verified "
        "(weakest to strongest: self_declared, "
        "instrumented_feed, second_party, third_party, third_party_accredited)."
    ),
]
ClaimedAssurance = Annotated[
    Level | None,
    Field(description="Minimum assurance level the supplier claims for the values compared."),
]
FreshWithin = Annotated[
    str | None,
    Field(description="Only feeds issued within this many days: 30, or ISO 8601 P30D or P4W."),
]
AsOf = Annotated[
    str | None,
    Field(
        description="ISO 8601 date or time: the state as published by then (the latest feed "
        "issued at or before it) instead of the current one."
    ),
]
Match = Annotated[
    Literal["all", "any"] | None,
    Field(description="all (default): every in-scope value meets each condition; any: one."),
]
Sort = Annotated[
    Literal["supplier", "name", "issued_at", "-issued_at"] | None,
    Field(description="Order of hits (default supplier id); -issued_at is newest first."),
]
Limit = Annotated[int, Field(description="Hits per page, 1 to 100.", ge=1, le=100)]
Cursor = Annotated[
    str | None, Field(description="nextCursor of the previous page of the same search.")
]
Supplier = Annotated[
    str,
    Field(
        description="The supplier's id SCHEME:CODE, e.g. LEI:529900SQMKRAFTWERK41.", min_length=3
    ),
]
LogIndex = Annotated[
    int, Field(description="The attestation's log index (a hit's logIndex).", ge=0)
]


@contextmanager
def tool_errors() -> Iterator[None]:
    """Turn the failures a tool anticipates into MCP tool errors an agent can act on."""
    try:
        yield
    except ClientError as error:
        if error.status == 0:
            raise ToolError(
                f"the registry could not be reached ({error.code}): {error.message}"
            ) from error
        text = f"the registry refused the request (HTTP {error.status}, error code {error.code}): {error.message}"
        raise ToolError(text) from error
    except VerificationError as error:
        raise ToolError(
            f"VERIFICATION FAILED, do not rely on this answer: {error}. The registry's answer "
            "does not verify against the trust root."
        ) from error
    except TrustError as error:
        raise ToolError(f"the registry's answer is malformed: {error}") from error
    except ArgumentError as error:
        raise ToolError(f"bad argument: {error}") from error


LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


def build_server(client: RegistryClient, log_level: LogLevel = "WARNING") -> MCPServer[Any]:
    """The MCP server whose tools read the registry behind ``client`` (which verifies every
    bundle and hit against its trust root) and explain the validator's findings. Its log goes
    to stderr (stdout carries the protocol on the stdio transport)."""
    tools = RegistryTools(client)
    server: MCPServer[Any] = MCPServer(
        NAME,
        title="SQM registry (verified supplier quality data)",
        instructions=INSTRUCTIONS,
        version=__version__,
        log_level=log_level,
    )

    def search_suppliers(
        where: Where = [],  # noqa: B006 (pydantic copies defaults; the schema shows [])
        country: Country = None,
        certification: Certification = None,
        valid_on: ValidOn = None,
        classification: Classification = None,
        characteristic_class: CharacteristicClass = None,
        assurance: Assurance = None,
        claimed_assurance: ClaimedAssurance = None,
        fresh_within: FreshWithin = None,
        as_of: AsOf = None,
        match: Match = None,
        sort: Sort = None,
        limit: Limit = 20,
        cursor: Cursor = None,
    ) -> dict[str, Any]:
        filters = {
            "country": country, "certification": certification, "valid_on": valid_on,
            "classification": classification, "characteristic_class": characteristic_class,
            "assurance": assurance, "claimed_assurance": claimed_assurance,
            "fresh_within": fresh_within, "as_of": as_of, "match": match, "sort": sort,
        }  # fmt: skip
        with tool_errors():
            return tools.search_suppliers(where, filters, limit, cursor)

    def list_metrics(
        section: Annotated[
            str | None,
            Field(description="Only this record section, e.g. capability_records."),
        ] = None,
    ) -> dict[str, Any]:
        with tool_errors():
            return tools.list_metrics(section)

    def get_supplier_profile(
        supplier: Supplier,
        as_of: AsOf = None,
        verify_latest: Annotated[
            bool,
            Field(description="Verify the latest attestation's bundle (default true)."),
        ] = True,
    ) -> dict[str, Any]:
        with tool_errors():
            return tools.get_supplier_profile(supplier, as_of, verify_latest)

    def fetch_and_verify_bundle(
        log_index: LogIndex,
        include_feed: Annotated[
            bool, Field(description="Also return the whole signed feed (large).")
        ] = False,
    ) -> dict[str, Any]:
        with tool_errors():
            return tools.fetch_and_verify_bundle(log_index, include_feed)

    def explain_finding(
        code: Annotated[
            str, Field(description="A validator rule code, e.g. SQM-E003.", min_length=1)
        ],
    ) -> dict[str, Any]:
        with tool_errors():
            return tools.explain_finding(code)

    def validate_feed(
        # Exactly str: the SDK would json.loads any other string argument first, which would
        # hide duplicate keys and syntax errors from the validator and lose line numbers.
        feed: Annotated[
            str,
            Field(description="The feed's text, serialised: JSON, YAML or NDJSON, at most 5 MB."),
        ],
        profiles: Annotated[
            list[str],
            Field(
                description="Profiles to check besides those the header declares, e.g. "
                "['automotive']."
            ),
        ] = [],  # noqa: B006 (pydantic copies defaults)
    ) -> dict[str, Any]:
        with tool_errors():
            return tools.validate_feed(feed, profiles)

    for function, description, hints in (
        (search_suppliers, SEARCH, REMOTE),
        (list_metrics, METRICS, REMOTE),
        (get_supplier_profile, PROFILE, REMOTE),
        (fetch_and_verify_bundle, BUNDLE, REMOTE),
        (explain_finding, EXPLAIN, LOCAL),
        (validate_feed, VALIDATE, LOCAL),
    ):
        server.add_tool(function, description=description, annotations=hints)
    return server

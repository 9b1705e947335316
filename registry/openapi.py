"""The registry's OpenAPI 3.1 description: every endpoint, its parameters, bodies, answers and
errors. Served at /api/v1/openapi.json; the tests check live answers against it."""

from __future__ import annotations

from typing import Any

from sqm import __version__
from sqm.registry.query import FIELDS, MAX_LIMIT, SORTS
from sqm.trust.bundle import ENDORSEMENT_LEVELS

JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


ERRORS = {"4XX": {"$ref": "#/components/responses/Error"}}
B64 = {"type": "string", "contentEncoding": "base64"}
NULLABLE_STRING = {"type": ["string", "null"]}
NULLABLE_INT = {"type": ["integer", "null"]}


def _path_param(name: str, kind: str = "string", description: str = "") -> dict[str, Any]:
    schema: dict[str, Any] = {"type": kind}
    if kind == "integer":
        schema["minimum"] = 0
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": schema,
        "description": description,
    }


def _query(
    name: str, description: str, schema: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "schema": schema or {"type": "string"},
        "description": description,
        **extra,
    }


SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error", "message"],
        "properties": {
            "error": {"type": "string", "description": "A stable error code."},
            "message": {"type": "string", "description": "What is wrong and how to fix it."},
        },
    },
    "InclusionProof": {
        "type": "object",
        "required": ["treeSize", "hashes"],
        "properties": {"treeSize": {"type": "integer"}, "hashes": {"type": "array", "items": B64}},
    },
    "Included": {
        "type": "object",
        "required": ["leaf", "logIndex", "inclusionProof"],
        "properties": {
            "leaf": B64,
            "logIndex": {"type": "integer"},
            "inclusionProof": _ref("InclusionProof"),
        },
    },
    "Envelope": {
        "type": "object",
        "description": "A DSSE envelope. Its payload and signatures are base64 in the "
        "standard or the URL-safe alphabet (DSSE envelope.md), padded, with zero bits after the "
        "last byte; the registry answers with the standard alphabet.",
        "required": ["payloadType", "payload", "signatures"],
        "properties": {
            "payloadType": {"type": "string"},
            "payload": B64,
            "signatures": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["sig"],
                    "properties": {"keyid": {"type": "string"}, "sig": B64},
                },
            },
        },
    },
    "Bundle": {
        "type": "object",
        "description": "Everything needed to verify an attestation, or an endorsement, offline "
        "(see docs/bundle.md).",
        "required": [
            "mediaType",
            "envelope",
            "leaf",
            "logIndex",
            "inclusionProof",
            "checkpoint",
            "timestamp",
            "key",
        ],
        "properties": {
            "mediaType": {"const": "application/vnd.sqm.bundle.v0.1+json"},
            "envelope": _ref("Envelope"),
            "leaf": B64,
            "logIndex": {"type": "integer"},
            "inclusionProof": _ref("InclusionProof"),
            "checkpoint": {
                "type": "string",
                "description": "The C2SP signed note, exactly as signed.",
            },
            "timestamp": B64,
            "key": _ref("Included"),
            "loggedAt": {"type": "object"},
            "keyRevocation": _ref("Included"),
            "additionalTimestamps": {"type": "array", "items": B64},
            "keyChain": {
                "type": "array",
                "items": _ref("Included"),
                "description": "For a rotated-in key: the registrations from the identity's "
                "first key to the key that authorised it, oldest first.",
            },
            "endorsed": {
                **_ref("Included"),
                "description": "An endorsement's bundle: the endorsed attestation's entry.",
            },
        },
    },
    "AlreadyLogged": {
        "type": "object",
        "required": ["error", "bundle"],
        "properties": {"error": {"const": "already_logged"}, "bundle": _ref("Bundle")},
    },
    "Registration": {
        "type": "object",
        "required": ["supplier", "publicKey", "proofOfPossession"],
        "properties": {
            "supplier": {
                "type": "object",
                "description": "The organisation (name, identifiers, country) as in a feed header.",
            },
            "publicKey": B64,
            "proofOfPossession": B64,
        },
    },
    "KeyLogged": {
        "type": "object",
        "required": ["supplier", "keyId", "logIndex", "leaf", "inclusionProof"],
        "properties": {
            "supplier": {"type": "string"},
            "keyId": {"type": "string"},
            "verification": {"type": "string"},
            "authorizedBy": {"type": "string"},
            "leaf": B64,
            "logIndex": {"type": "integer"},
            "inclusionProof": _ref("InclusionProof"),
        },
    },
    "TrustRoot": {
        "type": "object",
        "required": ["mediaType", "log", "tsa"],
        "properties": {
            "mediaType": {"type": "string"},
            "log": {"type": "object", "required": ["origin", "verifierKey", "validFrom"]},
            "tsa": {"type": "object", "required": ["caCertificate"]},
            "additionalTsas": {"type": "array", "items": {"type": "object"}},
        },
    },
    "Match": {
        "type": "object",
        "required": ["where", "metric", "min", "max", "values", "unit"],
        "properties": {
            "where": {"type": "string"},
            "metric": {"type": "string"},
            "min": {"type": ["number", "null"]},
            "max": {"type": ["number", "null"]},
            "values": {"type": "integer"},
            "unit": NULLABLE_STRING,
        },
    },
    "Hit": {
        "type": "object",
        "required": ["supplier"],
        "properties": {
            "supplier": {"type": "string"},
            "name": {"type": "string"},
            "country": NULLABLE_STRING,
            "verification": {"enum": ["unverified", "verified", "suspended"]},
            "logIndex": {"type": "integer"},
            "issuedAt": {"type": "string", "format": "date-time"},
            "feedSequence": {"type": "integer"},
            "previousIndex": NULLABLE_INT,
            "assurance": {"type": "string"},
            "bundle": {"type": "string"},
            "matches": {"type": "array", "items": _ref("Match")},
            "proof": {
                "type": "object",
                "required": ["treeSize", "leaf", "hashes"],
                "properties": {
                    "treeSize": {"type": "integer"},
                    "leaf": B64,
                    "hashes": {"type": "array", "items": B64},
                },
            },
        },
    },
    "SearchAnswer": {
        "type": "object",
        "required": ["checkpoint", "indexedThrough", "hits", "next"],
        "properties": {
            "checkpoint": {
                "type": ["object", "null"],
                "properties": {
                    "origin": {"type": "string"},
                    "size": {"type": "integer"},
                    "note": {"type": "string"},
                },
            },
            "indexedThrough": {"type": "integer"},
            "hits": {"type": "array", "items": _ref("Hit")},
            "next": NULLABLE_STRING,
        },
    },
    "AttestationSummary": {
        "type": "object",
        "required": ["logIndex", "supplier", "feedSequence", "issuedAt", "assurance", "bundle"],
        "properties": {
            "logIndex": {"type": "integer"},
            "supplier": {"type": "string"},
            "feedId": {"type": "string"},
            "feedSequence": {"type": "integer"},
            "issuedAt": {"type": "string"},
            "previousIndex": NULLABLE_INT,
            "payloadSha256": {"type": "string"},
            "assurance": {"type": "string"},
            "endorsements": {"type": "integer"},
            "bundle": {"type": "string"},
            "feed": {"type": "object"},
        },
    },
    "Profile": {
        "type": "object",
        "required": [
            "supplier",
            "name",
            "verification",
            "identity",
            "keys",
            "latest",
            "metrics",
            "certifications",
            "history",
        ],
        "properties": {
            "supplier": {"type": "string"},
            "name": {"type": "string"},
            "role": {"type": "string"},
            "verification": {"type": "string"},
            "identity": {"type": "object"},
            "keys": {"type": "array", "items": {"type": "object"}},
            "asOf": NULLABLE_STRING,
            "latest": {"oneOf": [_ref("AttestationSummary"), {"type": "null"}]},
            "metrics": {"type": "array", "items": {"type": "object"}},
            "certifications": {"type": "array", "items": {"type": "object"}},
            "history": {"type": "array", "items": {"type": "object"}},
        },
    },
}

SPARQL_RESPONSES: dict[str, Any] = {
    "200": {
        "description": "SPARQL JSON results, or Turtle / N-Triples for CONSTRUCT and DESCRIBE.",
        "content": {
            "application/sparql-results+json": {"schema": {"type": "object"}},
            "text/turtle": {"schema": {"type": "string"}},
            "application/n-triples": {"schema": {"type": "string"}},
        },
    },
    "500": {"$ref": "#/components/responses/Error"},  # sparql_engine_crashed: do not resend
    "503": {"$ref": "#/components/responses/Error"},
    **ERRORS,
}

SEARCH_PARAMETERS = [
    _query(
        "where",
        "A condition METRIC OP NUMBER [UNIT], e.g. capability_records.cpk>=1.33 or lead_time_records.quoted_lead_time<=3 WEE; repeatable (at most 8).",
        {"type": "array", "items": {"type": "string"}},
        style="form",
        explode=True,
    ),
    _query(
        "match",
        "all (default): every in-scope value meets each condition; any: at least one.",
        {"enum": ["all", "any"]},
    ),
    _query(
        "country",
        "ISO 3166-1 alpha-2 of the supplier or one of its sites.",
        {"type": "string", "pattern": "^[A-Z]{2}$"},
    ),
    _query(
        "certification",
        "A certification scheme code; the certificate must be active and valid on valid_on (default today).",
        {"type": "string", "pattern": "^[A-Z0-9_]{2,40}$"},
    ),
    _query(
        "valid_on", "The date a certificate must be valid on.", {"type": "string", "format": "date"}
    ),
    _query(
        "classification",
        "SCHEME:CODE of a product classification; a trailing * matches a prefix.",
        {"type": "string"},
    ),
    _query(
        "characteristic_class",
        "Scope capability conditions to characteristics of this class.",
        {"enum": ["critical", "significant", "key", "standard"]},
    ),
    _query(
        "assurance",
        "Minimum endorsed assurance of the attestation: the strongest level endorsed by an "
        "endorser whose identity the operator verified.",
        {"enum": ["self_declared", "instrumented_feed", *ENDORSEMENT_LEVELS]},
    ),
    _query(
        "claimed_assurance",
        "Minimum assurance the supplier claims for the matched values.",
        {"enum": ["self_declared", "instrumented_feed", *ENDORSEMENT_LEVELS]},
    ),
    _query(
        "fresh_within",
        "Latest attestation issued within this many days (30) or ISO 8601 PnD/PnW.",
        {"type": "string"},
    ),
    _query("as_of", "The state as published by this time (ISO 8601).", {"type": "string"}),
    _query("sort", "Order of hits.", {"enum": list(SORTS)}),
    _query(
        "limit",
        f"Hits per page, 1 to {MAX_LIMIT}.",
        {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
    ),
    _query("cursor", "The next page of the same search (from 'next').", {"type": "string"}),
    _query("fields", f"Comma-separated hit fields among {', '.join(FIELDS)}.", {"type": "string"}),
    _query(
        "proofs",
        "link (default): each hit links its bundle; inline: each hit carries its inclusion proof against the stated checkpoint.",
        {"enum": ["link", "inline"]},
    ),
]


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the registry's API."""
    supplier = _path_param(
        "supplier",
        description="scheme:code of the supplier's first identifier, e.g. LEI:529900SQMKRAFTWERK41",
    )
    index = _path_param("index", "integer", "A log index.")
    rdf = {
        JSON: {"schema": {"type": "object"}},
        "application/ld+json": {"schema": {"type": "object"}},
        "text/turtle": {"schema": {"type": "string"}},
    }
    paths: dict[str, Any] = {
        "/suppliers": {
            "post": {
                "summary": "Register a supplier identity with its first Ed25519 key and proof of possession.",
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": _ref("Registration")}},
                },
                "responses": {"201": _json(_ref("KeyLogged"), "Registered and logged."), **ERRORS},
            }
        },
        "/endorsers": {
            "post": {
                "summary": "Register a certification body or auditor that may endorse attestations.",
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": _ref("Registration")}},
                },
                "responses": {"201": _json(_ref("KeyLogged"), "Registered and logged."), **ERRORS},
            }
        },
        "/suppliers/{supplier}": {
            "get": {
                "summary": "A supplier's quality profile; its latest feed as JSON-LD or Turtle by content negotiation.",
                "parameters": [supplier, _query("as_of", "The profile as published by this time.")],
                "responses": {
                    "200": {
                        "description": "The profile (JSON) or the latest feed (RDF).",
                        "content": {**rdf, JSON: {"schema": _ref("Profile")}},
                    },
                    **ERRORS,
                },
            }
        },
        "/suppliers/{supplier}/history": {
            "get": {
                "summary": "The supplier's attestations, newest first, each naming the previous one.",
                "parameters": [supplier, _query("as_of", "Only attestations issued by this time.")],
                "responses": {
                    "200": _json(
                        {"type": "object", "required": ["supplier", "history"]}, "The history."
                    ),
                    **ERRORS,
                },
            }
        },
        "/suppliers/{supplier}/trend": {
            "get": {
                "summary": "Values of 1 to 6 metrics over the supplier's attestations, oldest first.",
                "parameters": [
                    supplier,
                    _query(
                        "metric",
                        "A metric name from /metrics; repeatable.",
                        {"type": "array", "items": {"type": "string"}},
                        required=True,
                        style="form",
                        explode=True,
                    ),
                ],
                "responses": {
                    "200": _json(
                        {"type": "object", "required": ["supplier", "series"]}, "Series per metric."
                    ),
                    **ERRORS,
                },
            }
        },
        "/suppliers/{supplier}/keys": {
            "post": {
                "summary": "Add a key, authorised by a current key of the supplier.",
                "parameters": [supplier],
                "requestBody": {
                    "required": True,
                    "content": {
                        JSON: {
                            "schema": {
                                "type": "object",
                                "required": ["publicKey", "proofOfPossession", "authorization"],
                            }
                        }
                    },
                },
                "responses": {"201": _json(_ref("KeyLogged"), "Added and logged."), **ERRORS},
            }
        },
        "/keys/{key}/revocation": {
            "post": {
                "summary": "Revoke a key from an effective time: signed by the key, or with the operator token.",
                "parameters": [
                    _path_param("key", description="The key id (hex SHA-256 of the public key).")
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        JSON: {
                            "schema": {
                                "type": "object",
                                "required": ["revokedAt"],
                                "properties": {"revokedAt": {"type": "string"}, "signature": B64},
                            }
                        }
                    },
                },
                "responses": {
                    "201": _json(
                        {"type": "object", "required": ["keyId", "revokedAt", "logIndex"]},
                        "Revoked and logged.",
                    ),
                    **ERRORS,
                },
            }
        },
        "/attestations": {
            "post": {
                "summary": "Submit a signed feed (a DSSE envelope around an in-toto Statement); the answer is its offline bundle.",
                "requestBody": {"required": True, "content": {JSON: {"schema": _ref("Envelope")}}},
                "responses": {
                    "201": _json(_ref("Bundle"), "Logged; the bundle proves it."),
                    "409": _json(
                        {"oneOf": [_ref("AlreadyLogged"), _ref("Error")]},
                        "An exact resubmission (with its bundle), or a reused feed sequence.",
                    ),
                    **ERRORS,
                },
            }
        },
        "/attestations/{index}": {
            "get": {
                "summary": "An attestation and its feed; the feed as JSON-LD or Turtle by content negotiation.",
                "parameters": [index],
                "responses": {
                    "200": {
                        "description": "The attestation.",
                        "content": {**rdf, JSON: {"schema": _ref("AttestationSummary")}},
                    },
                    **ERRORS,
                },
            }
        },
        "/attestations/{index}/endorsements": {
            "get": {
                "summary": "The endorsements logged for an attestation.",
                "parameters": [index],
                "responses": {
                    "200": _json(
                        {"type": "object", "required": ["logIndex", "endorsements"]},
                        "The endorsements.",
                    ),
                    **ERRORS,
                },
            }
        },
        "/endorsements": {
            "post": {
                "summary": "Log a registered endorser's signed endorsement of a logged attestation.",
                "requestBody": {"required": True, "content": {JSON: {"schema": _ref("Envelope")}}},
                "responses": {
                    "201": _json(
                        {"type": "object", "required": ["endorser", "assurance", "logIndex"]},
                        "Logged.",
                    ),
                    "409": _json(
                        {
                            "type": "object",
                            "required": ["error", "endorser", "assurance", "logIndex"],
                            "properties": {"error": {"const": "already_logged"}},
                        },
                        "The same endorsement, logged before: its entry.",
                    ),
                    **ERRORS,
                },
            }
        },
        "/bundles/{index}": {
            "get": {
                "summary": "The offline bundle of the attestation or endorsement at a log index, "
                "against the newest checkpoint.",
                "parameters": [index],
                "responses": {"200": _json(_ref("Bundle"), "The bundle."), **ERRORS},
            }
        },
        "/search/suppliers": {
            "get": {
                "summary": "Suppliers whose latest attestation (or latest as of a date) meets every condition and filter; every hit carries its log index and the means to verify it.",
                "parameters": SEARCH_PARAMETERS,
                "responses": {"200": _json(_ref("SearchAnswer"), "A page of hits."), **ERRORS},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Every metric a search may name.",
                "responses": {
                    "200": _json({"type": "object", "required": ["metrics"]}, "The catalogue.")
                },
            }
        },
        "/log/checkpoint": {
            "get": {
                "summary": "The newest signed checkpoint (C2SP signed note).",
                "responses": {
                    "200": {
                        "description": "The note.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **ERRORS,
                },
            }
        },
        "/log/entries/{index}": {
            "get": {
                "summary": "An entry's leaf and its inclusion proof.",
                "parameters": [
                    index,
                    _query(
                        "size",
                        "The tree size to prove against (default: latest).",
                        {"type": "integer", "minimum": 1},
                    ),
                ],
                "responses": {"200": _json(_ref("Included"), "The entry."), **ERRORS},
            }
        },
        "/log/consistency": {
            "get": {
                "summary": "A consistency proof between two tree sizes (RFC 9162 section 2.1.4).",
                "parameters": [
                    _query(
                        "old",
                        "The older tree size.",
                        {"type": "integer", "minimum": 0},
                        required=True,
                    ),
                    _query(
                        "new",
                        "The newer tree size.",
                        {"type": "integer", "minimum": 0},
                        required=True,
                    ),
                ],
                "responses": {
                    "200": _json(
                        {"type": "object", "required": ["old", "new", "hashes"]}, "The proof."
                    ),
                    **ERRORS,
                },
            }
        },
        "/tsa": {
            "post": {
                "summary": "RFC 3161 time stamps for anyone.",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/timestamp-query": {
                            "schema": {"type": "string", "format": "binary"}
                        }
                    },
                },
                "responses": {
                    "200": {
                        "description": "A TimeStampResp (granted or rejected).",
                        "content": {
                            "application/timestamp-reply": {
                                "schema": {"type": "string", "format": "binary"}
                            }
                        },
                    },
                    **ERRORS,
                },
            }
        },
        "/trust-root": {
            "get": {
                "summary": "What verifiers trust: the log's origin and key, the TSA's CA.",
                "responses": {"200": _json(_ref("TrustRoot"), "The trust root.")},
            }
        },
        "/sparql": {
            "get": {
                "summary": "Read-only SPARQL 1.1 over each supplier's latest feed (query timeout and result limit).",
                "parameters": [
                    _query(
                        "query",
                        "A SPARQL query (no updates, no SERVICE, at most 64 levels of nesting), once.",
                        required=True,
                    )
                ],
                "responses": SPARQL_RESPONSES,
            },
            "post": {
                "summary": "The same, with the query in the body (SPARQL 1.1 Protocol).",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/sparql-query": {"schema": {"type": "string"}},
                        "application/x-www-form-urlencoded": {
                            "schema": {
                                "type": "object",
                                "required": ["query"],
                                "properties": {"query": {"type": "string"}},
                            }
                        },
                    },
                },
                "responses": SPARQL_RESPONSES,
            },
        },
        "/operator/suppliers/{supplier}/verification": {
            "put": {
                "summary": "Set an identity's verification status (operator token).",
                "security": [{"operatorToken": []}],
                "parameters": [supplier],
                "requestBody": {
                    "required": True,
                    "content": {
                        JSON: {
                            "schema": {
                                "type": "object",
                                "required": ["status"],
                                "properties": {
                                    "status": {"enum": ["unverified", "verified", "suspended"]}
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["supplier", "verification", "changed"],
                            "properties": {
                                "changed": {
                                    "type": "boolean",
                                    "description": "Whether this logged a new entry (its "
                                    "logIndex, leaf and inclusionProof come with it).",
                                },
                                "logIndex": {"type": "integer"},
                            },
                        },
                        "Set, and logged when it changed.",
                    ),
                    **ERRORS,
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document.",
                "responses": {"200": _json({"type": "object"}, "The OpenAPI document.")},
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "SQM registry",
            "version": __version__,
            "summary": "Signed, timestamped, logged supplier quality claims, and search with proofs.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": "/api/v1"}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "responses": {
                "Error": _json(
                    _ref("Error"), "A refusal: a stable code and how to fix the request."
                )
            },
            "securitySchemes": {"operatorToken": {"type": "http", "scheme": "bearer"}},
        },
    }

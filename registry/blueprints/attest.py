"""Suppliers and attestations over HTTP: registration, ingest, bundles, the trust root."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, request

from sqm.registry.blueprints.common import bearer, fail, json_answer, json_body
from sqm.registry.ingest import Ingest, RejectionError

blueprint = Blueprint("attest", __name__)


def _ingest() -> Ingest:
    ingest: Ingest = current_app.extensions["sqm"]["ingest"]
    return ingest


def _json_body() -> Any:
    return json_body()


def _rejected(error: RejectionError) -> Any:
    return jsonify({"error": error.code, "message": error.message, **error.details}), error.status


@blueprint.post("/suppliers")
def register() -> Any:
    """Register a supplier identity with its Ed25519 key and proof of possession."""
    try:
        return jsonify(_ingest().register_supplier(_json_body())), 201
    except RejectionError as error:
        return _rejected(error)


@blueprint.post("/suppliers/<supplier>/keys")
def add_key(supplier: str) -> Any:
    """Rotate in a new key, authorised by one of the supplier's current keys."""
    try:
        return jsonify(_ingest().add_key(supplier, _json_body())), 201
    except RejectionError as error:
        return _rejected(error)


@blueprint.post("/attestations")
def attest() -> Any:
    """Submit a DSSE envelope; the answer is the offline bundle (201, or 409 when known)."""
    try:
        status, answer = _ingest().attest(_json_body())
    except RejectionError as error:
        return _rejected(error)
    return json_answer(answer, status)


@blueprint.post("/keys/<key>/revocation")
def revoke(key: str) -> Any:
    """Revoke a key from an effective time: signed by the key, or with the operator token."""
    token = current_app.extensions["sqm"]["config"].operator_token
    given = request.headers.get("Authorization", "")
    operator = bool(token) and bearer(given, token)
    if given and not operator:
        fail(401, "unauthorised", "the operator token does not match")
    try:
        return jsonify(_ingest().revoke_key(key, _json_body(), operator)), 201
    except RejectionError as error:
        return _rejected(error)


@blueprint.post("/endorsers")
def register_endorser() -> Any:
    """Register a certification body or auditor (an identity and its key) that may endorse."""
    try:
        return jsonify(_ingest().register_supplier(_json_body(), role="endorser")), 201
    except RejectionError as error:
        return _rejected(error)


@blueprint.post("/endorsements")
def endorse() -> Any:
    """Log an endorser's signed endorsement of a logged attestation."""
    try:
        status, answer = _ingest().endorse(_json_body())
        return jsonify(answer), status
    except RejectionError as error:
        return _rejected(error)


@blueprint.get("/attestations/<int:index>/endorsements")
def endorsements_of(index: int) -> Any:
    """The endorsements logged for the attestation at a log index."""
    return jsonify({"logIndex": index, "endorsements": _ingest().endorsements_of(index)})


@blueprint.get("/bundles/<int:index>")
def bundle_at(index: int) -> Any:
    """The offline bundle of the attestation or endorsement at a log index, against the newest
    checkpoint."""
    try:
        return json_answer(_ingest().bundle_at(index).to_json())
    except RejectionError as error:
        return _rejected(error)


@blueprint.get("/trust-root")
def trust_root() -> Any:
    """What verifiers trust: the log's origin and signed-note key, and the TSA's CA."""
    return jsonify(_ingest().log.trust_root().to_json())

"""The log over HTTP: the latest checkpoint, inclusion and consistency proofs, the trust root."""

from __future__ import annotations

import base64
from typing import Any

from flask import Blueprint, Response, jsonify, request

from sqm.registry.blueprints.common import fail, integer_arg, the_log

blueprint = Blueprint("log", __name__)


def _b64(items: list[bytes]) -> list[str]:
    return [base64.b64encode(item).decode() for item in items]


@blueprint.get("/log/checkpoint")
def checkpoint() -> Any:
    """The newest signed checkpoint (text/plain, the signed note exactly as signed)."""
    signed = the_log().latest()
    if signed is None:
        fail(404, "empty_log", "the log has no checkpoint yet")
    return Response(signed.note, content_type="text/plain; charset=utf-8")


@blueprint.get("/log/entries/<int:index>")
def entry(index: int) -> Any:
    """An entry's leaf and its inclusion proof to the tree of ``size`` (default: latest)."""
    log = the_log()
    signed = log.latest()
    size = (
        integer_arg(request.args, "size", 1)
        if "size" in request.args
        else (signed.checkpoint.size if signed else 0)
    )
    if size > log.size() or index >= size:
        fail(404, "no_such_entry", f"entry {index} is not in a tree of size {size}")
    return jsonify(
        {
            "logIndex": index,
            "leaf": base64.b64encode(log.leaf(index)).decode(),
            "inclusionProof": {"treeSize": size, "hashes": _b64(log.inclusion_proof(index, size))},
        }
    )


@blueprint.get("/log/consistency")
def consistency() -> Any:
    """The proof that the tree of ``new`` entries extends the tree of ``old``."""
    log = the_log()
    old, new = integer_arg(request.args, "old"), integer_arg(request.args, "new")
    if old > new:
        fail(400, "invalid_parameter", "old must not exceed new")
    if new > log.size():
        fail(404, "no_such_tree", f"the log has fewer than {new} entries")
    return jsonify({"old": old, "new": new, "hashes": _b64(log.consistency_proof(old, new))})

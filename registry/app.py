"""The registry's Flask application factory."""

from __future__ import annotations

import io
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask, jsonify, render_template, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.routing import IntegerConverter

from sqm.registry.config import RegistryConfig
from sqm.registry.db import make_engine
from sqm.registry.errors import DamagedStoreError, RegistryError
from sqm.registry.indexer import Indexer
from sqm.registry.ingest import Ingest
from sqm.registry.integrator import BackgroundIndexer, Integrator
from sqm.registry.log import TransparencyLog
from sqm.registry.profiles import Profiles
from sqm.registry.search import SupplierSearch
from sqm.registry.secrets import RegistryKeys, load_or_create
from sqm.registry.sparql import SparqlService
from sqm.registry.timestampers import ExternalTSA, OwnTSA, Timestamper, TimestampUnavailableError
from sqm.trust.timestamp import Authority

logger = logging.getLogger(__name__)
MAX_BIGINT = 2**63 - 1


class BoundedInteger(IntegerConverter):
    r"""``int`` path segments that fit a database BIGINT, in ASCII digits: Werkzeug's ``\d``
    also matches other scripts' digits ("٣" read as 3), so one entry had many URLs."""

    regex = r"[0-9]+"

    def __init__(self, url_map: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", MAX_BIGINT)
        super().__init__(url_map, *args, **kwargs)


def open_log(config: RegistryConfig, keys: RegistryKeys) -> TransparencyLog:
    """The log of the registry that ``config`` and ``keys`` describe: its database, origin,
    log key and TSAs, as the registry runs them."""
    return TransparencyLog(
        make_engine(config.url),
        config.origin,
        keys.log_key,
        keys.authority,
        timestampers=timestampers(config, keys.authority),
    )


def timestampers(config: RegistryConfig, authority: Authority) -> list[Timestamper]:
    """The TSAs that stamp checkpoints, the primary first, as configured."""
    own = OwnTSA(authority, lambda: datetime.now(UTC))
    if config.external_tsa_url is None:
        return [own]
    if config.external_tsa_mode not in ("instead", "also"):
        raise RegistryError(
            f"SQM_REGISTRY_TSA_MODE must be 'instead' or 'also', got {config.external_tsa_mode!r}"
        )
    if config.external_tsa_ca is None:
        raise RegistryError("an external TSA needs its CA certificate (SQM_REGISTRY_TSA_CA)")
    external = ExternalTSA.from_files(config.external_tsa_url, config.external_tsa_ca)
    return [external] if config.external_tsa_mode == "instead" else [own, external]


def create_app(config: RegistryConfig | None = None) -> Flask:
    """A registry for ``config`` (default: from the environment)."""
    config = config or RegistryConfig.from_env()
    app = Flask(__name__)
    # Path integers beyond a database BIGINT are no entry of this log: 404, not an overflow.
    app.url_map.converters["int"] = BoundedInteger
    app.config["MAX_CONTENT_LENGTH"] = config.max_request_bytes
    keys = load_or_create(config.data_dir / "keys", config.origin)
    log = open_log(config, keys)
    log.start_tsa_requirements()
    indexer = Indexer(log.engine)
    indexer.upgrade()  # an index made by an earlier version, brought up in place
    # With a background sweep the index follows the log within a second, in batches, off the
    # submitter's time; without one, each write brings it up to date before answering.
    ingest = Ingest(
        log,
        timedelta(hours=config.issued_window_hours),
        indexer=indexer if config.integrate_every is None else None,
    )
    # Resume after a crash: entries sequenced but never integrated go into the tree now.
    try:
        while log.integrate() is not None:
            pass
    except TimestampUnavailableError as exc:
        logger.warning("resuming integration at start-up failed, will retry: %s", exc)
    if config.integrate_every is None:  # else the workers' indexer processes catch up
        indexer.catch_up()
    app.extensions["sqm"] = {
        "config": config, "log": log, "keys": keys, "ingest": ingest, "indexer": indexer,
        "search": SupplierSearch(log, indexer),
        "profiles": Profiles(log.engine),
        "sparql": SparqlService(
            config.url, config.sparql_timeout_seconds, config.sparql_max_results,
            folder=config.data_dir / "sparql",
        ),
    }  # fmt: skip
    if config.integrate_every is not None:
        integrator = Integrator(
            log,
            config.integrate_every,
            BackgroundIndexer(config.url, config.integrate_every, config.index_trail),
        )
        integrator.start()
        app.extensions["sqm"]["integrator"] = integrator

    from sqm.registry.blueprints.attest import blueprint as attest_blueprint
    from sqm.registry.blueprints.log import blueprint as log_blueprint
    from sqm.registry.blueprints.openapi import blueprint as openapi_blueprint
    from sqm.registry.blueprints.operator import blueprint as operator_blueprint
    from sqm.registry.blueprints.pages import blueprint as pages_blueprint
    from sqm.registry.blueprints.resources import blueprint as resources_blueprint
    from sqm.registry.blueprints.search import blueprint as search_blueprint
    from sqm.registry.blueprints.sparql import blueprint as sparql_blueprint
    from sqm.registry.blueprints.tsa import blueprint as tsa_blueprint

    app.register_blueprint(log_blueprint, url_prefix="/api/v1")
    app.register_blueprint(tsa_blueprint, url_prefix="/api/v1")
    app.register_blueprint(attest_blueprint, url_prefix="/api/v1")
    app.register_blueprint(operator_blueprint, url_prefix="/api/v1")
    app.register_blueprint(search_blueprint, url_prefix="/api/v1")
    app.register_blueprint(resources_blueprint, url_prefix="/api/v1")
    app.register_blueprint(sparql_blueprint, url_prefix="/api/v1")
    app.register_blueprint(pages_blueprint)
    app.register_blueprint(openapi_blueprint, url_prefix="/api/v1")

    @app.before_request
    def _refuse_undecodable_query() -> Any:
        # Werkzeug decodes a raw query string as UTF-8 when it is first read, and raises on
        # bytes that are not: a 500 for whichever check read it first.
        try:
            request.query_string.decode("utf-8")
        except UnicodeDecodeError as exc:
            return _refused(
                400,
                "malformed_query_string",
                f"the query string is not UTF-8 (byte {exc.start}): percent-encode its text "
                "as UTF-8",
            )
        return None

    @app.before_request
    def _measure_streamed_body() -> Any:
        # A chunked body has no Content-Length, and Werkzeug cuts such a stream at
        # MAX_CONTENT_LENGTH without a word: read it whole here (the limit and one byte more)
        # so that one too large is refused with 413, and every check after sees all of it.
        environ = request.environ
        codings = [
            c.strip().lower()
            for c in environ.get("HTTP_TRANSFER_ENCODING", "").split(",")
            if c.strip()
        ]
        if any(c != "chunked" for c in codings):
            # RFC 9112 section 6.1: a transfer coding the server does not understand is a 501.
            return _refused(
                501,
                "unsupported_transfer_coding",
                f"this registry reads only the chunked transfer coding, not "
                f"{', '.join(c for c in codings if c != 'chunked')}: send the body as it is",
            )
        if environ.get("HTTP_CONTENT_ENCODING", "identity").strip().lower() != "identity":
            return _refused(
                415,
                "unsupported_content_encoding",
                f"this registry reads request bodies without a content coding, not "
                f"{environ['HTTP_CONTENT_ENCODING'][:40]!r}: send the body uncompressed",
            )
        if request.content_length is not None or "chunked" not in codings:
            return None
        limit = config.max_request_bytes
        stream = environ["wsgi.input"]
        chunks, size = [], 0
        try:
            while size <= limit:
                chunk = stream.read(min(65536, limit + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        except RequestEntityTooLarge:  # a chunk size over the limit (the registry's worker)
            raise
        except Exception as exc:  # the server's own error for a malformed chunk (gunicorn's)
            return _refused(400, "malformed_body", f"the chunked body cannot be read: {exc}")
        if size > limit:
            raise RequestEntityTooLarge()
        body = b"".join(chunks)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        environ.pop("wsgi.input_terminated", None)
        return None

    def _refused(status: int, code: str, message: str) -> Any:
        if not request.path.startswith("/api/"):
            page = render_template("error.html", status=status, code=code, message=message)
            return page, status
        return jsonify({"error": code, "message": message}), status

    @app.before_request
    def _refuse_nul() -> Any:
        # No SQM value holds U+0000, and PostgreSQL cannot store it in text: refuse it at the
        # door rather than fail deep inside.
        textual = request.mimetype in (
            "application/json", "application/x-www-form-urlencoded", "application/sparql-query",
        ) or request.mimetype.endswith("+json")  # fmt: skip
        body = request.get_data(cache=True) if textual else b""
        if (
            "\x00" in request.path
            or any("\x00" in k or "\x00" in v for k, v in request.args.items(multi=True))
            or b"\x00" in body
            or b"\\u0000" in body
        ):
            message = "requests may not contain U+0000 (NUL)"
            if not request.path.startswith("/api/"):
                return render_template(
                    "error.html", status=400, code="nul_character", message=message
                ), 400
            return jsonify({"error": "nul_character", "message": message}), 400
        return None

    @app.errorhandler(DamagedStoreError)
    def _damaged(error: DamagedStoreError) -> Any:
        # The operator's problem, not the client's: said plainly, logged, no traceback.
        app.logger.error("%s %s: %s", request.method, request.path, error)
        message = f"the registry cannot read what it stored for this request: {error}"
        if not request.path.startswith("/api/"):
            return render_template(
                "error.html", status=500, code="store_damaged", message=message
            ), 500
        return jsonify({"error": "store_damaged", "message": message}), 500

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Any:
        # Every client error is JSON with a stable code, never an HTML page or a 500.
        code = {
            413: "request_too_large",
            404: "not_found",
            405: "method_not_allowed",
            401: "unauthorised",
            406: "not_acceptable",
            415: "unsupported_media_type",
            500: "internal_error",
        }.get(error.code or 0, "bad_request")
        message = error.description or error.name
        if error.code == 413:
            message = f"the request body exceeds the limit of {config.max_request_bytes} bytes"
        headers = [(name, value) for name, value in error.get_headers() if name == "Allow"]
        if error.code == 405 and headers:
            message = f"{message} Allowed here: {headers[0][1]}."
        if not request.path.startswith("/api/"):  # a person's browser: a page, not JSON
            page = render_template("error.html", status=error.code, code=code, message=message)
            return page, error.code, headers
        return jsonify({"error": code, "message": message}), error.code, headers

    return app

"""The registry's Flask application factory."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from sqm.registry.config import RegistryConfig
from sqm.registry.db import make_engine
from sqm.registry.ingest import Ingest
from sqm.registry.integrator import Integrator
from sqm.registry.log import TransparencyLog
from sqm.registry.secrets import load_or_create


def create_app(config: RegistryConfig | None = None) -> Flask:
    """A registry for ``config`` (default: from the environment)."""
    config = config or RegistryConfig.from_env()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_request_bytes
    keys = load_or_create(config.data_dir / "keys", config.origin)
    log = TransparencyLog(make_engine(config.url), config.origin, keys.log_key, keys.authority)
    ingest = Ingest(log, timedelta(hours=config.issued_window_hours))
    # Resume after a crash: entries sequenced but never integrated go into the tree now.
    while log.integrate() is not None:
        pass
    app.extensions["sqm"] = {"config": config, "log": log, "keys": keys, "ingest": ingest}
    if config.integrate_every is not None:
        integrator = Integrator(log, config.integrate_every)
        integrator.start()
        app.extensions["sqm"]["integrator"] = integrator

    from sqm.registry.blueprints.attest import blueprint as attest_blueprint
    from sqm.registry.blueprints.log import blueprint as log_blueprint
    from sqm.registry.blueprints.operator import blueprint as operator_blueprint
    from sqm.registry.blueprints.tsa import blueprint as tsa_blueprint

    app.register_blueprint(log_blueprint, url_prefix="/api/v1")
    app.register_blueprint(tsa_blueprint, url_prefix="/api/v1")
    app.register_blueprint(attest_blueprint, url_prefix="/api/v1")
    app.register_blueprint(operator_blueprint, url_prefix="/api/v1")

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Any:
        # Every client error is JSON with a stable code, never an HTML page or a 500.
        code = {
            413: "request_too_large",
            404: "not_found",
            405: "method_not_allowed",
            401: "unauthorised",
        }.get(error.code or 0, "bad_request")
        message = error.description or error.name
        if error.code == 413:
            message = f"the request body exceeds the limit of {config.max_request_bytes} bytes"
        return jsonify({"error": code, "message": message}), error.code

    return app

"""gunicorn's own refusals as the registry's JSON errors, and chunked bodies refused at the
chunk size that takes them over the limit.

A request gunicorn cannot parse (a request line over ``limit_request_line``, too many or too
large header fields, a malformed request line, header or chunk, an unknown transfer coding)
never reaches the Flask app: gunicorn's ``Worker.handle_error`` answers it with an HTML page.
:class:`JsonRefusals` answers it as the app answers every error, ``{"error": code, "message":
...}`` with a stable code, the same status as gunicorn's and ``Connection: close``; gunicorn's
logging (its warning for a client's error, its traceback for anything else, the access log
line) is unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from http import HTTPStatus
from ssl import SSLError
from typing import Any

from gunicorn import util  # type: ignore[import-untyped]
from gunicorn.http.body import ChunkedReader  # type: ignore[import-untyped]
from gunicorn.http.errors import (  # type: ignore[import-untyped]
    ChunkMissingTerminator,
    ExpectationFailed,
    ForbiddenProxyRequest,
    InvalidChunkExtension,
    InvalidChunkSize,
    InvalidH2CPreface,
    InvalidHeader,
    InvalidHeaderName,
    InvalidHTTPVersion,
    InvalidProxyLine,
    InvalidRequestLine,
    InvalidRequestMethod,
    InvalidSchemeHeaders,
    LimitRequestHeaders,
    LimitRequestLine,
    ObsoleteFolding,
    ParseException,
    UnsupportedTransferCoding,
)
from gunicorn.http.message import (  # type: ignore[import-untyped]
    DEFAULT_MAX_HEADERFIELD_SIZE,
    MAX_HEADERS,
    MAX_REQUEST_LINE,
)
from werkzeug.exceptions import RequestEntityTooLarge

CHUNK_ERRORS = (InvalidChunkSize, ChunkMissingTerminator, InvalidChunkExtension)
DETAIL_CHARACTERS = 80  # of what gunicorn says about the client's bytes, quoted in a message
ANSWERED = "sqm_answered"  # set on a gunicorn Request once its response has been written


class JsonRefusals:
    """Mixin for a worker class derived from gunicorn's ``gthread`` ``ThreadWorker``, listed
    before it: gunicorn's refusals as JSON errors, and a chunked body refused with 413 at the
    chunk size that takes it over the app's ``MAX_CONTENT_LENGTH``."""

    cfg: Any  # gunicorn's Config, set by its Worker
    log: Any  # gunicorn's logger
    wsgi: Any  # the application: the registry's Flask app

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """Answer ``exc``, which ended the request on socket ``client``, as ``{"error": code,
        "message": ...}`` with gunicorn's status; nothing if the request had its answer (the
        error came from draining its unread body)."""
        # gunicorn's handle_error logs, picks the status and writes its page: the page goes to
        # a buffer, which leaves its logging as it is and tells the status it chose.
        page = _Buffer()
        super().handle_error(req, page, addr, exc)  # type: ignore[misc]  # gunicorn's Worker, next in the MRO
        if getattr(req, ANSWERED, False):
            # Draining the body the app left unread failed after its answer went out: gunicorn
            # wrote its page behind that answer, which a client reads as the next response.
            return
        status = page.status() or (400 if isinstance(exc, ParseException) else 500)
        code, message = refusal(exc, status, self.cfg)
        try:
            util.write_nonblock(client, answer(status, code, message))
        except Exception:  # the client has gone (as gunicorn's own write_error is guarded)
            self.log.debug("Failed to send error message.")

    def handle_request(self, req: Any, conn: Any) -> Any:
        """gthread's ``handle_request``, with a chunked body bounded by its announced size."""
        bound = _bound_chunks(req, _body_limit(self.wsgi))
        try:
            keep_alive = super().handle_request(req, conn)  # type: ignore[misc]  # gunicorn's ThreadWorker
        finally:
            if bound is not None:
                # After the app has answered, gunicorn drains what it left unread, within its
                # own time and byte bounds; a refusal then would follow the answer.
                bound.armed = False
        setattr(req, ANSWERED, True)
        return keep_alive


def refusal(exc: BaseException, status: int, cfg: Any) -> tuple[str, str]:
    """The stable error code and the message (what was wrong, how to fix it, the limit if one
    was passed) for ``exc``, which gunicorn answers with ``status``, under gunicorn ``cfg``."""
    if status >= 500 and status != 501:
        # Not the client's doing (gunicorn logged it, with its traceback): nothing is told.
        return "internal_error", (
            "the server failed on this request before the registry could answer it; the cause "
            "is in the server's log: try again later, and tell the registry's operator if it "
            "persists"
        )
    if isinstance(exc, LimitRequestLine):
        limit = exc.max_size if isinstance(exc.max_size, int) else _request_line_limit(cfg)
        return "request_line_too_long", (
            f"the request line (method, target and HTTP version) is longer than this server's "
            f"limit of {limit} bytes: shorten the target, its path and query string"
        )
    if isinstance(exc, LimitRequestHeaders):
        return _header_refusal(str(exc), cfg)
    if isinstance(exc, UnsupportedTransferCoding):
        # The app's words for the same refusal (registry/app.py, _measure_streamed_body).
        return "unsupported_transfer_coding", (
            f"this registry reads only the chunked transfer coding, not {_detail(exc.hdr)}: "
            "send the body as it is"
        )
    if isinstance(exc, CHUNK_ERRORS):
        # The app's code when it meets a malformed chunk itself (_measure_streamed_body).
        return "malformed_body", (
            f"the chunked body cannot be read ({_cut(str(exc))}): send each chunk as its "
            "size in hexadecimal digits, CRLF, its data and CRLF, and end with a chunk of size "
            "0 and an empty line (RFC 9112 section 7.1)"
        )
    if isinstance(exc, ExpectationFailed):
        return "expectation_failed", (
            f"this server meets only the expectation 100-continue, not {_detail(exc.expect)}: "
            "leave out the Expect header or send 'Expect: 100-continue'"
        )
    if isinstance(exc, ForbiddenProxyRequest):
        return "proxy_not_allowed", (
            "this server takes PROXY protocol headers only from the proxies it is configured to "
            "trust: connect through one of them"
        )
    if isinstance(exc, SSLError):
        return "tls_error", (
            "the TLS connection failed: check the client's TLS version, ciphers and trust in "
            "the server's certificate"
        )
    return ("malformed_request" if status == 400 else "bad_request"), _malformed(exc)


def answer(status: int, code: str, message: str) -> bytes:
    """The whole HTTP/1.1 response, which closes the connection: where the next request
    would start is unknown after a refusal."""
    # As the app's jsonify writes it; json.dumps escapes any non-ASCII, so latin-1 is safe.
    body = json.dumps({"error": code, "message": message}, separators=(",", ":")) + "\n"
    # Hand-written as gunicorn's write_error writes its page: no response object exists here.
    head = (
        f"HTTP/1.1 {status} {_phrase(status)}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return (head + body).encode("latin-1")


def _malformed(exc: BaseException) -> str:
    """The message for a request gunicorn could not parse (400)."""
    if isinstance(exc, InvalidRequestLine):
        return (
            f"the request line {_detail(exc.req)} is malformed: send the method, the target "
            "and the version separated by single spaces and ended by CRLF, as in "
            "'GET /api/v1/trust-root HTTP/1.1' (RFC 9112 section 3)"
        )
    if isinstance(exc, InvalidRequestMethod):
        return (
            f"the method {_detail(exc.method)} is not one this server accepts: use an "
            "upper-case method such as GET or POST"
        )
    if isinstance(exc, InvalidHTTPVersion):
        version = exc.version  # the parsed (major, minor), or the text that did not parse
        if isinstance(version, tuple):
            version = "HTTP/" + ".".join(str(part) for part in version)
        return f"the HTTP version {_detail(version)} is not one this server speaks: send HTTP/1.1"
    if isinstance(exc, InvalidHeaderName):
        return (
            f"the header field name {_detail(exc.hdr)} is not valid: a name is a token of "
            "letters, digits and !#$%&'*+-.^`|~ (RFC 9110 section 5.1); this server refuses "
            "an underscore in one too, which the app would read as a hyphen"
        )
    if isinstance(exc, ObsoleteFolding):
        return (
            f"the header field {_detail(exc.hdr)} continues on a line that starts with white "
            "space (obsolete line folding, RFC 9112 section 5.2): send each field on one line"
        )
    if isinstance(exc, InvalidHeader) and str(exc.hdr).upper() in (
        "CONTENT-LENGTH",
        "TRANSFER-ENCODING",
    ):
        return (
            f"the body's framing ({exc.hdr.title()}) is ambiguous or malformed: send either "
            "one Content-Length of decimal digits or 'Transfer-Encoding: chunked' (HTTP/1.1), "
            "never both (RFC 9112 section 6)"
        )
    if isinstance(exc, InvalidHeader):
        return (
            f"the header section is malformed at {_detail(exc.hdr)}: send each field once as "
            "'Name: value' ended by CRLF, without control characters, and a field that may "
            "appear once (Host, Content-Type, ...) only once"
        )
    if isinstance(exc, InvalidSchemeHeaders):
        return (
            "the request's scheme headers (X-Forwarded-Proto and the like) contradict each "
            "other: send one, or several that agree"
        )
    if isinstance(exc, InvalidProxyLine):
        return f"the PROXY protocol line {_detail(exc.line)} is malformed: send a PROXY v1 line"
    if isinstance(exc, InvalidH2CPreface):
        return "the HTTP/2 connection preface is malformed: start HTTP/2 with its preface"
    return f"the request cannot be parsed ({_cut(str(exc))}): send a well-formed HTTP/1.1 request"


def _header_refusal(reason: str, cfg: Any) -> tuple[str, str]:
    """Code and message for gunicorn's ``LimitRequestHeaders(reason)`` (431)."""
    fields, size = _header_limits(cfg)
    if reason == "limit request headers fields":
        return "too_many_headers", (
            f"the request has more header fields than this server's limit of {fields}: send fewer"
        )
    if reason == "limit request headers fields size":
        return "header_too_large", (
            f"a header field is longer than this server's limit of {size} bytes (its name, "
            "value and line end): shorten it"
        )
    if reason.startswith("limit request trailer"):
        return "header_section_too_large", (
            f"the chunked body's trailer section is longer than this server allows ({fields} "
            f"fields of at most {size} bytes): send fewer or shorter trailer fields"
        )
    return "header_section_too_large", (
        f"the request's header section is longer than this server allows ({fields} fields of "
        f"at most {size} bytes each): send fewer or shorter header fields"
    )


def _request_line_limit(cfg: Any) -> int:
    """The request line limit gunicorn's parser applies under ``cfg`` (as Request sets it)."""
    limit = int(cfg.limit_request_line)
    if limit == 0:
        return 1024 * 1024  # "no limit": gunicorn_h1c's parser still stops at 1 MiB
    return int(MAX_REQUEST_LINE) if limit < 0 or limit >= MAX_REQUEST_LINE else limit


def _header_limits(cfg: Any) -> tuple[int, int]:
    """How many header fields, and how long each, gunicorn's parser allows (as Message sets
    them from ``cfg``)."""
    fields = int(cfg.limit_request_fields)
    if fields <= 0 or fields > MAX_HEADERS:
        fields = MAX_HEADERS
    size = int(cfg.limit_request_field_size)
    if size <= 0:
        size = DEFAULT_MAX_HEADERFIELD_SIZE
    return fields, size


def _detail(value: object) -> str:
    """``value`` (the client's bytes, as gunicorn reports them) quoted, and cut short."""
    return repr(_cut(str(value)))


def _cut(text: str) -> str:
    """``text`` cut short: what a client sent may be kilobytes long."""
    return text if len(text) <= DETAIL_CHARACTERS else text[:DETAIL_CHARACTERS] + "..."


def _phrase(status: int) -> str:
    """The standard reason phrase (gunicorn writes "Bad Request" for its 501)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class _Buffer:
    """A socket that keeps what is written to it: gunicorn's error page."""

    def __init__(self) -> None:
        self.written = bytearray()

    def gettimeout(self) -> float:
        return 0.0  # non-blocking: util.write_nonblock then writes without switching modes

    def setblocking(self, flag: bool) -> None:
        pass

    def sendall(self, data: bytes) -> None:
        self.written += data

    def send(self, data: bytes) -> int:
        self.written += data
        return len(data)

    def status(self) -> int | None:
        """The status of the response written, if one was."""
        parts = bytes(self.written).split(b"\r\n", 1)[0].split()
        if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
            return int(parts[1])
        return None


def _body_limit(app: Any) -> int | None:
    """The largest request body ``app`` takes: a Flask app's ``MAX_CONTENT_LENGTH``."""
    config = getattr(app, "config", None)
    limit = config.get("MAX_CONTENT_LENGTH") if isinstance(config, Mapping) else None
    return limit if isinstance(limit, int) else None


class _ChunkBound:
    """Stands in for a ChunkedReader's ``parse_chunk_size``: refuses the body with 413 at the
    chunk size line that takes the sizes announced so far over ``limit``, before its data
    arrives. Reading a body that announces ``ffffffffff`` otherwise waits for the limit's worth
    of data (4 MiB) before the app's own check sees it too large: a client that sends no more
    holds a thread until it closes."""

    def __init__(self, parse: Callable[..., tuple[int, Any]], req: Any, limit: int) -> None:
        self.parse, self.req, self.limit = parse, req, limit
        self.announced = 0
        self.armed = True

    def __call__(self, *args: Any, **kwargs: Any) -> tuple[int, Any]:
        size, rest = self.parse(*args, **kwargs)
        self.announced += size
        if self.armed and self.announced > self.limit:
            self.req.force_close()  # the rest of the body stays unread: no next request here
            raise RequestEntityTooLarge(
                f"the chunked body announces more than the limit of {self.limit} bytes"
            )
        return size, rest


def _bound_chunks(req: Any, limit: int | None) -> _ChunkBound | None:
    """Bound ``req``'s chunked body (if it has one) to ``limit`` bytes as sizes are read."""
    reader = getattr(getattr(req, "body", None), "reader", None)
    if limit is None or not isinstance(reader, ChunkedReader):
        return None
    # parse_chunked looks parse_chunk_size up on the reader at each chunk, and has not started.
    bound = _ChunkBound(reader.parse_chunk_size, req, limit)
    reader.parse_chunk_size = bound
    return bound

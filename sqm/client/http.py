"""JSON over HTTP for the client.

The standard library's urllib is enough for a handful of JSON calls and keeps the client free
of extra dependencies for suppliers who only sign and submit.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from typing import Any

from sqm.client.errors import ClientError

USER_AGENT = "sqm-client/0.1"
# The largest answer read: a bundle holds a feed of up to the registry's request limit (4 MiB
# by default) with its proofs; beyond this, an answer is not the registry's.
MAX_ANSWER_BYTES = 64 * 1024 * 1024


class Transport:
    """Sends JSON requests to one registry's API root (``…/api/v1``)."""

    def __init__(self, api_root: str, timeout: float = 30.0) -> None:
        self.api_root = api_root.rstrip("/")
        self.timeout = timeout

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        """(status, decoded JSON) of a 2xx or 409 answer; other answers raise ClientError.

        409 is returned, not raised: the registry answers an exact resubmission with 409 and
        the existing entry, which a client wants to use.
        """
        url = f"{self.api_root}{path}"
        data = None if body is None else json.dumps(body).encode()
        sent = {"Accept": "application/json", "User-Agent": USER_AGENT, **(headers or {})}
        if data is not None:
            sent["Content-Type"] = "application/json"
        request = urllib.request.Request(url, data=data, method=method, headers=sent)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, _decode(_read(response, url), url, response.status)
        except urllib.error.HTTPError as error:
            answer = _decode(_read(error, url), url, error.code)
            if error.code == 409 and isinstance(answer, dict):
                return 409, answer
            if isinstance(answer, dict) and isinstance(answer.get("error"), str):
                details = {k: v for k, v in answer.items() if k not in ("error", "message")}
                raise ClientError(
                    error.code, answer["error"], str(answer.get("message", "")), details
                ) from None
            raise ClientError(error.code, "http_error", f"{url} answered {error.code}") from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise ClientError(0, "unreachable", f"cannot reach {url}: {reason}") from None
        except http.client.HTTPException as error:
            # A cut-off answer (IncompleteRead) or one that is not HTTP (BadStatusLine).
            raise ClientError(
                0, "unreachable", f"{url} did not answer in HTTP: {type(error).__name__}"
            ) from None


def _read(response: Any, url: str) -> bytes:
    """The answer's body, at most MAX_ANSWER_BYTES; ClientError for one that was cut off
    (no verdict: status 0) or is larger."""
    raw: bytes = response.read(MAX_ANSWER_BYTES + 1)
    if len(raw) > MAX_ANSWER_BYTES:
        raise ClientError(
            getattr(response, "status", 0),
            "answer_too_large",
            f"{url} answered with more than {MAX_ANSWER_BYTES // (1024 * 1024)} MiB",
        )
    # http.client counts down the Content-Length as it reads; read(n) returns what came
    # before the connection closed, without raising IncompleteRead as read() would.
    source = response if isinstance(response, http.client.HTTPResponse) else response.fp
    if getattr(source, "length", None):
        raise ClientError(0, "unreachable", f"{url} cut its answer off before its end")
    return raw


def _decode(raw: bytes, url: str, status: int) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise ClientError(
            status, "not_json", f"{url} answered {status} with something other than JSON"
        ) from None

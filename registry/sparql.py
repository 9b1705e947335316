"""A read-only SPARQL endpoint over the registry's current data: each supplier's latest feed,
in the standard's RDF, in a named graph per supplier, with the log entry that proves it.

Queries run in a child process that holds an Oxigraph store (pyoxigraph, a Rust SPARQL 1.1
engine: 12 to 25 times faster than rdflib on typical buyer queries over 200 feeds, and 4 times
faster to load; `python benchmarks/sparql_engines.py`). Oxigraph has no query timeout, so the child is what makes one possible:
a query that overruns is stopped by ending the child, and the next query starts a fresh one.
Answers are cut at a result limit. Only queries run (the engine's query entry point refuses
updates), and SERVICE, which would make the registry call other endpoints, is refused.

The store is kept on disk (``<data dir>/sparql/slot-N``), so that a child that is stopped, or
a registry that restarts, reopens it and loads only what changed since, instead of the whole
registry (at 100,000 suppliers, minutes). Oxigraph lets one process at a time open a store
(a reader beside a writer is undefined behaviour), so each registry process's child takes a
store of its own: the first free slot, held by a file lock while the child lives. Like the
search index, the store is derived data: it can be deleted at any time and is then rebuilt.
"""

from __future__ import annotations

import fcntl
import hashlib
import multiprocessing
import os
import re
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any

from sqm.registry.errors import RegistryError

MAX_QUERY_CHARS = 10_000
REGISTRY = "https://w3id.org/sqm/v0.1/registry/"
MAX_SLOTS = 64  # stores per data folder: one per registry process that runs SPARQL at once
# Feeds loaded between flushes of the store's write buffers. Unflushed, RocksDB keeps every
# write-ahead log file, and a child that was killed (a query timeout, a worker restart) made
# the next one replay them all: 110 s and 25 GB after building 100,000 suppliers' feeds.
FLUSH_EVERY = 2000
# Strings, IRIs and comments hide keywords; what remains is checked for SERVICE.
_HIDDEN = re.compile(
    r'"""(?:[^"\\]|\\.|"(?!""))*"""'
    r"|'''(?:[^'\\]|\\.|'(?!''))*'''"
    r'|"(?:[^"\\\n]|\\.)*"'
    r"|'(?:[^'\\\n]|\\.)*'"
    r"|<[^<>\"{}|^`\\\s]*>|#[^\n]*",
    re.DOTALL,
)
_SERVICE = re.compile(r"\bSERVICE\b", re.IGNORECASE)


@dataclass
class SparqlError(RegistryError):
    """A query the endpoint refuses: a stable code and how to fix it."""

    code: str
    message: str
    status: int = 400
    retry_after: int | None = None  # seconds, for a 503

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@dataclass(frozen=True)
class Answer:
    body: bytes
    mimetype: str
    truncated: bool


def check_query(text: str) -> None:
    """Refuse what must never run, before any engine sees it."""
    if len(text) > MAX_QUERY_CHARS:
        raise SparqlError(
            "query_too_large", f"a query may have at most {MAX_QUERY_CHARS} characters"
        )
    if _SERVICE.search(_HIDDEN.sub(" ", text)):
        raise SparqlError(
            "service_not_allowed",
            "SERVICE (federated queries to other endpoints) is not allowed here",
        )


# --- the child process --------------------------------------------------------------------------


def _term(term: Any) -> dict[str, str]:
    import pyoxigraph as ox

    if isinstance(term, ox.NamedNode):
        return {"type": "uri", "value": term.value}
    if isinstance(term, ox.BlankNode):
        return {"type": "bnode", "value": term.value}
    result = {"type": "literal", "value": term.value}
    if term.language:
        result["xml:lang"] = term.language
    elif term.datatype.value != "http://www.w3.org/2001/XMLSchema#string":
        result["datatype"] = term.datatype.value
    return result


class _Store:
    """The child's store, kept in step with the registry's index; on disk in a free slot of
    ``folder`` when given (see the module's docstring), else in memory."""

    def __init__(self, database_url: str, folder: Path | None = None) -> None:
        import pyoxigraph as ox

        from sqm.registry.db import make_engine

        self.ox = ox
        self.engine = make_engine(database_url)
        self.slot: Path | None = None
        self._lock: int | None = None
        if folder is None:
            self.store = ox.Store()
        else:
            self.slot = self._take_slot(folder)
            self.store = ox.Store(str(self.slot))
        self.position = self._resume()

    def _take_slot(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for number in range(MAX_SLOTS):
            handle = os.open(folder / f"slot-{number}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(handle)
                continue
            self._lock = handle  # held for the child's life; the kernel lets go when it ends
            return folder / f"slot-{number}"
        raise SparqlError(
            "sparql_unavailable",
            f"every SPARQL store slot in {folder} is in use ({MAX_SLOTS} registry processes)",
            503,
        )

    def _first_leaf(self) -> str | None:
        from sqlalchemy import select

        from sqm.registry.db import log_entries

        with self.engine.connect() as connection:
            leaf = connection.execute(
                select(log_entries.c.leaf).where(log_entries.c.idx == 0)
            ).scalar()
        return None if leaf is None else hashlib.sha256(bytes(leaf)).hexdigest()

    def _resume(self) -> int:
        """The last log index the store holds (-1 for a new store, or one cleared because it
        was built from another log: the data folder reused for another database).

        Why the position needs no record of its own: suppliers are loaded in the order of
        their latest index, and each one's log-entry statements are written after its feed,
        so every supplier up to the greatest log index in the store is complete (a child
        stopped halfway through one leaves that one to be loaded again)."""
        if self.slot is None:
            return -1
        # What the store was built from: the SHA-256 of the log's first leaf, beside it.
        source = self.slot.with_suffix(".source")
        first = self._first_leaf()
        recorded = source.read_text().strip() if source.exists() else None
        if first is None or recorded != first:
            self.store.clear()
            if first is None:
                source.unlink(missing_ok=True)
            else:
                source.write_text(first + "\n")  # after the clear: a stop between redoes both
            return -1
        found: Any = self.store.query(
            f"SELECT (MAX(?index) AS ?last) WHERE {{ GRAPH ?g {{ ?entry <{REGISTRY}logIndex> ?index }} }}"
        )
        last = next(iter(found))["last"]
        return -1 if last is None else int(last.value)

    def close(self) -> None:
        """Let go of the store and its slot (a child that ends lets go of both anyway)."""
        del self.store
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def refresh(self, progress: Any = None) -> int:
        """Load the feeds that became suppliers' latest since the last refresh; how many.
        ``progress``: a shared counter (``multiprocessing.Value``) that follows that number."""
        import json

        from sqlalchemy import select

        from sqm.registry.db import index_suppliers
        from sqm.registry.profiles import Profiles
        from sqm.schema.rdf import typed_jsonld

        ox = self.ox
        profiles = Profiles(self.engine)
        with self.engine.connect() as connection:
            changed = connection.execute(
                select(index_suppliers.c.supplier, index_suppliers.c.latest_index)
                .where(index_suppliers.c.latest_index > self.position)
                .order_by(index_suppliers.c.latest_index)
            ).all()
        if changed and self.position < 0 and self.slot is not None:
            self._resume()  # the log may have begun since the store was opened: record it
        loaded = 0
        for supplier, index in changed:
            feed = profiles.feed(int(index))
            if feed is None:
                continue
            graph = ox.NamedNode(f"{REGISTRY}supplier/{supplier}")
            self.store.clear_graph(graph)
            self.store.load(
                json.dumps(typed_jsonld(feed, used_terms_only=True)).encode(),
                format=ox.RdfFormat.JSON_LD,
                to_graph=graph,
            )
            entry = ox.NamedNode(f"{REGISTRY}log-entry/{int(index)}")
            # In one transaction, after the feed: the store's position is its greatest logIndex.
            self.store.extend(
                ox.Quad(entry, ox.NamedNode(f"{REGISTRY}{predicate}"), value, graph)
                for predicate, value in (
                    (
                        "logIndex",
                        ox.Literal(
                            str(int(index)),
                            datatype=ox.NamedNode("http://www.w3.org/2001/XMLSchema#integer"),
                        ),
                    ),
                    ("supplier", ox.Literal(str(supplier))),
                    ("bundle", ox.Literal(f"/api/v1/bundles/{int(index)}")),
                )
            )
            self.position = max(self.position, int(index))
            loaded += 1
            if progress is not None:
                progress.value = loaded
            if loaded % FLUSH_EVERY == 0:
                self.store.flush()
        if loaded:
            self.store.flush()
        return loaded

    def run(self, text: str, limit: int, rdf_format: str) -> tuple[bytes, str, bool]:
        import json

        ox = self.ox
        try:
            results: Any = self.store.query(text, use_default_graph_as_union=True)
        except SyntaxError as exc:
            raise SparqlError("malformed_query", f"the query does not parse: {exc}") from None
        if isinstance(results, ox.QueryBoolean):
            body = json.dumps({"head": {}, "boolean": bool(results)}).encode()
            return body, "application/sparql-results+json", False
        if isinstance(results, ox.QueryTriples):
            triples: list[Any] = []
            for triple in results:
                if len(triples) == limit:
                    return self._triples(triples, rdf_format), rdf_format, True
                triples.append(triple)
            return self._triples(triples, rdf_format), rdf_format, False
        variables = [v.value for v in results.variables]
        bindings: list[dict[str, Any]] = []
        truncated = False
        for solution in results:
            if len(bindings) == limit:
                truncated = True
                break
            bindings.append(
                {name: _term(solution[name]) for name in variables if solution[name] is not None}
            )
        document = {"head": {"vars": variables}, "results": {"bindings": bindings}}
        return json.dumps(document).encode(), "application/sparql-results+json", truncated

    def _triples(self, triples: list[Any], rdf_format: str) -> bytes:
        ox = self.ox
        chosen = ox.RdfFormat.TURTLE if rdf_format == "text/turtle" else ox.RdfFormat.N_TRIPLES
        output: bytes = ox.serialize(triples, format=chosen)
        return output


def _serve(pipe: Pipe, database_url: str, folder: Path | None, progress: Any) -> None:
    try:
        store = _Store(database_url, folder)
    except SparqlError as error:
        pipe.send(("unavailable", error.message))
        return
    loaded = store.refresh(progress)
    pipe.send(("ready", (store.position, loaded)))

    def keep_up() -> None:  # new feeds join the store while queries run
        while True:
            time.sleep(1.0)
            try:
                store.refresh()
            except Exception:
                continue

    threading.Thread(target=keep_up, daemon=True).start()
    while True:
        try:
            text, limit, rdf_format = pipe.recv()
        except EOFError:
            return
        try:
            pipe.send(("ok", *store.run(text, limit, rdf_format)))
        except SparqlError as error:
            pipe.send(("refused", error.code, error.message, False))
        except Exception as exc:
            pipe.send(("failed", type(exc).__name__, str(exc), False))


# --- the parent side ----------------------------------------------------------------------------


class SparqlService:
    """Runs queries in a child process, one at a time per registry process, with a timeout.

    The child loads the current data when it starts and then follows the index in the
    background; each query has ``timeout`` seconds. Loading may take longer than any request
    may wait (a large registry, a worker timeout): a query that arrives meanwhile waits at most
    ``timeout`` seconds, then gets 503 ``sparql_loading`` with Retry-After while the child
    goes on loading; a load that has loaded no feed for ``load_timeout`` seconds is stopped
    and started again. With a ``folder`` the store is kept on disk there: a new child (after
    a timeout or a restart) loads only what changed since the last one (see the module's
    docstring); without one it is in memory, loaded in full by every child.
    """

    def __init__(
        self,
        database_url: str,
        timeout: float = 5.0,
        max_results: int = 10_000,
        load_timeout: float = 300.0,
        folder: Path | None = None,
    ) -> None:
        self.database_url = database_url
        self.folder = folder
        self.timeout = timeout
        self.max_results = max_results
        self.load_timeout = load_timeout
        self._lock = threading.Lock()
        self._child: Any = None
        self._pipe: Pipe | None = None
        self._ready = False
        self._started = 0.0
        self._progress: Any = None  # feeds the loading child has loaded (shared memory)
        self._progressed = (0, 0.0)  # the last count seen, and when it was first seen
        # The last child's start: the log index it held, and how many feeds it had to load.
        self.started_with: tuple[int, int] | None = None

    def _engine(self) -> Pipe:
        """The child's pipe once it has loaded; started on first use."""
        if self._pipe is None:
            context = multiprocessing.get_context("spawn")  # no inherited threads or connections
            parent, child = context.Pipe()
            # A counter, not messages on the pipe: nobody reads the pipe between queries, and
            # a long load would fill it.
            self._progress = context.Value("q", 0, lock=False)
            self._child = context.Process(
                target=_serve,
                args=(child, self.database_url, self.folder, self._progress),
                name="sqm-sparql",
                daemon=True,
            )
            self._child.start()
            child.close()
            self._pipe, self._ready, self._started = parent, False, time.monotonic()
            self._progressed = (0, self._started)
        pipe = self._pipe
        if not self._ready:
            if not pipe.poll(self.timeout):
                now = time.monotonic()
                loaded = int(self._progress.value)
                if loaded != self._progressed[0]:
                    self._progressed = (loaded, now)
                if now - self._progressed[1] > self.load_timeout:
                    self.stop()  # the next query starts a fresh load, from where this one was
                    message = (
                        f"the SPARQL engine loaded nothing for {self.load_timeout:g} s and was "
                        "restarted; retry later"
                    )
                else:
                    message = (
                        f"the SPARQL engine is loading the registry's data ({loaded:,} "
                        f"suppliers' feeds in {now - self._started:.0f} s so far); retry later"
                    )
                raise SparqlError("sparql_loading", message, 503, retry_after=30)
            kind, detail = pipe.recv()  # ("ready", (position, loaded)) or ("unavailable", why)
            if kind != "ready":
                self.stop()
                raise SparqlError("sparql_unavailable", str(detail), 503, retry_after=30)
            self.started_with = detail
            self._ready = True
        return pipe

    def stop(self) -> None:
        if self._child is not None:
            self._child.kill()
            self._child.join(timeout=5)
        if self._pipe is not None:
            self._pipe.close()
        self._child, self._pipe, self._ready = None, None, False

    def query(self, text: str, rdf_format: str = "text/turtle", limit: int | None = None) -> Answer:
        """Run a query; raises SparqlError for a refused, malformed or overlong query."""
        check_query(text)
        cap = min(limit or self.max_results, self.max_results)
        if not self._lock.acquire(timeout=self.timeout):
            raise SparqlError(
                "sparql_busy", "the SPARQL engine is busy with other queries; retry shortly", 503
            )
        try:
            pipe = self._engine()
            pipe.send((text, cap, rdf_format))
            if not pipe.poll(self.timeout):
                self.stop()
                raise SparqlError(
                    "query_timeout",
                    f"the query ran longer than {self.timeout:g} s and was stopped; narrow it "
                    "(filter by supplier or metric, add LIMIT)",
                )
            kind, *rest = pipe.recv()
        except (EOFError, OSError):
            self.stop()
            raise SparqlError(
                "sparql_unavailable", "the SPARQL engine stopped; retry", 503
            ) from None
        finally:
            self._lock.release()
        if kind == "ok":
            body, mimetype, truncated = rest
            return Answer(body, mimetype, truncated)
        if kind == "refused":
            code, message, _ = rest
            raise SparqlError(code, message)
        name, message, _ = rest
        raise SparqlError("query_failed", f"the query failed ({name}): {message}")

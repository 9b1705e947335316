"""A read-only SPARQL endpoint over the registry's current data: each supplier's latest feed,
in the standard's RDF, in a named graph per supplier, with the log entry that proves it.

Queries run in a child process that holds an Oxigraph store (pyoxigraph, a Rust SPARQL 1.1
engine: 12 to 25 times faster than rdflib on typical buyer queries over 200 feeds, and 4 times
faster to load; `python benchmarks/sparql_engines.py`). Oxigraph has no query timeout, so the child is what makes one possible:
a query that overruns is stopped by ending the child, and the next query starts a fresh one.
Answers are cut at a result limit. Only queries run (the engine's query entry point refuses
updates), and SERVICE, which would make the registry call other endpoints, is refused, as is a
query that nests deeper than MAX_DEPTH (Oxigraph recurses: a deep one crashed the engine) or
has more terms than MAX_TERMS (planning many triple patterns took longer than the timeout).

The store is kept on disk (``<data dir>/sparql/store``), so that an engine that is stopped, or
a registry that restarts, reopens it and loads only what changed since, instead of the whole
registry (at 100,000 suppliers, minutes). Oxigraph lets one process at a time open a store (a
reader beside a writer is undefined behaviour), so one engine process per data folder holds
it, by a file lock, and every registry process of that folder sends its queries there over a
local socket: one store on disk, one load, one copy in the page cache, however many workers
gunicorn runs. Like the search index, the store is derived data: it can be deleted at any time
and is then rebuilt.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import multiprocessing
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Client, Listener, answer_challenge, deliver_challenge
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any, NamedTuple

from sqm.registry.errors import RegistryError

logger = logging.getLogger(__name__)

MAX_QUERY_CHARS = 10_000
# Levels of (), {}, [] and ! in a row that a query may nest. Oxigraph parses and evaluates by
# recursion: 2,200 nested groups overflowed its stack and crashed the engine, and with it
# every query running there. No sensible query nests more than a dozen.
MAX_DEPTH = 64
# Terms a query may have (see scan: variables, IRIs, prefixed names, literals, "a", and each
# "(" and "["), counted inside {} but not in VALUES data or IN lists. Oxigraph plans
# a query's triple patterns together, before it reads any data, at a cost that grows with about
# the fourth power of their number when they share a variable: ?s sqm:cpk ?o1, ?o2, ... took
# 0.08 s with 50 objects, 1.4 s with 100 and 8.2 s with 150 (1,003 characters), past the
# timeout, which stops the engine and every query running there. Every pattern has a term of
# its own (its object, or its step of a path), so this bounds them. At 80 terms the costliest
# shapes found (stars of 78 objects) took 0.4 to 0.9 s on a 2-core machine, and OPTIONALs,
# chains, paths, collections and subqueries less; the buyer's guide's query has 33.
MAX_TERMS = 80
# The stack of the engine's threads, which run the queries. Some flat queries still make deep
# trees in Oxigraph: ORDER BY (1)(1)... overflowed the 8 MB default at 2,600 conditions, and
# a collection ( 1 1 1 ... ) of 5,000 did too. With 16 MB no such query of MAX_QUERY_CHARS
# tried crashed (the collection runs past the timeout instead); this is 4 times that.
# Address space, not memory: a thread touches what it uses.
QUERY_STACK_BYTES = 64 * 1024 * 1024
REGISTRY = "https://w3id.org/sqm/v0.1/registry/"
# Feeds loaded between flushes of the store's write buffers. Unflushed, RocksDB keeps every
# write-ahead log file, and a child that was killed (a query timeout, a worker restart) made
# the next one replay them all: 110 s and 25 GB after building 100,000 suppliers' feeds.
FLUSH_EVERY = 2000
KEY_BYTES = 32  # the engine's HMAC key; shorter keys are replaced (an empty one turns it off)
HANDSHAKE_SECONDS = 5.0  # what a connection may take to prove it holds the key
STATUS_SECONDS = 2.0  # what an engine may take to say how it is (it answers at once)
_SERVICE = re.compile(r"\bSERVICE\b", re.IGNORECASE)
# What the scanner (see scan) reads a character as part of.
_CODE, _SHORT1, _SHORT2, _LONG1, _LONG2, _COMMENT = range(6)
# From inside a string or a comment, the rest of it (no match: no query reads the text so).
_REST = {
    _SHORT1: re.compile(r"(?:[^'\\\n\r]|\\[^\n\r])*'"),
    _SHORT2: re.compile(r'(?:[^"\\\n\r]|\\[^\n\r])*"'),
    _LONG1: re.compile(r"(?:[^'\\]|\\.|'(?!''))*'''", re.DOTALL),
    _LONG2: re.compile(r'(?:[^"\\]|\\.|"(?!""))*"""', re.DOTALL),
    _COMMENT: re.compile(r"[^\r\n]*(?:[\r\n]|\Z)"),
}
# Where Oxigraph may read an IRI: "<", then nothing its IRI parser refuses, then ">".
_IRI = re.compile(r"<[^<>\"{}|^`\x00-\x20]*>")
_SPACE = re.compile(r"\s+")
_PLAIN = re.compile(r"[^\s\\#'\"<(){}\[\]!]*")
_LOCAL_ESCAPES = frozenset("_~.-!$&'()*+,;=/?#@%")  # what a backslash escapes in a name
# The terms in a run of plain code (see MAX_TERMS), each found at least once: a variable (a "?"
# or "$" that is not a path's "?"), a prefixed name or blank node label (its ":"), a number,
# true or false, and "a". What else the run holds (keywords, operators, ".", ",", ";") is not.
_NAME = r"[\w.:\-?$\\]"
_TERMS = re.compile(
    rf"[?$](?![\s/|(),;.^*+?=!<>{{}}\[\]&\\]|$)|:"
    rf"|(?<!{_NAME})[+-]?\.?\d|(?<!{_NAME})(?:(?i:true|false)|a)(?!{_NAME})"
)
# Keywords whose next bracket holds data, not patterns: VALUES (its block) and IN (its list).
_VALUES = re.compile(r"VALUES(?:[?$]\S*)?", re.IGNORECASE)
_DATA_BLOCK, _LIST = 1, 2
# The form of a query: its first keyword after the prologue (BASE, PREFIX and comments).
_GAP = r"(?:\s|#[^\r\n]*(?:[\r\n]|\Z))*"
_FORM = re.compile(
    rf"(?:{_GAP}(?:BASE{_GAP}<[^>]*>|PREFIX{_GAP}[^\s:<>#]*:{_GAP}<[^>]*>))*"
    rf"{_GAP}(SELECT|CONSTRUCT|DESCRIBE|ASK)(?![\w:])",
    re.IGNORECASE,
)


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
    depth, terms, syntax = scan(text)
    # SERVICE counts wherever some reading of the text takes all its letters as syntax.
    if any(syntax.find(0, hit.start(), hit.end()) < 0 for hit in _SERVICE.finditer(text)):
        raise SparqlError(
            "service_not_allowed",
            "SERVICE (federated queries to other endpoints) is not allowed here",
        )
    if depth > MAX_DEPTH:
        raise SparqlError(
            "query_too_deep",
            f"the query nests {depth} levels of (), {{}}, [] and ! (counted outside strings, "
            f"IRIs and comments); at most {MAX_DEPTH} are allowed: flatten it",
        )
    if terms > MAX_TERMS:
        raise SparqlError(
            "query_too_complex",
            f'the query has {terms} terms (variables, IRIs, prefixed names, literals, "a", '
            "( and [, counted inside {} but not in VALUES data or IN lists); at most "
            f"{MAX_TERMS} are allowed, because planning many triple patterns together takes "
            "the engine longer than its timeout: split the query into smaller ones, or list "
            "values in VALUES or IN",
        )


def query_form(text: str) -> str | None:
    """SELECT, CONSTRUCT, DESCRIBE or ASK: the form of the query ``text``, read after its
    prologue; None when it does not begin like a query."""
    found = _FORM.match(text)
    return None if found is None else found.group(1).upper()


class Scanned(NamedTuple):
    """What scan finds in a query (see there)."""

    depth: int
    terms: int
    syntax: bytearray


class _Reading(NamedTuple):
    """One reading's state at a place in the query (see scan)."""

    depth: int  # brackets open
    bangs: int  # the !s just read in a row
    terms: int  # counted so far
    groups: int  # {s open: terms count inside one
    data: int  # the depth of the VALUES block or IN list it is in, 0 outside one
    opens: int  # what the keyword just read opens: _DATA_BLOCK, _LIST or 0

    def merge(self, other: _Reading) -> _Reading:
        """This and ``other``, which reached the same place, as one that overstates both:
        the greater of each number, in data only when both are at the same depth."""
        same = (self.depth, self.data) == (other.depth, other.data)
        return _Reading(
            max(self.depth, other.depth),
            max(self.bangs, other.bangs),
            max(self.terms, other.terms),
            max(self.groups, other.groups),
            self.data if same else 0,
            self.opens if self.opens == other.opens else 0,
        )


def scan(text: str) -> Scanned:
    """How deeply ``text`` nests (), {}, [] and runs of ! outside strings, IRIs and comments;
    how many terms it has inside {}, outside VALUES data and IN lists (see MAX_TERMS); and
    which of its characters are query syntax (1), not inside one of those (0).

    Hand-written because pyoxigraph offers no depth limit (nor a parse that does not run the
    query), and a regular expression can neither count nor follow two readings at once.
    Oxigraph parses without a separate tokenizer, so "<" begins an IRI or is less-than as the
    grammar around it allows: in ?s <urn:a(b> ?o it begins an IRI, in FILTER((1<2)+((1))>0) the
    same characters are a comparison and brackets; a quote or # inside means a string or a
    comment in one reading and not in the other. A backslash in a prefixed name escapes a
    quote (ex:a\\'b is one name). So the scanner follows every reading at once (one state per
    kind of place, the greatest numbers kept) and answers for all of them: the greatest depth
    and count any reaches, and as syntax what any takes as such. In the less-than reading, what
    the other reads as an IRI is not syntax for SERVICE until a ")": less-than is inside an
    expression, and only a ")" leads out of one, back to a graph pattern.

    Terms are counted, not triple patterns, because every pattern has a term of its own (its
    object, or its step of a path) and counting them needs no grammar. Patterns are only inside
    {}, and not in the brackets of VALUES and IN, which hold data: those are left out, an IN
    list only until a "{" (an EXISTS) opens in it. Two readings that meet in data at different
    depths count what follows."""
    size = len(text)
    syntax = bytearray(size)
    deepest = most = 0
    # position -> {(kind of place, where a less-than reading's other IRI ends): reading}
    pending: dict[int, dict[tuple[int, int], _Reading]] = {
        0: {(_CODE, -1): _Reading(0, 0, 0, 0, 0, 0)}
    }

    def add(at: int, kind: int, iri_end: int, reading: _Reading) -> None:
        nonlocal most
        key = (kind, iri_end if at < iri_end else -1)
        states = pending.setdefault(at, {})
        old = states.get(key)
        states[key] = reading if old is None else old.merge(reading)
        most = max(most, reading.terms)

    while pending:
        at = min(pending)
        states = pending.pop(at)
        if at >= size:
            continue
        for (kind, iri_end), now in states.items():
            depth, bangs, terms, groups, data, opens = now
            counted = int(groups > 0 and not data)  # what a term here adds to the count
            if kind != _CODE:
                rest = _REST[kind].match(text, at)
                if rest is not None:  # a comment keeps the !s and the keyword before it
                    add(
                        rest.end(),
                        _CODE,
                        iri_end,
                        now if kind == _COMMENT else now._replace(bangs=0),
                    )
                continue
            char = text[at]
            found = _SPACE.match(text, at)
            if found is not None:
                add(found.end(), _CODE, iri_end, now)
            elif char == "#":
                add(at + 1, _COMMENT, iri_end, now)
            elif char in "'\"":
                long = text.startswith(char * 3, at)
                single, triple = (_SHORT1, _LONG1) if char == "'" else (_SHORT2, _LONG2)
                string = now._replace(bangs=0, terms=terms + counted, opens=0)
                add(at + (3 if long else 1), triple if long else single, iri_end, string)
            elif char == "<" and (iri := _IRI.match(text, at)) is not None:
                after = now._replace(bangs=0, opens=0)
                add(iri.end(), _CODE, -1, after._replace(terms=terms + counted))  # an IRI
                add(at + 1, _CODE, iri.end() - 1, after)  # less-than
            elif char == "!" and not text.startswith("=", at + 1):
                deepest = max(deepest, depth + bangs + 1)
                add(at + 1, _CODE, iri_end, now._replace(bangs=bangs + 1, opens=0))
            elif char in "({[":
                deepest = max(deepest, depth + 1)
                if char == "{":  # the data after VALUES, else a group: where patterns are
                    data = depth + 1 if opens == _DATA_BLOCK and not data else 0
                    groups += 1
                else:  # ( and [ are terms: () and [] as objects are rdf:nil and a blank node
                    terms += counted
                    if char == "(" and opens == _LIST and not data:
                        data = depth + 1
                # VALUES (?a ?b) { ... }: the { after the variables still opens data.
                opens = opens if char == "(" and opens == _DATA_BLOCK else 0
                add(at + 1, _CODE, iri_end, _Reading(depth + 1, 0, terms, groups, data, opens))
            elif char in ")}]":
                depth = max(0, depth - 1)
                groups = max(0, groups - 1) if char == "}" else groups
                opens = opens if char == ")" and opens == _DATA_BLOCK else 0
                closed = _Reading(depth, 0, terms, groups, data if depth >= data else 0, opens)
                add(at + 1, _CODE, -1 if char == ")" else iri_end, closed)
            else:
                escaped = char == "\\" and text[at + 1 : at + 2] in _LOCAL_ESCAPES
                if escaped:
                    end = at + 2
                else:
                    plain = _PLAIN.match(text, at)
                    end = max(at + 1, plain.end() if plain is not None else at)
                if at < iri_end:
                    end = min(end, iri_end)
                else:
                    syntax[at:end] = b"\x01" * (end - at)
                if escaped:
                    opens = 0  # a character of a name
                else:
                    terms += counted * len(_TERMS.findall(text, at, end))
                    opens = _keyword(text, at, end, opens)
                add(end, _CODE, iri_end, _Reading(depth, 0, terms, groups, data, opens))
    return Scanned(deepest, most, syntax)


def _keyword(text: str, at: int, end: int, opens: int) -> int:
    """What the run of plain code text[at:end] opens: _LIST for IN, _DATA_BLOCK for VALUES (or
    a variable after it), else 0. A keyword begins after a space or a bracket; after anything
    else (an escaped character, ex:a\\.IN) it is part of a name."""
    before = text[at - 1] if at else " "
    clean = before.isspace() or (before in "(){}[]" and text[at - 2 : at - 1] != "\\")
    word = text[at:end]
    if clean and word.upper() == "IN":
        return _LIST
    if clean and _VALUES.fullmatch(word):
        return _DATA_BLOCK
    if opens == _DATA_BLOCK and word[:1] in ("?", "$"):
        return opens
    return 0


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


def _hold(folder: Path) -> int:
    """The lock on ``folder``'s store, held for the life of the process that takes it (the
    kernel lets go when it ends); SparqlError when another process holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    handle = os.open(folder / "store.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(handle)
        raise SparqlError(
            "sparql_unavailable",
            f"another process holds the SPARQL store in {folder} and does not answer queries",
            503,
            retry_after=30,
        ) from None
    return handle


def _adopt_slots(folder: Path, path: Path) -> None:
    """Earlier versions kept a store per registry process (``slot-N``): the first becomes the
    one store, and the others, copies of it, are deleted. A slot still held by a process of an
    earlier version (a rolling restart) is left alone."""
    slots = sorted(folder.glob("slot-[0-9]*"), key=lambda p: (len(p.name), p.name))
    for slot in (each for each in slots if each.is_dir()):
        handle = os.open(slot.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(handle)
            continue
        try:
            if not path.exists():
                slot.rename(path)
                source = slot.with_suffix(".source")
                if source.exists():
                    source.rename(path.with_suffix(".source"))
            else:
                shutil.rmtree(slot, ignore_errors=True)
            slot.with_suffix(".source").unlink(missing_ok=True)
            slot.with_suffix(".lock").unlink(missing_ok=True)
        finally:
            os.close(handle)


class _Store:
    """The engine's store, kept in step with the registry's index; on disk in ``folder`` when
    given (see the module's docstring), else in memory."""

    def __init__(self, database_url: str, folder: Path | None = None) -> None:
        import pyoxigraph as ox

        from sqm.registry.db import make_engine

        self.ox = ox
        self.engine = make_engine(database_url)
        self.path: Path | None = None
        self._lock: int | None = None
        if folder is None:
            self.store = ox.Store()
        else:
            self._lock = _hold(folder)
            self.path = folder / "store"
            _adopt_slots(folder, self.path)
            self.store = ox.Store(str(self.path))
        self.position = self._resume()

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
        if self.path is None:
            return -1
        # What the store was built from: the SHA-256 of the log's first leaf, beside it.
        source = self.path.with_suffix(".source")
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
        """Let go of the store and its lock (a process that ends lets go of both anyway)."""
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
        if changed and self.position < 0 and self.path is not None:
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


# --- the engine process ---------------------------------------------------------------------


def _address(folder: Path) -> str:
    """Where the engine of ``folder`` listens: a Linux abstract socket named after the folder
    (no path-length limit, nothing left behind by a killed engine), else a socket file in it."""
    if sys.platform.startswith("linux"):
        return "\0sqm-sparql-" + hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:40]
    return str(folder / "engine.sock")


def _engine_key(folder: Path) -> bytes:
    """The secret shared by the registry processes of ``folder`` and its engine. Messages are
    pickles, so nothing is read from a connection before multiprocessing's HMAC handshake with
    this key succeeds: an abstract socket has no file permissions to keep other users out."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "engine.key"
    key = path.read_bytes() if path.exists() else b""
    if len(key) >= KEY_BYTES:
        return key
    draft = folder / f"engine.key.{os.getpid()}.{secrets.token_hex(4)}"
    handle = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(handle, "wb") as out:
        out.write(secrets.token_bytes(KEY_BYTES))
        out.flush()
        os.fsync(out.fileno())  # never a linked name over an empty file after a crash
    try:
        if key:  # cut short (a crash, a hand): replaced; its engine is refused and restarted
            draft.replace(path)
        else:
            os.link(draft, path)  # all or nothing: a reader never sees a half-written key
    except FileExistsError:
        pass  # another process made it first: use theirs
    finally:
        draft.unlink(missing_ok=True)
    return path.read_bytes()


def _clear_stale_socket(path: str) -> None:
    """Remove a socket file that nobody listens on (left by a killed engine), which would
    otherwise refuse every later engine the address. Abstract sockets leave none."""
    probe = socket.socket(socket.AF_UNIX)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        Path(path).unlink(missing_ok=True)
    except OSError:
        pass  # no such file, or not a socket: Listener reports what is wrong
    finally:
        probe.close()


class _EngineState:
    """What the engine's threads share: the load's progress, then the store."""

    def __init__(self) -> None:
        self.value = 0  # feeds loaded so far (the name _Store.refresh's progress counter has)
        self.began = time.monotonic()
        self.store: _Store | None = None
        self.started_with: tuple[int, int] | None = None  # (position, feeds loaded) once loaded
        self.failure: str | None = None


def _engine(
    database_url: str,
    folder: Path | None,
    address: str,
    key: bytes,
    started: Pipe,
    parent: int,
) -> None:
    """The engine: listens on ``address`` first (so that registry processes can ask how the
    load is going), then opens and loads the store in a thread and answers every connection
    in a thread of its own. Ends with the process ``parent`` that started it."""
    if len(key) < KEY_BYTES:
        started.send(("taken", "the engine key is too short"))
        return
    threading.stack_size(QUERY_STACK_BYTES)  # for every thread started below: they run queries
    if not address.startswith("\0"):
        _clear_stale_socket(address)
    try:
        # No authkey here: Listener.accept would run the handshake on this thread, where a
        # client that connects and sends nothing would stop every later one being accepted.
        listener = Listener(address, "AF_UNIX")
    except OSError as exc:  # another engine of this folder listens already
        started.send(("taken", str(exc)))
        return
    started.send(("listening", os.getpid()))
    started.close()
    state = _EngineState()

    def load() -> None:
        try:
            store = _Store(database_url, folder)
            loaded = store.refresh(state)
        except SparqlError as error:
            state.failure = error.message
            return
        except Exception as exc:  # the database or the store cannot be read: say so
            state.failure = f"the SPARQL store could not be loaded ({type(exc).__name__}: {exc})"
            return
        state.store, state.started_with = store, (store.position, loaded)
        while True:  # new feeds join the store while queries run
            time.sleep(1.0)
            try:
                store.refresh()
            except Exception:
                logger.exception("refreshing the SPARQL store failed; retrying in 1 s")

    def orphaned() -> None:  # the registry process that started it is gone: so is the engine
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=load, daemon=True).start()
    threading.Thread(target=orphaned, daemon=True).start()
    while True:
        try:
            connection = listener.accept()
        except OSError:
            continue
        threading.Thread(target=_answer, args=(connection, state, key), daemon=True).start()


def _handshake(connection: Pipe, key: bytes, seconds: float, engine: bool) -> None:
    """multiprocessing's HMAC challenge in both directions, within ``seconds``: a peer that
    says nothing is cut off (SO_RCVTIMEO on the socket) instead of holding the caller."""
    with socket.socket(fileno=os.dup(connection.fileno())) as raw:
        whole = max(0.01, seconds)
        limit = struct.pack("ll", int(whole), int(whole % 1 * 1_000_000))
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, limit)
        try:
            if engine:
                deliver_challenge(connection, key)
                answer_challenge(connection, key)
            else:
                answer_challenge(connection, key)
                deliver_challenge(connection, key)
        finally:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", 0, 0))


def _answer(connection: Pipe, state: _EngineState, key: bytes) -> None:
    with connection:
        try:
            _handshake(connection, key, HANDSHAKE_SECONDS, engine=True)
        except (OSError, EOFError, multiprocessing.AuthenticationError):
            return  # a peer without the key, or one that said nothing in time
        while True:
            try:
                request = connection.recv()
            except (EOFError, OSError):
                return
            connection.send(_reply(request, state))


def _reply(request: tuple[Any, ...], state: _EngineState) -> tuple[Any, ...]:
    """("unavailable", why), ("loading", feeds loaded, seconds, pid), ("ready", started_with,
    pid) to ("status",); to ("query", text, limit, format) once ready: ("ok", body, mimetype,
    truncated), ("refused", code, message) or ("failed", exception name, message)."""
    if state.failure is not None:
        return ("unavailable", state.failure)
    if state.started_with is None or state.store is None:
        return ("loading", state.value, time.monotonic() - state.began, os.getpid())
    if request[0] != "query":
        return ("ready", state.started_with, os.getpid())
    _, text, limit, rdf_format = request
    try:
        return ("ok", *state.store.run(text, limit, rdf_format))
    except SparqlError as error:
        return ("refused", error.code, error.message)
    except Exception as exc:
        return ("failed", type(exc).__name__, str(exc))


# --- the registry process's side ----------------------------------------------------------------


class SparqlService:
    """Sends a registry process's queries to the engine of its data folder, with a timeout.

    The engine is started by the first registry process that finds none answering, loads the
    current data and then follows the index in the background; each query has ``timeout``
    seconds. Loading may take longer than any request may wait (a large registry, a worker
    timeout): a query that arrives meanwhile waits at most ``timeout`` seconds, then gets 503
    ``sparql_loading`` with Retry-After while the engine goes on loading; a load that has
    loaded no feed for ``load_timeout`` seconds is stopped and started again. A query that
    overruns stops the engine (Oxigraph cannot cancel one); the next query starts a new engine,
    which reopens the store and loads only what changed (see the module's docstring), and the
    queries other processes had running there are sent to it once more (an engine stopped
    under the same query twice gives it 503 ``sparql_unavailable``). Without a
    ``folder`` the engine is this service's own, its store in memory, loaded in full each time.
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
        self._connection: Pipe | None = None
        self._pid: int | None = None  # the engine's, once connected
        self._child: Any = None  # the engine this process started, while it may live
        self._starting: Pipe | None = None  # ... and its pipe until it says it listens
        # The engine's pid, the last count of loaded feeds seen from it, and since when.
        self._progressed: tuple[int | None, int, float] = (None, 0, 0.0)
        self._private: tuple[str, bytes] | None = None
        # The engine's start: the log index its store held, and how many feeds it loaded.
        self.started_with: tuple[int, int] | None = None

    def _where(self) -> tuple[str, bytes]:
        if self.folder is not None:
            return _address(self.folder), _engine_key(self.folder)
        if self._private is None:  # an engine of this service's own
            token = secrets.token_hex(16)
            self._private = ("\0sqm-sparql-" + token, secrets.token_bytes(32))
        return self._private

    def _start(self) -> None:
        """Start an engine (this process's child), unless the one it started still lives."""
        if self._child is not None and self._child.is_alive():
            return
        address, key = self._where()
        context = multiprocessing.get_context("spawn")  # no inherited threads or connections
        parent, child = context.Pipe()
        self._child = context.Process(
            target=_engine,
            args=(self.database_url, self.folder, address, key, child, os.getpid()),
            name="sqm-sparql",
            daemon=True,
        )
        self._child.start()
        child.close()
        self._starting = parent

    def _connect(self, deadline: float) -> Pipe:
        """A connection to the folder's engine, started when none answers."""
        connection = self._connection
        if connection is not None:
            try:
                if not connection.poll(0):  # open, nothing unread: the engine lives
                    return connection
            except OSError:
                pass
            self._forget()  # the engine ended (say, another process stopped a runaway query)
        address, key = self._where()
        while True:
            try:
                connection = Client(address, "AF_UNIX")
            except (ConnectionRefusedError, FileNotFoundError):
                pass
            except OSError as exc:
                raise SparqlError(
                    "sparql_unavailable", f"the SPARQL engine does not answer ({exc})", 503, 30
                ) from None
            else:
                try:
                    _handshake(connection, key, max(1.0, deadline - _now()), engine=False)
                except (ConnectionResetError, BrokenPipeError, EOFError):
                    # An engine that ended as it was reached: one just stopped (a query past
                    # its timeout) still takes connections until the kernel closes its socket.
                    # As when none listens: start one (it waits for the address to be free).
                    connection.close()
                except (OSError, multiprocessing.AuthenticationError) as exc:
                    connection.close()
                    raise SparqlError(
                        "sparql_unavailable",
                        f"the SPARQL engine does not answer ({type(exc).__name__}: {exc})",
                        503,
                        30,
                    ) from None
                else:
                    self._connection = connection
                    return connection
            self._start()
            starting = self._starting
            if starting is not None and starting.poll(max(0.0, min(0.05, deadline - _now()))):
                try:
                    said, _ = starting.recv()
                except (EOFError, OSError):
                    said = "ended"
                starting.close()
                self._starting = None
                if said != "listening":  # another engine listens, or this one died: go on
                    self._child = None
                continue
            if starting is None:  # this process's engine listens; another may be starting
                time.sleep(max(0.0, min(0.05, deadline - _now())))
            if _now() >= deadline:
                raise SparqlError(
                    "sparql_loading", "the SPARQL engine is starting; retry later", 503, 30
                )

    def _status(self, connection: Pipe) -> tuple[Any, ...]:
        connection.send(("status",))
        if not connection.poll(STATUS_SECONDS):  # an engine that cannot even say how it is
            self._forget()
            raise SparqlError(
                "sparql_unavailable", "the SPARQL engine does not answer; retry", 503, 30
            )
        reply: tuple[Any, ...] = connection.recv()
        return reply

    def _ready(self, deadline: float) -> Pipe:
        """The connection once the engine has loaded; 503 while it loads past ``deadline``."""
        while True:
            connection = self._connect(deadline)
            kind, *detail = self._status(connection)
            if kind == "ready":
                self.started_with, self._pid = detail[0], detail[1]
                return connection
            if kind == "unavailable":
                self.stop()  # the next query tries again: the store may be free by then
                raise SparqlError("sparql_unavailable", str(detail[0]), 503, retry_after=30)
            loaded, seconds, self._pid = int(detail[0]), float(detail[1]), detail[2]
            now = _now()
            # Stalled only when this process has watched this engine load nothing for that
            # long: another process's engine, seen for the first time, starts the clock.
            if (self._pid, loaded) != self._progressed[:2]:
                self._progressed = (self._pid, loaded, now)
            if now - self._progressed[2] > self.load_timeout:
                self.stop()  # the next query starts a fresh load, from where this one was
                raise SparqlError(
                    "sparql_loading",
                    f"the SPARQL engine loaded nothing for {self.load_timeout:g} s and was "
                    "restarted; retry later",
                    503,
                    retry_after=30,
                )
            if now >= deadline:
                raise SparqlError(
                    "sparql_loading",
                    f"the SPARQL engine is loading the registry's data ({loaded:,} suppliers' "
                    f"feeds in {seconds:.0f} s so far); retry later",
                    503,
                    retry_after=30,
                )
            time.sleep(min(0.05, max(0.0, deadline - now)))

    def _crash(self) -> str | None:
        """The signal that ended the engine this process started, when one other than SIGKILL
        did (SIGKILL is how an engine is stopped for a query past its timeout): a crash."""
        if self._child is None:
            return None
        self._child.join(timeout=1.0)  # it closed the connection: it has ended, or is ending
        code = self._child.exitcode
        if code is None or code >= 0 or -code == signal.SIGKILL:
            return None
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"

    def _forget(self) -> None:
        if self._connection is not None:
            self._connection.close()
        self._connection, self._pid = None, None

    def stop(self) -> None:
        """Stop the engine this service talks to (and the one it started)."""
        # Only the pid of an engine whose connection is still open (nothing readable: no end
        # of file), or of one this service started and has not reaped: neither pid can have
        # been reused by another process yet.
        own = None if self._child is None else self._child.pid
        if self._connection is not None and self._pid is not None and self._pid != own:
            with contextlib.suppress(OSError):
                if not self._connection.poll(0):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(self._pid, signal.SIGKILL)
        if self._child is not None:
            self._child.kill()  # through Process: it knows whether it has reaped the child
            self._child.join(timeout=5)
        if self._starting is not None:
            self._starting.close()
        self._forget()
        self._child, self._starting = None, None

    def query(self, text: str, rdf_format: str = "text/turtle", limit: int | None = None) -> Answer:
        """Run a query; raises SparqlError for a refused, malformed or overlong query."""
        check_query(text)
        cap = min(limit or self.max_results, self.max_results)
        if not self._lock.acquire(timeout=self.timeout):
            raise SparqlError(
                "sparql_busy", "the SPARQL engine is busy with other queries; retry shortly", 503
            )
        try:
            kind, rest = self._send(text, cap, rdf_format)
        finally:
            self._lock.release()
        if kind == "ok":
            body, mimetype, truncated = rest
            return Answer(body, mimetype, truncated)
        if kind == "refused":
            code, message = rest
            raise SparqlError(code, message)
        if kind == "unavailable":
            raise SparqlError("sparql_unavailable", str(rest[0]), 503, retry_after=30)
        name, message = rest
        raise SparqlError("query_failed", f"the query failed ({name}): {message}")

    def _send(self, text: str, cap: int, rdf_format: str) -> tuple[str, list[Any]]:
        """The engine's reply to the query. An engine that ends under it, stopped by another
        registry process for a query of its own past the timeout, is asked again once: the
        next engine starts at once (it reopens the store), a query only reads, and so a
        runaway query costs the queries beside it a second run instead of a 503."""
        for again in (False, True):
            sent = False
            try:
                connection = self._ready(_now() + self.timeout)
                connection.send(("query", text, cap, rdf_format))
                sent = True
                if not connection.poll(self.timeout):
                    self.stop()
                    raise SparqlError(
                        "query_timeout",
                        f"the query ran longer than {self.timeout:g} s and was stopped; narrow "
                        "it (filter by supplier or metric, add LIMIT)",
                    )
                kind, *rest = connection.recv()
                return kind, rest
            except (EOFError, OSError):
                crash = self._crash() if sent else None
                self._forget()
                if crash is not None:  # never again: the query may be what crashes it
                    raise SparqlError(
                        "sparql_engine_crashed",
                        f"the SPARQL engine crashed ({crash}) while it ran this query; it "
                        "restarts with the next query. Please report the query rather than "
                        "send it again",
                        500,
                    ) from None
                if again:
                    raise SparqlError(
                        "sparql_unavailable",
                        f"the SPARQL engine stopped {'while it ran' if sent else 'before it ran'} "
                        "this query, for the second time in a row (other registry processes "
                        "stop it for queries past their timeout); retry",
                        503,
                        retry_after=1,
                    ) from None
        raise AssertionError("unreachable: the second attempt returns or raises")


def _now() -> float:
    return time.monotonic()

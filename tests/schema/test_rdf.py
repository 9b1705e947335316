"""Feeds as RDF: expanded through the JSON-LD context, typed, and checked with the SHACL shapes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyoxigraph as ox
import pytest
import rdflib
from rdflib.compare import isomorphic

from sqm.schema import rdf
from sqm.schema.artifacts import jsonld_context
from tests.conftest import VALID_FEEDS, declared_profiles, invalid_cases, load_feed

SQM = rdflib.Namespace("https://w3id.org/sqm/v0.1/")


@pytest.mark.parametrize("path", VALID_FEEDS, ids=lambda p: p.name)
def test_valid_examples_conform_to_core_and_declared_profile_shapes(path: Path) -> None:
    feed = load_feed(path)
    for profile in ["core", *declared_profiles(feed)]:
        graph = rdf.to_graph(feed, profile)
        assert len(graph) > 300
        assert rdf.shacl_violations(graph, profile) == []


def test_every_node_is_typed_so_shapes_apply() -> None:
    graph = rdf.to_graph(load_feed(VALID_FEEDS[0]))
    subjects = set(graph.subjects())
    untyped = [s for s in subjects if (s, rdflib.RDF.type, None) not in graph]
    assert untyped == []
    assert (None, rdflib.RDF.type, SQM.CapabilityRecord) in graph


def test_local_ids_resolve_under_the_suppliers_namespace() -> None:
    feed = load_feed(VALID_FEEDS[0])
    graph = rdf.to_graph(feed)
    base = rdf.base_iri(feed)
    site = rdflib.URIRef(base + "site-stuttgart")
    assert (site, rdflib.RDF.type, SQM.Site) in graph
    cap = rdflib.URIRef(base + "cap-p100-bore-2026-10")
    assert (cap, SQM.site, site) in graph
    cpk = graph.value(cap, SQM.cpk)
    assert cpk is not None and cpk.datatype == rdflib.XSD.decimal


SHACL_CASES = [c for c in invalid_cases() if c.get("shacl")]


@pytest.mark.parametrize("case", SHACL_CASES, ids=lambda c: c["file"])
def test_invalid_examples_fail_the_shapes(case: dict[str, object]) -> None:
    # The guard against "untyped nodes conform": invalid data must not pass.
    feed = load_feed(Path(str(case["path"])))
    violations = rdf.shacl_violations(rdf.to_graph(feed))
    assert violations, f"{case['file']} should violate the SHACL shapes"
    assert all(v.severity == "Violation" for v in violations)


def test_at_least_five_shacl_cases_exist() -> None:
    assert len(SHACL_CASES) >= 5


def _graphs(document: dict[str, Any]) -> tuple[rdflib.Graph, rdflib.Graph]:
    """The document as rdflib parses it, and as Oxigraph (the SPARQL store) parses it."""
    text = json.dumps(document)
    by_rdflib = rdflib.Graph().parse(data=text, format="json-ld")
    triples = ox.serialize(
        ox.parse(text, format=ox.RdfFormat.JSON_LD), format=ox.RdfFormat.N_TRIPLES
    )
    by_oxigraph = rdflib.Graph().parse(data=triples, format="nt")
    return by_rdflib, by_oxigraph


USED_TERMS_FEEDS = [
    *VALID_FEEDS,
    *sorted((Path(__file__).parents[1] / "data" / "valid").glob("*.json")),
]


@pytest.mark.parametrize("path", USED_TERMS_FEEDS, ids=lambda p: p.name)
def test_a_context_of_the_used_terms_only_gives_the_same_graph(path: Path) -> None:
    feed = load_feed(path)
    whole = rdf.typed_jsonld(feed)
    used = rdf.typed_jsonld(feed, used_terms_only=True)
    assert len(used["@context"][0]) < len(whole["@context"][0])
    for full_graph, pruned_graph in zip(_graphs(whole), _graphs(used), strict=True):
        assert len(full_graph) > 20
        assert isomorphic(full_graph, pruned_graph)


def test_a_value_that_is_a_term_keeps_its_definition() -> None:
    # A @vocab-typed value (a unit code) expands through a term of that name when there is
    # one: an odd code, but the pruned context must give it the same meaning.
    feed = load_feed(VALID_FEEDS[0])
    odd = json.loads(json.dumps(feed).replace('"unit": "MMT"', '"unit": "chain_of_custody"', 1))
    assert odd != feed
    used = rdf.typed_jsonld(odd, used_terms_only=True)
    assert "chain_of_custody" in used["@context"][0]
    for full_graph, pruned_graph in zip(_graphs(rdf.typed_jsonld(odd)), _graphs(used), strict=True):
        assert isomorphic(full_graph, pruned_graph)
        assert (None, None, SQM.chain_of_custody) in full_graph


def test_no_term_of_the_context_is_defined_through_another_term() -> None:
    # What makes pruning the context to the used terms sound: were a term defined through
    # another (its @id or @type naming that term, or a compact IRI with it as the prefix),
    # dropping the other would change its expansion.
    context = jsonld_context()
    terms = {term for term, definition in context.items() if isinstance(definition, dict)}
    found = []

    def scan(term: str, value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                scan(term, item)
        elif isinstance(value, str):
            named = value.split(":", 1)[0] if ":" in value else value
            if named in terms and named != term:
                found.append((term, value))

    for term in terms:
        scan(term, context[term])
    assert found == []
    assert len(terms) > 200

"""Feeds as RDF: expanded through the JSON-LD context, typed, and checked with the SHACL shapes."""

from __future__ import annotations

from pathlib import Path

import pytest
import rdflib

from sqm.schema import rdf
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

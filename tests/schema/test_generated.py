"""Generated artifacts: fresh, valid in their meta-languages, readable by independent parsers."""

from __future__ import annotations

import json

import jsonschema
import pyoxigraph
import pytest
import rdflib

from sqm.schema import GENERATED_DIR, json_schema, jsonld_context, profiles
from sqm.schema.generate import stale_files
from tests.conftest import VALID_FEEDS, invalid_cases, load_feed

PROFILE_NAMES = sorted(profiles())


@pytest.mark.slow
def test_committed_artifacts_match_a_fresh_generation() -> None:
    assert stale_files() == [], "run `sqm schema generate` and commit the result"


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_json_schema_is_valid_draft_2020_12(name: str) -> None:
    schema = json_schema(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_2020_12_verdicts_equal_the_2019_09_verdicts_linkml_intended(name: str) -> None:
    # LinkML emits 2019-09; relabelling it 2020-12 must not change any verdict.
    schema_2020 = json_schema(name)
    schema_2019 = {**schema_2020, "$schema": "https://json-schema.org/draft/2019-09/schema"}
    fmt = jsonschema.FormatChecker()
    new = jsonschema.Draft202012Validator(schema_2020, format_checker=fmt)
    old = jsonschema.Draft201909Validator(schema_2019, format_checker=fmt)
    documents = [load_feed(p) for p in VALID_FEEDS]
    documents += [load_feed(c["path"]) for c in invalid_cases() if c["code"].startswith("SQM-S")]
    assert len(documents) > 10
    for document in documents:
        assert sorted(e.message for e in new.iter_errors(document)) == sorted(
            e.message for e in old.iter_errors(document)
        )


def _turtle_files() -> list[str]:
    return sorted(str(p.relative_to(GENERATED_DIR)) for p in GENERATED_DIR.rglob("*.ttl"))


@pytest.mark.parametrize("relative", _turtle_files())
def test_turtle_parses_identically_in_rdflib_and_pyoxigraph(relative: str) -> None:
    path = GENERATED_DIR / relative
    graph = rdflib.Graph().parse(path, format="turtle")
    store = pyoxigraph.Store()
    store.load(path.read_bytes(), format=pyoxigraph.RdfFormat.TURTLE)
    assert len(graph) > 100
    assert len(store) == len(graph)
    # Same IRIs on both sides (blank node labels differ by design).
    oxi_iris = {str(q.subject.value) for q in store if isinstance(q.subject, pyoxigraph.NamedNode)}
    rdf_iris = {str(s) for s in graph.subjects() if isinstance(s, rdflib.URIRef)}
    assert oxi_iris == rdf_iris


def test_owl_and_shacl_use_the_same_class_iris() -> None:
    owl = rdflib.Graph().parse(GENERATED_DIR / "owl" / "sqm.owl.ttl")
    shacl = rdflib.Graph().parse(GENERATED_DIR / "shacl" / "sqm.shacl.ttl")
    owl_classes = {
        str(c)
        for c in owl.subjects(rdflib.RDF.type, rdflib.OWL.Class)
        if isinstance(c, rdflib.URIRef)
    }
    targets = {str(o) for o in shacl.objects(None, rdflib.SH.targetClass)}
    assert targets, "SHACL shapes must target classes"
    assert targets <= owl_classes


def test_context_defines_every_property_of_every_class() -> None:
    context = jsonld_context()
    schema = json_schema()
    properties = {p for d in schema["$defs"].values() for p in d.get("properties", {})}
    assert properties - set(context) == set()
    assert context["@vocab"] == "https://w3id.org/sqm/v0.1/"


def test_manifest_names_existing_files() -> None:
    manifest = json.loads((GENERATED_DIR / "manifest.json").read_text())
    for entry in manifest["schemas"].values():
        for key in ("json_schema", "shacl", "owl"):
            assert (GENERATED_DIR / entry[key]).is_file()


def test_python_models_import_and_load_an_example() -> None:
    from sqm.schema.generated.python import sqm_models

    feed = sqm_models.Feed.model_validate(load_feed(VALID_FEEDS[0]))
    assert feed.header.sequence >= 0
    assert feed.capability_records


def test_artifacts_do_not_depend_on_where_the_repository_lives() -> None:
    from tests.conftest import REPO

    leaking = [
        str(path.relative_to(REPO))
        for path in GENERATED_DIR.rglob("*")
        if path.is_file() and str(REPO) in path.read_text(encoding="utf-8", errors="replace")
    ]
    assert leaking == []

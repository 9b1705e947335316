"""A feed as RDF: expanded through the standard's JSON-LD context, checked with its SHACL shapes.

Plain JSON expanded through a context yields untyped nodes, and SHACL's ``sh:targetClass`` then
matches nothing, so invalid data would "conform". :func:`typed_jsonld` therefore adds ``@type``
to every object from the class the generated JSON Schema gives it at that position.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Any
from urllib.parse import quote

from sqm.schema.artifacts import (
    CORE_PROFILE,
    GENERATED_DIR,
    NAMESPACE,
    class_uris,
    json_schema,
    jsonld_context,
    profiles,
    shacl_path,
)
from sqm.schema.errors import SchemaError

LOCAL_ID_ROOT = f"{NAMESPACE}id/"
XSD_DECIMAL = "http://www.w3.org/2001/XMLSchema#decimal"


def base_iri(feed: Mapping[str, Any]) -> str:
    """The base IRI that local ids of a feed resolve against: one namespace per supplier.

    The supplier's first registered identifier names it (``.../id/LEI/5299.../``), so local ids
    of different suppliers never collide in a shared graph.
    """
    try:
        identifier = feed["header"]["supplier"]["identifiers"][0]
        scheme, code = str(identifier["scheme"]), str(identifier["code"])
    except (KeyError, IndexError, TypeError):
        raise SchemaError(
            "the feed has no header.supplier.identifiers[0] to derive its base IRI from"
        ) from None
    return f"{LOCAL_ID_ROOT}{quote(scheme, safe='')}/{quote(code, safe='')}/"


def _ref_name(node: Mapping[str, Any]) -> str | None:
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return ref.removeprefix("#/$defs/")
    for option in node.get("anyOf", ()):
        name = _ref_name(option)
        if name is not None:
            return name
    return None


def _scalar(value: Any, prop: Mapping[str, Any]) -> Any:
    # The generated context and shapes disagree on two points, settled here explicitly:
    # JSON numbers of decimal slots would become xsd:integer or xsd:double in RDF, and `uri`
    # slots are literals in the context but IRIs (sh:nodeKind sh:IRI) in the shapes.
    if isinstance(value, bool) or value is None:
        return value
    kinds = prop.get("type", ())
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    if "number" in kinds and isinstance(value, int | float):
        lexical = format(Decimal(repr(value)), "f")
        return {"@value": lexical, "@type": XSD_DECIMAL}
    if prop.get("format") == "uri" and isinstance(value, str):
        return {"@id": value}
    return value


def _annotate(
    value: Any, class_name: str | None, schema: Mapping[str, Any], uris: Mapping[str, str]
) -> Any:
    if isinstance(value, list):
        return [_annotate(item, class_name, schema, uris) for item in value]
    if not isinstance(value, dict) or class_name is None:
        return value
    definition = schema["$defs"].get(class_name, schema)
    if definition.get("type") != "object":
        return value  # an enum or a type: nothing to annotate
    properties = definition.get("properties", {})
    annotated: dict[str, Any] = {"@type": uris[class_name]}
    for key, item in value.items():
        prop = properties.get(key)
        if prop is None:
            annotated[key] = item  # SHACL reports unknown keys as it sees them
            continue
        element = prop.get("items", prop)
        target = _ref_name(element)
        if target is not None:
            annotated[key] = _annotate(item, target, schema, uris)
        elif isinstance(item, list):
            annotated[key] = [_scalar(one, element) for one in item]
        else:
            annotated[key] = _scalar(item, element)
    return annotated


def typed_jsonld(
    feed: Mapping[str, Any], profile: str = CORE_PROFILE, *, used_terms_only: bool = False
) -> dict[str, Any]:
    """The feed as a JSON-LD document: the standard's context, a base IRI, and typed nodes.

    ``used_terms_only``: the context keeps its prefixes and only the terms the document uses,
    for a document that is parsed at once rather than published: the same RDF, parsed in
    less than half the time (Oxigraph processes the whole 280-term context per document).
    """
    schema = json_schema(profile)
    root = profiles()[profile].tree_root
    document = _annotate(dict(feed), root, schema, class_uris(profile))
    context = jsonld_context()
    if used_terms_only:
        context = _used_terms(context, document)
    document["@context"] = [context, {"@base": base_iri(feed)}]
    return dict(document)


def _used_terms(context: Mapping[str, Any], document: Any) -> dict[str, Any]:
    """``context`` with its prefixes and @-keywords, and the term definitions whose term is a
    key or a string value in ``document`` (a string value may be a @vocab-typed enum value,
    which expands through a term). Sound because no term definition of the standard's context
    names another term (only prefixes and itself): a test checks that of the generated one."""
    used: set[str] = set()
    pending = [document]
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            used.update(value)
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, str):
            used.add(value)
    return {
        term: definition
        for term, definition in context.items()
        if not isinstance(definition, dict) or term in used
    }


def to_graph(feed: Mapping[str, Any], profile: str = CORE_PROFILE) -> Any:
    """The feed as an rdflib Graph, expanded through the JSON-LD context."""
    import rdflib

    graph = rdflib.Graph()
    graph.parse(
        data=json.dumps(typed_jsonld(feed, profile, used_terms_only=True)), format="json-ld"
    )
    return graph


@dataclass(frozen=True)
class ShaclViolation:
    """One SHACL validation result."""

    focus_node: str
    path: str | None
    message: str
    severity: str
    source_shape: str | None
    value: str | None


@cache
def _shapes(profile: str) -> Any:
    import rdflib

    return rdflib.Graph().parse(shacl_path(profile), format="turtle")


@cache
def _ontology(profile: str) -> Any:
    import rdflib

    return rdflib.Graph().parse(GENERATED_DIR / profiles()[profile].owl, format="turtle")


def shacl_violations(graph: Any, profile: str = CORE_PROFILE) -> list[ShaclViolation]:
    """Check a graph against the SHACL shapes of the core or a profile; return its results."""
    import pyshacl
    from rdflib.namespace import RDF, SH

    # The ontology brings rdfs:subClassOf, so that a profile's subclass satisfies sh:class of
    # its core superclass (sh:class follows rdf:type/rdfs:subClassOf* in the data graph).
    _conforms, report, _text = pyshacl.validate(
        graph, shacl_graph=_shapes(profile), ont_graph=_ontology(profile), inference="none"
    )
    violations = []
    for result in report.subjects(RDF.type, SH.ValidationResult):

        def one(predicate: Any, node: Any = result) -> str | None:
            found = report.value(node, predicate)
            return None if found is None else str(found)

        violations.append(
            ShaclViolation(
                focus_node=one(SH.focusNode) or "",
                path=one(SH.resultPath),
                message=one(SH.resultMessage) or "",
                severity=(one(SH.resultSeverity) or "").rsplit("#", 1)[-1],
                source_shape=one(SH.sourceShape),
                value=one(SH.value),
            )
        )
    return sorted(violations, key=lambda v: (v.focus_node, v.path or "", v.message))

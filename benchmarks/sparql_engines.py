"""Which SPARQL engine serves the registry: pyoxigraph against rdflib on the same data.

    python benchmarks/sparql_engines.py [--feeds 200] [--repeat 5]

Loads N copies of the example feeds (each as its own supplier, in its own named graph, as the
registry's endpoint holds them) into both engines and times typical buyer queries; prints
load time, query p50 per engine and the ratio.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import pyoxigraph as ox
import rdflib

from sqm.schema.rdf import typed_jsonld

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "feeds"
PREFIX = "PREFIX sqm: <https://w3id.org/sqm/v0.1/>\n"
QUERIES = {
    "capability of special characteristics": PREFIX
    + "SELECT ?r ?cpk ?k WHERE { ?r sqm:cpk ?cpk ; sqm:characteristic ?c . "
    "?c sqm:special_characteristic_class ?k FILTER(?cpk >= 1.5) }",
    "delivery above 98 %": PREFIX
    + "SELECT ?r ?v WHERE { ?r sqm:on_time_percent ?v FILTER(?v >= 98) }",
    "certificates per scheme": PREFIX
    + "SELECT ?scheme (COUNT(?c) AS ?n) WHERE { ?c sqm:scheme ?scheme } GROUP BY ?scheme",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feeds", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    examples = [json.loads(p.read_text()) for p in sorted(EXAMPLES.glob("*.json"))]
    documents = []
    for number in range(args.feeds):
        feed = copy.deepcopy(examples[number % len(examples)])
        feed["header"]["supplier"]["identifiers"][0]["code"] = f"SQMBENCH{number:012d}"
        documents.append(json.dumps(typed_jsonld(feed)))

    store, dataset = ox.Store(), rdflib.Dataset(default_union=True)
    started = time.perf_counter()
    for number, document in enumerate(documents):
        store.load(
            document.encode(), format=ox.RdfFormat.JSON_LD, to_graph=ox.NamedNode(f"urn:g:{number}")
        )
    ox_load = time.perf_counter() - started
    started = time.perf_counter()
    for number, document in enumerate(documents):
        dataset.graph(rdflib.URIRef(f"urn:g:{number}")).parse(data=document, format="json-ld")
    rdflib_load = time.perf_counter() - started
    print(f"{args.feeds} feeds, {len(store)} quads")
    print(
        f"load: pyoxigraph {ox_load:.2f} s, rdflib {rdflib_load:.2f} s, ratio {rdflib_load / ox_load:.0f}"
    )
    print(f"{'query':40} {'rows':>6} {'pyoxigraph ms':>14} {'rdflib ms':>10} {'ratio':>6}")
    for name, query in QUERIES.items():
        ox_times, rdflib_times = [], []
        for _ in range(args.repeat):
            started = time.perf_counter()
            rows = len(list(store.query(query, use_default_graph_as_union=True)))
            ox_times.append(time.perf_counter() - started)
            started = time.perf_counter()
            other = len(list(dataset.query(query)))
            rdflib_times.append(time.perf_counter() - started)
        if rows != other:
            raise SystemExit(f"{name}: the engines disagree ({rows} against {other} rows)")
        a, b = statistics.median(ox_times) * 1000, statistics.median(rdflib_times) * 1000
        print(f"{name:40} {rows:>6} {a:>14.1f} {b:>10.1f} {b / a:>6.0f}")


if __name__ == "__main__":
    main()

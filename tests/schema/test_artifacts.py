"""Locating the standard's artifacts and profiles."""

from __future__ import annotations

import pytest

from sqm.schema import SchemaError, class_uris, json_schema, profile_by_iri, profiles, shacl_path


def test_core_and_automotive_profiles_are_known() -> None:
    assert {"core", "automotive"} <= set(profiles())
    assert profile_by_iri("https://w3id.org/sqm/v0.1/profiles/automotive").name == "automotive"
    assert profile_by_iri("https://w3id.org/sqm/v0.1/profiles/automotive/").name == "automotive"


def test_unknown_profile_lists_the_known_ones() -> None:
    with pytest.raises(SchemaError, match=r"known profiles: .*automotive"):
        profile_by_iri("https://example.org/aerospace")
    with pytest.raises(SchemaError, match=r"unknown profile 'aerospace'"):
        json_schema("aerospace")


def test_class_iris_live_in_their_namespaces() -> None:
    assert class_uris()["CapabilityRecord"] == "https://w3id.org/sqm/v0.1/CapabilityRecord"
    auto = class_uris("automotive")
    assert auto["AutomotiveFeed"] == "https://w3id.org/sqm/v0.1/profiles/automotive/AutomotiveFeed"
    assert auto["CapabilityRecord"] == "https://w3id.org/sqm/v0.1/CapabilityRecord"
    assert shacl_path("automotive").is_file()


def test_profile_schema_requires_an_iatf_certificate() -> None:
    prop = json_schema("automotive")["properties"]["certification_records"]
    assert prop["contains"] == {"$ref": "#/$defs/IatfCertificationRecord"}

"""Where the generated artifacts live, and cached loaders for them.

The manifest (``generated/manifest.json``) is written by :mod:`sqm.schema.generate`; it names
each schema (the core and every profile), its tree root, its files and its class IRIs, so that no
other module needs to know file names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from sqm.schema.errors import SchemaError

PACKAGE_DIR = Path(__file__).resolve().parent
SOURCE_DIR = PACKAGE_DIR / "src"
GENERATED_DIR = PACKAGE_DIR / "generated"
MANIFEST_NAME = "manifest.json"

SQM_VERSION = "0.1"
NAMESPACE = "https://w3id.org/sqm/v0.1/"
CORE_PROFILE = "core"


@dataclass(frozen=True)
class Profile:
    """One schema of the standard: the core or a sector profile."""

    name: str
    iri: str
    title: str
    tree_root: str
    source: str
    json_schema: str
    shacl: str
    owl: str
    class_uris: dict[str, str]

    @property
    def is_core(self) -> bool:
        return self.name == CORE_PROFILE


@cache
def manifest() -> dict[str, Any]:
    """The generated manifest, loaded once."""
    path = GENERATED_DIR / MANIFEST_NAME
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SchemaError(
            f"{path} is missing: run `sqm schema generate` to create the artifacts"
        ) from exc
    return data


@cache
def profiles() -> dict[str, Profile]:
    """Every schema of the standard by name; ``core`` is always present."""
    return {name: Profile(name=name, **entry) for name, entry in manifest()["schemas"].items()}


def _profile(name: str) -> Profile:
    try:
        return profiles()[name]
    except KeyError:
        known = ", ".join(sorted(profiles()))
        raise SchemaError(f"unknown profile {name!r}; known profiles: {known}") from None


def profile_by_iri(iri: str) -> Profile:
    """The profile a feed declares by IRI (a trailing slash is ignored)."""
    wanted = iri.rstrip("/")
    for profile in profiles().values():
        if profile.iri.rstrip("/") == wanted:
            return profile
    known = ", ".join(sorted(p.iri for p in profiles().values() if not p.is_core))
    raise SchemaError(f"unknown profile IRI {iri!r}; known profiles: {known}")


@cache
def json_schema(name: str = CORE_PROFILE) -> dict[str, Any]:
    """The generated JSON Schema (draft 2020-12) of the core or of a profile."""
    path = GENERATED_DIR / _profile(name).json_schema
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


@cache
def jsonld_context() -> dict[str, Any]:
    """The generated JSON-LD context of the standard (the ``@context`` object only)."""
    path = GENERATED_DIR / manifest()["jsonld_context"]
    context: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))["@context"]
    return context


@cache
def units() -> dict[str, dict[str, Any]]:
    """UN/ECE Rec 20 codes of the standard: name, IRI, UCUM equivalent, quantity kind, and the
    conversion to the kind's base unit (``base_unit``, ``to_base``, ``base_offset``)."""
    path = GENERATED_DIR / "units.json"
    data: dict[str, dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))
    return data


def to_base(value: float, unit: str) -> tuple[float, str]:
    """``value`` in ``unit`` expressed in the base unit of its quantity kind, and that unit
    (2 WEE is 1,209,600 SEC; 20 CEL is 293.15 KEL). Raises SchemaError for an unknown code."""
    try:
        known = units()[unit]
    except KeyError:
        raise SchemaError(f"{unit!r} is not a UN/ECE Rec 20 unit code of SQM") from None
    return value * known["to_base"] + known["base_offset"], str(known["base_unit"])


def shacl_path(name: str = CORE_PROFILE) -> Path:
    """The generated SHACL shapes (Turtle) of the core or of a profile, imports merged."""
    return GENERATED_DIR / _profile(name).shacl


def class_uris(name: str = CORE_PROFILE) -> dict[str, str]:
    """Class name to class IRI, for every class of the core or of a profile."""
    return _profile(name).class_uris

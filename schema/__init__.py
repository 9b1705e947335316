"""The SQM standard: its LinkML source, the artifacts generated from it, and where they live.

Everything else in SQM finds the standard through this package, never by building paths of its
own: :func:`json_schema`, :func:`jsonld_context`, :func:`shacl_path` and :data:`PROFILES`.
"""

from sqm.schema.artifacts import (
    CORE_PROFILE,
    GENERATED_DIR,
    NAMESPACE,
    SOURCE_DIR,
    SQM_VERSION,
    Profile,
    class_uris,
    json_schema,
    jsonld_context,
    manifest,
    profile_by_iri,
    profiles,
    shacl_path,
    units,
)
from sqm.schema.errors import SchemaError

__all__ = [
    "CORE_PROFILE",
    "GENERATED_DIR",
    "NAMESPACE",
    "SOURCE_DIR",
    "SQM_VERSION",
    "Profile",
    "SchemaError",
    "class_uris",
    "json_schema",
    "jsonld_context",
    "manifest",
    "profile_by_iri",
    "profiles",
    "shacl_path",
    "units",
]

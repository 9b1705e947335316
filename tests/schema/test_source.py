"""The LinkML source: every element described, every slot with an IRI, profiles additive."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from sqm.schema import SOURCE_DIR

MODULES = sorted(SOURCE_DIR.glob("*.yaml"))
PROFILES = sorted((SOURCE_DIR / "profiles").glob("*.yaml"))


def _load(path: Path) -> dict[str, Any]:
    return dict(yaml.safe_load(path.read_text(encoding="utf-8")))


@pytest.mark.parametrize("path", MODULES + PROFILES, ids=lambda p: p.name)
def test_every_element_has_a_description(path: Path) -> None:
    module = _load(path)
    assert module.get("description"), "the module needs a description"
    assert module.get("version") == "0.1.0"
    assert module.get("license") == "https://creativecommons.org/licenses/by/4.0/"
    assert str(module["id"]).startswith("https://w3id.org/sqm/v0.1/")
    missing = []
    for section in ("classes", "slots", "enums", "types"):
        for name, element in (module.get(section) or {}).items():
            if not (element or {}).get("description"):
                missing.append(f"{section}.{name}")
    for enum_name, enum in (module.get("enums") or {}).items():
        for value, spec in (enum.get("permissible_values") or {}).items():
            if not (spec or {}).get("description"):
                missing.append(f"enums.{enum_name}.{value}")
    assert missing == []


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_every_core_slot_has_an_explicit_slot_uri(path: Path) -> None:
    # Without it, slot_usage in a profile silently moves the slot's IRI into the profile.
    slots = _load(path).get("slots") or {}
    assert [name for name, slot in slots.items() if not slot.get("slot_uri")] == []


def test_every_class_has_an_explicit_class_uri() -> None:
    for path in MODULES + PROFILES:
        classes = _load(path).get("classes") or {}
        assert [n for n, c in classes.items() if not c.get("class_uri")] == [], path.name


def test_slot_names_are_unique_across_modules() -> None:
    seen: dict[str, str] = {}
    for path in MODULES:
        for name in _load(path).get("slots") or {}:
            assert name not in seen, f"slot {name} in {path.name} and {seen.get(name)}"
            seen[name] = path.name


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.name)
def test_profiles_import_the_core_and_redefine_nothing(path: Path) -> None:
    profile = _load(path)
    assert "../sqm" in profile["imports"]
    assert not profile.get("slots"), "a profile adds requirements through slot_usage, not new slots"
    core_names = {
        n for m in MODULES for s in ("classes", "enums", "types") for n in (_load(m).get(s) or {})
    }
    for section in ("classes", "enums", "types"):
        assert set(profile.get(section) or {}).isdisjoint(core_names)
    for name, cls in (profile.get("classes") or {}).items():
        assert cls.get("is_a"), f"{name} must specialise a core class"
        assert str(cls["class_uri"]).startswith(profile["default_prefix"] + ":")


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.name)
def test_profile_slot_usage_never_loosens_the_core(path: Path) -> None:
    for cls in (_load(path).get("classes") or {}).values():
        for slot, usage in (cls.get("slot_usage") or {}).items():
            assert usage.get("required") is not False, (
                f"{slot}: a profile cannot make a field optional"
            )

"""An endorsement's bundle, verified offline (built here with the trust core; the registry's
own are checked in tests/registry/test_ingest.py)."""

from __future__ import annotations

import dataclasses

import pytest

from sqm.trust import bundle
from tests.trust.builders import build_endorsement_bundle


def _failed(report: bundle.Report) -> dict[str, str]:
    return {step.name: step.detail for step in report.steps if not step.ok}


def test_an_endorsement_by_a_registered_endorser_verifies() -> None:
    made, root = build_endorsement_bundle()
    report = bundle.verify(made, root)
    assert report.ok, _failed(report)
    assert report.endorsement is not None and report.endorsement.assurance == "third_party"
    assert report.logged is not None


def test_a_key_of_a_registry_that_recorded_no_role_verifies_and_says_so() -> None:
    made, root = build_endorsement_bundle(role=None)
    report = bundle.verify(made, root)
    assert report.ok, _failed(report)
    detail = next(s.detail for s in report.steps if s.name == "endorsement names the signer")
    assert "first key records no role: a registry before 2026-12" in detail


@pytest.mark.parametrize(
    ("role", "endorser", "reason"),
    [
        # A supplier's key cannot raise the assurance of a claim, its own or another's.
        ("supplier", "LEI:529900SQMCERTBODY123", "is registered as 'supplier', not as an endorser"),
        # A key speaks only for its holder.
        ("endorser", "LEI:391200SQMTUVAUDIT203", "the endorsement names LEI:391200SQMTUVAUDIT203"),
    ],
)
def test_an_endorsement_its_key_may_not_make_fails_at_the_signer(
    role: str, endorser: str, reason: str
) -> None:
    made, root = build_endorsement_bundle(role=role, endorser=endorser)
    failed = _failed(bundle.verify(made, root))
    assert list(failed) == ["endorsement names the signer"]
    assert reason in failed["endorsement names the signer"]


def test_an_endorsed_entry_that_is_no_attestation_fails() -> None:
    # The endorser's key registration, given as the endorsed entry under the named index.
    made, root = build_endorsement_bundle()
    assert made.endorsed is not None
    moved = dataclasses.replace(
        made, endorsed=dataclasses.replace(made.key, index=made.endorsed.index)
    )
    failed = _failed(bundle.verify(moved, root))
    assert list(failed) == ["endorsed attestation included"]
    assert "is not the attestation the endorsement names" in failed["endorsed attestation included"]


def test_an_endorsement_of_the_endorser_s_own_attestation_fails() -> None:
    kraftwerk = "LEI:529900SQMKRAFTWERK41"
    made, root = build_endorsement_bundle(endorser=kraftwerk, holder=kraftwerk)
    failed = _failed(bundle.verify(made, root))
    assert list(failed) == ["endorsed attestation included"]
    assert (
        "its endorsement of itself raises no assurance" in failed["endorsed attestation included"]
    )


def test_a_rotated_in_key_is_judged_by_its_identity_s_first_key() -> None:
    made, root = build_endorsement_bundle(role="endorser", rotated_role="endorser")
    report = bundle.verify(made, root)
    assert report.ok, _failed(report)
    # A supplier's later key whose leaf claims the role endorser: no authorisation signs it.
    made, root = build_endorsement_bundle(role="supplier", rotated_role="endorser")
    failed = _failed(bundle.verify(made, root))
    assert list(failed) == ["endorsement names the signer"]
    assert (
        "is registered as 'supplier', not as an endorser" in failed["endorsement names the signer"]
    )

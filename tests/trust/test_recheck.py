"""A held bundle checked against the registry's current bundle of its entry (pure: the two
bundles and the consistency proof are built here with the trust core)."""

from __future__ import annotations

import dataclasses

from sqm.trust import bundle, merkle
from sqm.trust.recheck import recheck, unavailable
from tests.trust.builders import GrowingLog, build_endorsement_bundle, build_rotated_bundle

STEPS = [
    "registry's current checkpoint",
    "current log extends the bundle's",
    "entry unchanged",
    "key not revoked before logging",
]


def _failed(report: bundle.Report) -> dict[str, str]:
    return {step.name: step.detail for step in report.steps if not step.ok}


def _held_then_grown(log: GrowingLog, more: int = 3) -> bundle.Bundle:
    held = log.bundle()
    for n in range(more):
        log.append(f"a later entry {n}".encode())
    return held


def test_a_bundle_whose_log_grew_since_passes_every_step() -> None:
    log = GrowingLog()
    held = _held_then_grown(log)
    current = log.bundle()
    report = recheck(held, current, log.consistency(3, 6), log.trust_root())
    assert [step.name for step in report.steps] == STEPS
    assert report.ok, _failed(report)
    details = {step.name: step.detail for step in report.steps}
    assert "the current tree (size 6) extends the bundle's (size 3)" in details[STEPS[1]]
    assert "holds no revocation of the key" in details[STEPS[3]]
    assert report.feed is not None and report.logged is not None


def test_a_log_that_did_not_grow_gives_its_own_tree_and_needs_no_proof() -> None:
    log = GrowingLog()
    held = log.bundle()
    report = recheck(held, log.bundle(), (), log.trust_root())
    assert report.ok, _failed(report)
    assert "the current tree is the bundle's own (size 3)" in report.steps[1].detail


def test_a_revocation_from_after_the_logging_leaves_the_attestation_standing() -> None:
    log = GrowingLog()
    held = _held_then_grown(log, 1)
    log.revoke("2027-01-01T00:00:00Z")
    report = recheck(held, log.bundle(), log.consistency(3, 5), log.trust_root())
    assert report.ok, _failed(report)
    assert "revoked from 2027-01-01T00:00:00Z (entry 4), after the attestation was logged" in (
        report.steps[3].detail
    )


def test_a_revocation_logged_later_but_effective_before_the_logging_fails() -> None:
    # The case a held bundle cannot show offline: the key was found stolen, and revoked from
    # a time before this attestation was logged.
    log = GrowingLog()
    held = _held_then_grown(log, 1)
    log.revoke("2026-11-02T00:00:00Z")
    root = log.trust_root()
    assert bundle.verify(held, root).ok  # offline, the held bundle still verifies
    report = recheck(held, log.bundle(), log.consistency(3, 5), root)
    assert list(_failed(report)) == ["key not revoked before logging"]
    assert (
        "revoked from 2026-11-02T00:00:00+00:00, before the attestation was logged"
        in (_failed(report)["key not revoked before logging"])
    )


def test_a_forked_log_fails_the_consistency_step() -> None:
    log = GrowingLog()
    held = _held_then_grown(log)
    # The log key signs a tree in which an entry before the bundle's checkpoint was rewritten;
    # the entry itself, its key and the current bundle are all in order.
    log.leaves[0] = b"a rewritten earlier entry"
    log.tree = merkle.MemoryTree()
    for leaf in log.leaves:
        log.tree.append(leaf)
    report = recheck(held, log.bundle(), log.consistency(3, 6), log.trust_root())
    assert list(_failed(report)) == ["current log extends the bundle's"]


def test_a_current_tree_smaller_than_the_bundles_is_an_older_or_another_log() -> None:
    log = GrowingLog()
    older = log.bundle()
    _held_then_grown(log)
    held = log.bundle()
    report = recheck(held, older, (), log.trust_root())
    assert (
        "the registry's current tree (size 3) is smaller than the bundle's (size 6)"
        in (_failed(report)["current log extends the bundle's"])
    )


def test_a_tampered_consistency_proof_fails() -> None:
    log = GrowingLog()
    held = _held_then_grown(log)
    proof = list(log.consistency(3, 6))
    proof[0] = bytes(32)
    report = recheck(held, log.bundle(), proof, log.trust_root())
    assert list(_failed(report)) == ["current log extends the bundle's"]
    missing = recheck(held, log.bundle(), (), log.trust_root())
    assert "the consistency proof is empty" in _failed(missing)["current log extends the bundle's"]


def test_a_current_checkpoint_signed_by_another_log_key_fails_first() -> None:
    log = GrowingLog()
    held = _held_then_grown(log)
    other = GrowingLog()
    report = recheck(held, other.bundle(), (), log.trust_root())
    failed = _failed(report)
    assert next(iter(failed)) == "registry's current checkpoint"
    assert "the registry's current bundle fails checkpoint signature" in failed[STEPS[0]]
    assert "needs the registry's current checkpoint" in failed[STEPS[1]]


def test_another_entry_or_a_changed_envelope_is_not_the_held_entry() -> None:
    log = GrowingLog()
    held = _held_then_grown(log)
    current = log.bundle()
    root, proof = log.trust_root(), log.consistency(3, 6)
    moved = dataclasses.replace(
        current, attestation=dataclasses.replace(current.attestation, index=5)
    )
    assert (
        "asked for entry 2, the registry answered with entry 5"
        in (_failed(recheck(held, moved, proof, root))["entry unchanged"])
    )
    releafed = dataclasses.replace(
        current, attestation=dataclasses.replace(current.attestation, leaf=b"{}")
    )
    assert (
        "the log's entry 2 is not the bundle's leaf"
        in (_failed(recheck(held, releafed, proof, root))["entry unchanged"])
    )
    resigned = dataclasses.replace(
        current, envelope=dataclasses.replace(current.envelope, signatures=())
    )
    assert (
        "the registry's envelope of entry 2 is not the bundle's"
        in (_failed(recheck(held, resigned, proof, root))["entry unchanged"])
    )
    other_key = dataclasses.replace(current, key=dataclasses.replace(current.key, index=0))
    assert (
        "another registration of the signing key"
        in (_failed(recheck(held, other_key, proof, root))["entry unchanged"])
    )


def test_an_entry_the_registry_does_not_serve_is_a_failed_step() -> None:
    report = unavailable(9, "404 no_such_entry: entry 9 is not in the log")
    assert not report.ok
    assert report.steps[0].name == "entry unchanged"
    assert "serves no bundle of entry 9: 404 no_such_entry" in report.steps[0].detail


def test_a_saved_revocation_may_give_way_only_to_a_later_earlier_one() -> None:
    log = GrowingLog()
    log.append(b"an entry")
    log.revoke("2099-01-01T00:00:00Z")  # scheduled: the attestation stands
    held = log.bundle()
    root = log.trust_root()
    assert bundle.verify(held, root).ok
    log.revoke("2098-01-01T00:00:00Z")  # still after the logging: it stands
    report = recheck(held, log.bundle(), log.consistency(5, 6), root)
    assert report.ok, _failed(report)
    assert "revoked from 2098-01-01T00:00:00Z (entry 5)" in report.steps[3].detail
    log.revoke("2026-11-02T00:00:00Z")  # found stolen from before the logging
    stolen = recheck(held, log.bundle(), log.consistency(5, 7), root)
    assert list(_failed(stolen)) == ["key not revoked before logging"]
    assert "before the attestation was logged" in _failed(stolen)["key not revoked before logging"]


def test_a_saved_revocation_replaced_by_a_later_one_in_effect_fails() -> None:
    log = GrowingLog()
    log.append(b"an entry")
    log.revoke("2098-01-01T00:00:00Z")
    held = log.bundle()
    log.revoke("2099-01-01T00:00:00Z")  # a registry that let the time move later
    report = recheck(held, log.bundle(), log.consistency(5, 6), log.trust_root())
    assert list(_failed(report)) == ["key not revoked before logging"]
    assert (
        "replaces with one that is not later in the log and earlier in effect"
        in (_failed(report)["key not revoked before logging"])
    )


def test_a_saved_revocation_leaf_nested_too_deep_is_a_failed_step() -> None:
    log = GrowingLog()
    log.revoke("2099-01-01T00:00:00Z")
    held = log.bundle()
    assert held.revocation is not None
    deep = dataclasses.replace(
        held, revocation=dataclasses.replace(held.revocation, leaf=b"[" * 100_000)
    )
    log.revoke("2098-01-01T00:00:00Z")
    report = recheck(deep, log.bundle(), log.consistency(4, 5), log.trust_root())
    assert "key not revoked before logging" in _failed(report)


def test_a_rotated_keys_chain_must_be_the_held_one() -> None:
    held, root = build_rotated_bundle()
    report = recheck(held, held, (), root)
    assert report.ok, _failed(report)
    chain = ", ".join(str(link.index) for link in held.key_chain)
    assert f"the key's chain of authorisations (entries {chain}) are in" in report.steps[2].detail
    # A bundle saved before bundles carried key chains holds none: the current one's own
    # verification judges the chain it carries.
    assert recheck(dataclasses.replace(held, key_chain=()), held, (), root).ok
    # Another entry of the same tree in the chain's place: the log answers differently now.
    swapped = dataclasses.replace(held, key_chain=(held.attestation,))
    failed = _failed(recheck(held, swapped, (), root))
    assert list(failed) == ["entry unchanged"], failed
    assert (
        "chain of authorisations of the signing key is not the bundle's"
        in failed["entry unchanged"]
    )
    dropped = _failed(recheck(held, dataclasses.replace(held, key_chain=()), (), root))
    assert "(entries none, the bundle's " in dropped["entry unchanged"], dropped


def test_an_endorsements_endorsed_entry_must_be_the_held_one() -> None:
    held, root = build_endorsement_bundle()
    report = recheck(held, held, (), root)
    assert report.ok, _failed(report)
    assert held.endorsed is not None
    assert f"and the endorsed entry {held.endorsed.index} are in" in report.steps[2].detail
    for other in (None, held.key):
        current = dataclasses.replace(held, endorsed=other)
        failed = _failed(recheck(held, current, (), root))
        assert "entry unchanged" in failed, failed
        assert (
            f"the registry's endorsed entry is not the bundle's (entry {held.endorsed.index})"
            in failed["entry unchanged"]
        )

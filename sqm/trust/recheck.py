"""A held bundle checked again, online, against the registry's current bundle of its entry.

A bundle proves what the log held at its checkpoint. It cannot prove that nothing came
later: a revocation of the key logged since, with an effective time before the attestation
(a key found stolen), leaves the held bundle verifying offline. Nor does it show a log that
was rewritten or forked after it. The registry's current bundle of the same entry, with a
consistency proof from the held checkpoint to the current one (RFC 9162 section 2.1.4),
closes both as far as a log can: the current tree provably extends the held one, still holds
the entry and its key's registration byte for byte, and its bundle carries the revocation of
the key that the log now holds, judged by the same rules as offline. A revocation that the
registry logs but leaves out of the answer no proof of inclusion can reveal; monitors that
read every entry (``GET /api/v1/log/entries/<index>``) are the defence against that.

Pure: the caller fetches the current bundle and the proof (``RegistryClient.recheck``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqm.trust import merkle
from sqm.trust.bundle import Bundle, Included, Report, Step, TrustRoot, leaf_time, verify
from sqm.trust.checkpoint import Checkpoint, open_note
from sqm.trust.errors import VerificationError

# The steps of the current bundle's verification that the checkpoint step stands on; the
# entry step stands on every other but the key's validity (an attestation's and an
# endorsement's bundles differ in those).
_CHECKPOINT_STEPS = ("checkpoint signature", "timestamp token", "additional timestamps")
KEY_STEP = "key valid when logged"


def recheck(held: Bundle, current: Bundle, consistency: Sequence[bytes], root: TrustRoot) -> Report:
    """Check ``held`` against ``current``, the registry's bundle of the same entry now, with
    ``consistency``, the proof from the held checkpoint's tree to the current one's (empty
    when their sizes are equal). Every step is reported; the report is valid only when all
    passed. The held bundle's own offline verification is :func:`sqm.trust.bundle.verify`."""
    report = Report()
    verified = verify(current, root)
    failed = {step.name: step for step in verified.steps if not step.ok}
    report.timestamp = verified.timestamp
    report.logged = verified.logged
    report.feed = verified.feed
    state: dict[str, Checkpoint] = {}

    def first_failure(names: Sequence[str]) -> None:
        for name in names:
            if name in failed:
                raise VerificationError(
                    f"the registry's current bundle fails {name}: {failed[name].detail}"
                )

    def checkpoint_step() -> str:
        first_failure(_CHECKPOINT_STEPS)
        state["current"] = open_note(current.checkpoint, root.log_key)
        stamped = (
            ""
            if verified.timestamp is None
            else f", timestamped at {verified.timestamp.isoformat()}"
        )
        return f"tree size {state['current'].size}{stamped}"

    def extends_step() -> str:
        now = state.get("current")
        if now is None:
            raise VerificationError("needs the registry's current checkpoint")
        then = open_note(held.checkpoint, root.log_key)
        if then.origin != now.origin:
            raise VerificationError(
                f"the bundle's checkpoint is of log {then.origin!r}, the registry's of {now.origin!r}"
            )
        if then.size > now.size:
            raise VerificationError(
                f"the registry's current tree (size {now.size}) is smaller than the bundle's "
                f"(size {then.size}): it serves an older log, or another one"
            )
        merkle.verify_consistency(then.size, now.size, consistency, then.root, now.root)
        if then.size == now.size:
            return f"the current tree is the bundle's own (size {now.size})"
        return f"the current tree (size {now.size}) extends the bundle's (size {then.size})"

    def entry_step() -> str:
        index = held.attestation.index
        if current.attestation.index != index:
            raise VerificationError(
                f"asked for entry {index}, the registry answered with entry {current.attestation.index}"
            )
        if current.attestation.leaf != held.attestation.leaf:
            raise VerificationError(f"the log's entry {index} is not the bundle's leaf")
        if current.envelope != held.envelope:
            raise VerificationError(f"the registry's envelope of entry {index} is not the bundle's")
        if (current.key.index, current.key.leaf) != (held.key.index, held.key.leaf):
            raise VerificationError(
                f"the registry names another registration of the signing key (entry "
                f"{current.key.index}, the bundle's is entry {held.key.index})"
            )
        # The entries a bundle stands on besides its own are the log's too: an append-only
        # log answers them byte for byte. A bundle saved before bundles carried key chains
        # holds none, and the current one's is checked by its own verification.
        if held.key_chain and _entries(current.key_chain) != _entries(held.key_chain):
            raise VerificationError(
                "the registry's chain of authorisations of the signing key is not the "
                f"bundle's (entries {_indexes(current.key_chain)}, the bundle's "
                f"{_indexes(held.key_chain)})"
            )
        if held.endorsed is not None and (
            current.endorsed is None or _entries((current.endorsed,)) != _entries((held.endorsed,))
        ):
            raise VerificationError(
                f"the registry's endorsed entry is not the bundle's (entry {held.endorsed.index})"
            )
        first_failure(
            [name for name in failed if name not in _CHECKPOINT_STEPS and name != KEY_STEP]
        )
        parts = [f"entry {index}", f"its key's registration (entry {held.key.index})"]
        if held.key_chain:
            parts.append(f"the key's chain of authorisations (entries {_indexes(held.key_chain)})")
        if held.endorsed is not None:
            parts.append(f"the endorsed entry {held.endorsed.index}")
        listed = ", ".join(parts[:-1]) + " and " + parts[-1]
        return f"{listed} are in the current tree as in the bundle"

    def key_step() -> str:
        if KEY_STEP in failed:
            raise VerificationError(failed[KEY_STEP].detail)
        if KEY_STEP not in {step.name for step in verified.steps}:
            raise VerificationError("the registry's current bundle was not checked so far")
        # A revocation the saved bundle proves is in the log: the current tree extends that
        # one, so an answer without it withholds it. Only a later revocation of the key from
        # an earlier time (a key found stolen after its retirement was scheduled) stands in
        # for it, as the registry's newest.
        kept, now = held.revocation, current.revocation
        if kept is not None and (now is None or (now.index, now.leaf) != (kept.index, kept.leaf)):
            kept_at = leaf_time(_leaf(kept.leaf).get("revokedAt"))
            now_at = None if now is None else leaf_time(_leaf(now.leaf).get("revokedAt"))
            if (
                now is None
                or now.index < kept.index
                or kept_at is None
                or now_at is None
                or now_at >= kept_at
            ):
                raise VerificationError(
                    f"the bundle proves a revocation of the key (entry {kept.index}) that the "
                    "registry's current bundle leaves out, or replaces with one that is not "
                    "later in the log and earlier in effect"
                )
        if current.revocation is None:
            return (
                "the registry's current bundle holds no revocation of the key (it shows what "
                "the log holds; a revocation it left out would not show)"
            )
        revoked = _leaf(current.revocation.leaf)
        logged = "" if verified.logged is None else f" at {verified.logged.isoformat()}"
        return (
            f"the key was revoked from {revoked.get('revokedAt')} (entry "
            f"{current.revocation.index}), after the attestation was logged{logged}: it stands"
        )

    report.run("registry's current checkpoint", checkpoint_step)
    report.run("current log extends the bundle's", extends_step)
    report.run("entry unchanged", entry_step)
    report.run("key not revoked before logging", key_step)
    return report


def unavailable(index: int, reason: str) -> Report:
    """The report for an entry whose current bundle the registry does not serve."""
    return Report(
        [
            Step(
                "entry unchanged",
                False,
                f"the registry serves no bundle of entry {index}: {reason}",
            )
        ]
    )


def _entries(included: Sequence[Included]) -> list[tuple[int, bytes]]:
    return [(entry.index, entry.leaf) for entry in included]


def _indexes(included: Sequence[Included]) -> str:
    return ", ".join(str(entry.index) for entry in included) or "none"


def _leaf(raw: bytes) -> dict[str, Any]:
    # A leaf that is not a JSON object (nested beyond the parser's depth, say) names nothing.
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}

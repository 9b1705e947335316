"""The trust core: RFC 9162 Merkle trees and proofs, C2SP signed-note checkpoints and DSSE
envelopes. Pure code: no I/O, no Flask, no database; the registry and offline verification
(`sqm verify`) both build on it.
"""

from sqm.trust.errors import TrustError, VerificationError

__all__ = ["TrustError", "VerificationError"]

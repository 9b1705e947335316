"""The root error of :mod:`sqm.trust`."""


class TrustError(Exception):
    """Malformed trust material: a proof, note, key or envelope that cannot even be read."""


class VerificationError(TrustError):
    """Well-formed material that does not verify. Verification raises; it never returns False."""

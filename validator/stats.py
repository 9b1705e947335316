"""Small, exact statistics for plausibility checks (normal tails, Poisson tails, Cpk precision).

Hand-written because scipy would be a heavy dependency for four formulas.
"""

from __future__ import annotations

import math


def normal_tail(z: float) -> float:
    """P(Z > z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def nonconforming_fraction(
    mean: float, sigma: float, lower: float | None, upper: float | None
) -> float:
    """Fraction outside the specification limits for a normal process."""
    fraction = 0.0
    if upper is not None:
        fraction += normal_tail((upper - mean) / sigma)
    if lower is not None:
        fraction += normal_tail((mean - lower) / sigma)
    return min(fraction, 1.0)


def fraction_from_index(index: float) -> float:
    """The nonconforming fraction beyond the nearer limit implied by Cpk or Ppk (a lower bound)."""
    return normal_tail(3.0 * index)


def poisson_cdf(k: int, lam: float) -> float:
    """P(X <= k) for X ~ Poisson(lam)."""
    if k < 0:
        return 0.0
    if lam <= 0:
        return 1.0
    if k > 2000 or lam > 2000:
        # Normal approximation with continuity correction; accurate at these sizes.
        return 1.0 - normal_tail((k + 0.5 - lam) / math.sqrt(lam))
    term = math.exp(-lam)
    total = term
    for i in range(1, k + 1):
        term *= lam / i
        total += term
    return min(total, 1.0)


def poisson_sf(k: int, lam: float) -> float:
    """P(X >= k) for X ~ Poisson(lam)."""
    return 1.0 - poisson_cdf(k - 1, lam)


def cpk_lower_bound(cpk: float, n: int, confidence: float = 0.95) -> float:
    """Bissell's approximate lower confidence bound of Cpk from n measurements:
    Cpk - z * sqrt(1 / (9n) + Cpk^2 / (2(n - 1))), with z the one-sided normal quantile."""
    if n < 2:
        return -math.inf
    se = math.sqrt(1.0 / (9.0 * n) + cpk * cpk / (2.0 * (n - 1)))
    return cpk - normal_quantile(confidence) * se


def normal_quantile(p: float) -> float:
    """z with P(Z <= z) = p, by bisection (adequate for a handful of calls)."""
    low, high = -10.0, 10.0
    for _ in range(100):
        mid = (low + high) / 2.0
        if 1.0 - normal_tail(mid) < p:
            low = mid
        else:
            high = mid
    return (low + high) / 2.0

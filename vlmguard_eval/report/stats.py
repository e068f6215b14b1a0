"""Uncertainty for the report: confidence intervals and paired tests against `none`.

Intervals: the Wilson score interval for rates of 0/1 verdicts (it keeps a sensible width at 0%, 100%
and small n, where a percentile bootstrap collapses to a point), a seeded percentile bootstrap of the
mean for everything else (graded scores, win rates with ties at 1/2). Paired tests: McNemar's exact
test on the discordant pairs of 0/1 verdicts; otherwise a sign-flip permutation test on the differences,
exact (every sign pattern) up to EXACT_SIGN_FLIPS pairs and seeded Monte Carlo above.
"""

from __future__ import annotations

import itertools
import math
from statistics import NormalDist

import numpy as np

LEVEL = 0.95
RESAMPLES = 2000
SEED = 20260
EXACT_SIGN_FLIPS = 16  # 2**16 sign patterns: enumerated in well under a second


def is_binary(values: np.ndarray) -> bool:
    """Every value is 0 or 1 (a verdict), so its mean is a rate."""
    return bool(np.isin(values, (0, 1)).all())


def wilson_ci(successes: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (Wilson 1927; Brown, Cai & DasGupta 2001)."""
    if n == 0:
        return (math.nan, math.nan)
    z = NormalDist().inv_cdf(1 - (1 - level) / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (max(0.0, centre - half), min(1.0, centre + half))


def bootstrap_ci(values: np.ndarray, level: float = LEVEL, resamples: int = RESAMPLES) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (a single value has no interval: NaN)."""
    n = len(values)
    if n < 2:
        return (math.nan, math.nan)
    if np.all(values == values[0]):
        return (float(values[0]), float(values[0]))
    rng = np.random.default_rng(SEED)
    # sums of resampled values, chunked so memory stays flat for large n
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // n)
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        means[start:stop] = values[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    tail = (1 - level) / 2
    return (float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail)))


def mean_ci(values: np.ndarray, verdicts: bool) -> tuple[float, float]:
    """The interval the report shows: Wilson for a rate of 0/1 verdicts, else the bootstrap."""
    if verdicts and len(values) and is_binary(values):
        return wilson_ci(int(values.sum()), len(values))
    return bootstrap_ci(values)


def mcnemar_exact(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided exact McNemar p-value for paired 0/1 outcomes."""
    only_a = int(np.sum((a == 1) & (b == 0)))
    only_b = int(np.sum((a == 0) & (b == 1)))
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def sign_flip_p(a: np.ndarray, b: np.ndarray, resamples: int = RESAMPLES) -> float:
    """Two-sided paired permutation p-value for the mean difference a - b: exact for small n."""
    diff = a - b
    if len(diff) == 0 or np.all(diff == 0):
        return 1.0
    observed = abs(diff.mean())
    if len(diff) <= EXACT_SIGN_FLIPS:
        signs = np.array(list(itertools.product((-1.0, 1.0), repeat=len(diff))))
        extreme = np.sum(np.abs((signs * diff).mean(axis=1)) >= observed - 1e-12)
        return float(extreme / len(signs))
    rng = np.random.default_rng(SEED)
    signs = rng.choice((-1.0, 1.0), size=(resamples, len(diff)))
    extreme = np.sum(np.abs((signs * diff).mean(axis=1)) >= observed - 1e-12)
    return float((extreme + 1) / (resamples + 1))


def paired_p(a: np.ndarray, b: np.ndarray) -> float:
    return mcnemar_exact(a, b) if is_binary(a) and is_binary(b) else sign_flip_p(a, b)

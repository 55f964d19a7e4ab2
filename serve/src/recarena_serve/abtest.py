"""A/B test statistics for the HTTP service: per-variant rates with 95% intervals, the test
that decides between two variants, and the sample size still needed.

Which test for which metric (the README says the same):

- **hit rate** (the share of served requests with at least one click): each request is one
  Bernoulli trial, so two variants are compared with the two-proportion z-test (pooled
  variance, two-sided). This is the metric that decides; its interval is Wilson's.
- **CTR@k** (clicks per recommended item shown): shown with a Wilson interval but not tested,
  because the k impressions of one request are not independent trials.
- **mean rating** (rating events): Welch's t-test (unequal variances), t interval.

Sample size: per variant, for the observed difference in hit rate, two-sided alpha .05 and
power .8 (the usual normal approximation); "still needed" is that less the smaller arm.
"""

from __future__ import annotations

import math

from scipy import stats

Z95 = stats.norm.ppf(0.975)


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval for a proportion; None when there are no trials."""
    if n <= 0:
        return None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # at 0 or n successes the bound is exactly 0 or 1; floating point would miss it by an ulp
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return float(lo), float(hi)


def two_proportion_z(x1: int, n1: int, x2: int, n2: int) -> dict | None:
    """Two-sided two-proportion z-test with pooled variance: ``{z, p_value, diff}`` (diff =
    p2 - p1), or None when an arm is empty or every trial went the same way."""
    if n1 <= 0 or n2 <= 0:
        return None
    p1, p2, pooled = x1 / n1, x2 / n2, (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return None
    z = (p2 - p1) / se
    return {"z": float(z), "p_value": float(2 * stats.norm.sf(abs(z))), "diff": float(p2 - p1)}


def sample_size(p1: float, p2: float, alpha: float = 0.05, power: float = 0.8) -> int | None:
    """Trials per arm to detect p1 vs p2 (two-sided, normal approximation); None if equal."""
    if p1 == p2:
        return None
    za, zb = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
    pbar = (p1 + p2) / 2
    n = (za * math.sqrt(2 * pbar * (1 - pbar)) + zb * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))) ** 2 / (p1 - p2) ** 2
    return int(math.ceil(n))


def mean_interval(n: int, total: float, total_sq: float) -> tuple[float, float] | None:
    """t interval of a mean from its count, sum and sum of squares; None below 2 values."""
    if n < 2:
        return None
    mean = total / n
    var = max(0.0, (total_sq - n * mean * mean) / (n - 1))
    half = stats.t.ppf(0.975, n - 1) * math.sqrt(var / n)
    return float(mean - half), float(mean + half)


def welch(n1: int, s1: float, q1: float, n2: int, s2: float, q2: float) -> dict | None:
    """Welch's t-test from counts, sums and sums of squares: ``{t, p_value, diff}``."""
    if n1 < 2 or n2 < 2:
        return None
    m1, m2 = s1 / n1, s2 / n2
    v1, v2 = max(0.0, (q1 - n1 * m1 * m1) / (n1 - 1)), max(0.0, (q2 - n2 * m2 * m2) / (n2 - 1))
    se2 = v1 / n1 + v2 / n2
    if se2 == 0:
        return None
    t = (m2 - m1) / math.sqrt(se2)
    df = se2**2 / ((v1 / n1) ** 2 / (n1 - 1) + (v2 / n2) ** 2 / (n2 - 1)) if v1 + v2 else n1 + n2 - 2
    return {"t": float(t), "p_value": float(2 * stats.t.sf(abs(t), df)), "diff": float(m2 - m1)}


def summarize(variants: list[dict]) -> dict:
    """``variants``: ``[{label, requests, impressions, clicks, hits, users, ratings, rating_sum,
    rating_sq, ...}]`` (raw counters). Returns them with rates and intervals added, and the
    comparison of each later variant with the first (the control)."""
    out = []
    for v in variants:
        v = dict(v)
        v["hit_rate"] = v["hits"] / v["requests"] if v["requests"] else None
        v["hit_rate_ci"] = wilson(v["hits"], v["requests"])
        v["ctr"] = v["clicks"] / v["impressions"] if v["impressions"] else None
        v["ctr_ci"] = wilson(min(v["clicks"], v["impressions"]), v["impressions"])
        v["mean_rating"] = v["rating_sum"] / v["ratings"] if v["ratings"] else None
        v["mean_rating_ci"] = mean_interval(v["ratings"], v["rating_sum"], v["rating_sq"])
        out.append(v)
    tests = []
    if out:
        a = out[0]
        for b in out[1:]:
            t = {"control": a["label"], "variant": b["label"], "metric": "hit_rate", "test": "two-proportion z-test"}
            z = two_proportion_z(a["hits"], a["requests"], b["hits"], b["requests"])
            t.update(z or {"z": None, "p_value": None, "diff": None})
            need = sample_size(a["hit_rate"], b["hit_rate"]) if a["requests"] and b["requests"] else None
            t["sample_size_per_arm"] = need
            t["still_needed_per_arm"] = max(0, need - min(a["requests"], b["requests"])) if need else None
            t["significant"] = bool(z and z["p_value"] < 0.05)
            t["winner"] = (b["label"] if z["diff"] > 0 else a["label"]) if t["significant"] else None
            r = welch(a["ratings"], a["rating_sum"], a["rating_sq"], b["ratings"], b["rating_sum"], b["rating_sq"])
            t["mean_rating"] = {"test": "Welch t-test", **r} if r else None
            tests.append(t)
    return {"variants": out, "tests": tests}

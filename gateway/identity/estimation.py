"""Estimating the scorer's m and u from unlabelled candidate pairs: expectation–maximisation (pure, no I/O).

The scorer (gateway/identity/scoring.py) weighs each field's level by log2(m / u): m is how often
the level occurs when two records are the same child, u how often when they are not. Nobody
hands us pairs labelled "same child" to count these from, but the pairs themselves carry the
answer: the candidate pairs are a mixture of two groups (same child, different children), and
each group has its own pattern of levels. Expectation–maximisation (Winkler 1988; the method
Splink uses) untangles the mixture:

1. start from a guess of m, u and the share of pairs that are the same child (lambda);
2. for each pair, work out how likely it is to be the same child given its levels and the
   current guess (Bayes: lambda·Πm / (lambda·Πm + (1 − lambda)·Πu), fields treated as
   independent given the group);
3. re-count: m for a level is the share of the "same child" weight that shows that level, u
   likewise for the "different children" weight, and lambda the mean of the step-2 chances;
4. repeat 2–3 until nothing moves by more than a tolerance.

Details:
- The starting guess comes from the initial parameters' weights. A weight alone does not fix m
  and u (only their ratio), so we start with m proportional to 2**weight and u proportional to
  2**−weight, each normalised to sum 1 over the field's levels: the levels that speak for a
  match start likely under m, those that speak against start likely under u. This only has to
  point EM at the right one of the two groups; the data do the rest.
- A MISSING level is no evidence either way: it multiplies both likelihoods by 1 and is not
  counted in m or u (it has no entry in them, and weighs 0 in the scorer).
- A level that never occurs keeps a small floor (then everything is renormalised), never 0, so
  its weight log2(m / u) stays finite.
- Comparison vectors repeat a great deal (five fields of a handful of levels each), so they are
  counted first and each distinct vector is worked once with its count: a million pairs cost
  one pass to count, then a few thousand vectors per iteration.

Two things about using the result:
- m and u differ between populations (how names are recorded, how often families move, how
  complete the sources are), so a partnership re-estimates them on its own candidate pairs
  rather than borrowing another's.
- u here is estimated over blocked candidate pairs (pairs that already share a blocking key),
  not over random pairs: those are the pairs the scorer actually sees, and the link and review
  thresholds are calibrated for weights from such a u. Splink often estimates u from random
  pairs instead; those weights run higher and would need different thresholds.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from gateway.identity.scoring import DEFAULT_PARAMETERS, FieldScore, Level, MatchParameters

Vector = tuple[Level, ...]  # one Level per field, in FIELDS order
FIELDS: tuple[str, ...] = ("given", "family", "birth_date", "sex", "location")


@dataclass(frozen=True)
class Estimate:
    """What EM found: m and u per field and level (MISSING excluded), lambda, and how it stopped."""

    m: dict[str, dict[Level, float]]  # per field, P(level | same child)
    u: dict[str, dict[Level, float]]  # per field, P(level | different children)
    proportion: float  # estimated share of candidate pairs that are the same child (lambda)
    iterations: int
    converged: bool


def vector_of(fields: Iterable[FieldScore]) -> Vector:
    """Return the comparison vector of a scored pair (a MatchScore's .fields), in FIELDS order."""
    levels: dict[str, Level] = {}
    for part in fields:
        if part.field not in FIELDS:
            raise ValueError(f"unknown field {part.field!r}: expected one of {', '.join(FIELDS)}")
        if part.field in levels:
            raise ValueError(f"field {part.field!r} is scored more than once")
        levels[part.field] = part.level
    absent = [name for name in FIELDS if name not in levels]
    if absent:
        raise ValueError(f"fields not scored: {', '.join(absent)}")
    return tuple(levels[name] for name in FIELDS)


def _field_weights(parameters: MatchParameters) -> dict[str, dict[Level, float]]:
    return {
        "given": parameters.given,
        "family": parameters.family,
        "birth_date": parameters.birth_date,
        "sex": parameters.sex,
        "location": parameters.location,
    }


def _normalised(values: Mapping[Level, float], floor: float) -> dict[Level, float]:
    """Scale to sum 1, raise anything below the floor to it, and scale to sum 1 again."""
    total = sum(values.values())
    floored = {level: max(value / total, floor) for level, value in values.items()}
    floored_total = sum(floored.values())
    return {level: value / floored_total for level, value in floored.items()}


def _start(weights: Mapping[Level, float], sign: float, floor: float) -> dict[Level, float]:
    """m (sign 1) or u (sign −1) proportional to 2**(sign·weight) over the field's non-missing levels."""
    exponents = {level: sign * weight for level, weight in weights.items() if level != Level.MISSING}
    if not exponents:
        raise ValueError("every field of the initial parameters needs at least one non-missing level")
    top = max(exponents.values())  # shifted so that 2**x cannot overflow
    return _normalised({level: 2.0 ** (exponent - top) for level, exponent in exponents.items()}, floor)


def _posterior(log_match: float, log_other: float) -> float:
    """P(same child) from the two log-likelihoods (natural logs), without overflow."""
    difference = log_other - log_match
    if difference > 700.0:
        return 0.0
    if difference < -700.0:
        return 1.0
    return 1.0 / (1.0 + math.exp(difference))


def estimate(
    vectors: Iterable[Vector],
    initial: MatchParameters,
    *,
    initial_proportion: float = 0.1,
    max_iterations: int = 100,
    tolerance: float = 1e-6,
    floor: float = 1e-6,
) -> Estimate:
    """Estimate m, u and lambda from candidate pairs' comparison vectors by expectation–maximisation.

    Starts from m ∝ 2**weight and u ∝ 2**−weight of `initial` (each normalised over the field's
    levels in `initial`) and `initial_proportion`; stops when the largest change of any m, u or
    lambda in an iteration is below `tolerance` (converged) or after `max_iterations` (not
    converged). MISSING levels are ignored; levels that never occur stay at about `floor`.
    """
    if not 0.0 < initial_proportion < 1.0:
        raise ValueError(f"initial_proportion must be strictly between 0 and 1, not {initial_proportion}")
    if max_iterations < 1:
        raise ValueError(f"max_iterations must be at least 1, not {max_iterations}")
    if tolerance <= 0.0:
        raise ValueError(f"tolerance must be positive, not {tolerance}")
    if not 0.0 < floor < 0.01:
        raise ValueError(f"floor must be positive and small (below 0.01), not {floor}")

    counts = Counter(vectors)
    if not counts:
        raise ValueError("estimate needs at least one comparison vector; none were given")
    total = sum(counts.values())

    starting = _field_weights(initial)
    m = {name: _start(starting[name], 1.0, floor) for name in FIELDS}
    u = {name: _start(starting[name], -1.0, floor) for name in FIELDS}
    for vector in counts:
        if len(vector) != len(FIELDS):
            raise ValueError(f"a comparison vector has {len(vector)} levels; expected {len(FIELDS)} ({FIELDS})")
        for name, level in zip(FIELDS, vector, strict=True):
            if level != Level.MISSING and level not in m[name]:
                raise ValueError(f"field {name!r} has level {level!r}, which the initial parameters do not weigh")
    # Each distinct vector as (count, [(field, level), ...]) with MISSING left out: it counts for nothing.
    distinct = [
        (count, [(name, level) for name, level in zip(FIELDS, vector, strict=True) if level != Level.MISSING])
        for vector, count in counts.items()
    ]

    proportion = initial_proportion
    for iteration in range(1, max_iterations + 1):
        log_m = {name: {level: math.log(p) for level, p in m[name].items()} for name in FIELDS}
        log_u = {name: {level: math.log(p) for level, p in u[name].items()} for name in FIELDS}
        m_counts = {name: dict.fromkeys(m[name], 0.0) for name in FIELDS}
        u_counts = {name: dict.fromkeys(u[name], 0.0) for name in FIELDS}
        log_match_prior, log_other_prior = math.log(proportion), math.log(1.0 - proportion)
        matched_total = 0.0
        for count, present in distinct:
            log_match, log_other = log_match_prior, log_other_prior
            for name, level in present:
                log_match += log_m[name][level]
                log_other += log_u[name][level]
            matched = _posterior(log_match, log_other) * count
            other = count - matched
            matched_total += matched
            for name, level in present:
                m_counts[name][level] += matched
                u_counts[name][level] += other

        # A field missing from every pair (or a group with no weight) says nothing: keep the old values.
        new_m = {
            name: _normalised(m_counts[name], floor) if sum(m_counts[name].values()) > 0.0 else m[name]
            for name in FIELDS
        }
        new_u = {
            name: _normalised(u_counts[name], floor) if sum(u_counts[name].values()) > 0.0 else u[name]
            for name in FIELDS
        }
        new_proportion = min(max(matched_total / total, floor), 1.0 - floor)

        change = abs(new_proportion - proportion)
        for name in FIELDS:
            for level in m[name]:
                change = max(change, abs(new_m[name][level] - m[name][level]))
            for level in u[name]:
                change = max(change, abs(new_u[name][level] - u[name][level]))
        m, u, proportion = new_m, new_u, new_proportion
        if change < tolerance:
            return Estimate(m=m, u=u, proportion=proportion, iterations=iteration, converged=True)
    return Estimate(m=m, u=u, proportion=proportion, iterations=max_iterations, converged=False)


def parameters_from(estimate: Estimate, *, upper: float, lower: float) -> MatchParameters:
    """Scorer parameters from an estimate: weights log2(m / u), with the given thresholds.

    Each field gets exactly the levels the default parameters weigh (the levels its comparison
    can produce); the estimate must have m and u for each of them.
    """
    if lower > upper:
        raise ValueError(f"the lower threshold ({lower}) is above the upper one ({upper})")
    weights: dict[str, dict[Level, float]] = {}
    for name, default in _field_weights(DEFAULT_PARAMETERS).items():
        m, u = estimate.m.get(name, {}), estimate.u.get(name, {})
        absent = [str(level) for level in default if level not in m or level not in u]
        if absent:
            raise ValueError(f"the estimate has no m or u for field {name!r} at level(s) {', '.join(absent)}")
        for level in default:
            if m[level] <= 0.0 or u[level] <= 0.0:
                raise ValueError(f"m and u must be positive; field {name!r} at {level} has m={m[level]}, u={u[level]}")
        weights[name] = {level: math.log2(m[level] / u[level]) for level in default}
    return MatchParameters(
        given=weights["given"],
        family=weights["family"],
        birth_date=weights["birth_date"],
        sex=weights["sex"],
        location=weights["location"],
        upper=upper,
        lower=lower,
    )

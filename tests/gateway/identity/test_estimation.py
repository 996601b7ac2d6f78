"""EM estimation of m and u (pure): recovers known values from simulated pairs, floors unseen levels."""

from __future__ import annotations

import dataclasses
import math
import random
from datetime import date

import pytest

from gateway.identity.estimation import FIELDS, Vector, estimate, parameters_from, vector_of
from gateway.identity.scoring import DEFAULT_PARAMETERS, Decision, Demographics, Level, score

# Known truth to simulate from: deliberately unlike the defaults (sex u is 50/50, location m has
# many house moves) so that recovering it shows the data, not the start, decided.
TRUE_M: dict[str, dict[Level, float]] = {
    "given": {Level.EXACT: 0.80, Level.VARIANT: 0.08, Level.CLOSE: 0.06, Level.PARTIAL: 0.02, Level.DIFFERENT: 0.04},
    "family": {Level.EXACT: 0.85, Level.VARIANT: 0.06, Level.CLOSE: 0.04, Level.DIFFERENT: 0.05},
    "birth_date": {Level.EXACT: 0.90, Level.VARIANT: 0.03, Level.CLOSE: 0.04, Level.DIFFERENT: 0.03},
    "sex": {Level.EXACT: 0.96, Level.DIFFERENT: 0.04},
    "location": {
        Level.EXACT: 0.55,
        Level.VARIANT: 0.10,
        Level.CLOSE: 0.05,
        Level.PARTIAL: 0.05,
        Level.DIFFERENT: 0.25,
    },
}
TRUE_U: dict[str, dict[Level, float]] = {
    "given": {Level.EXACT: 0.03, Level.VARIANT: 0.01, Level.CLOSE: 0.02, Level.PARTIAL: 0.04, Level.DIFFERENT: 0.90},
    "family": {Level.EXACT: 0.10, Level.VARIANT: 0.02, Level.CLOSE: 0.03, Level.DIFFERENT: 0.85},
    "birth_date": {Level.EXACT: 0.01, Level.VARIANT: 0.01, Level.CLOSE: 0.03, Level.DIFFERENT: 0.95},
    "sex": {Level.EXACT: 0.50, Level.DIFFERENT: 0.50},
    "location": {
        Level.EXACT: 0.05,
        Level.VARIANT: 0.05,
        Level.CLOSE: 0.10,
        Level.PARTIAL: 0.20,
        Level.DIFFERENT: 0.60,
    },
}
# Chance a field is MISSING on a pair, whichever group it is in.
MISSING_RATE = {"given": 0.0, "family": 0.02, "birth_date": 0.05, "sex": 0.15, "location": 0.10}
TRUE_PROPORTION = 0.2


def _draw(rng: random.Random, distribution: dict[Level, float]) -> Level:
    levels = list(distribution)
    return rng.choices(levels, weights=[distribution[level] for level in levels])[0]


def _simulate(pairs: int, seed: int) -> list[Vector]:
    rng = random.Random(seed)
    vectors: list[Vector] = []
    for _ in range(pairs):
        truth = TRUE_M if rng.random() < TRUE_PROPORTION else TRUE_U
        vectors.append(
            tuple(Level.MISSING if rng.random() < MISSING_RATE[name] else _draw(rng, truth[name]) for name in FIELDS)
        )
    return vectors


def test_recovers_known_m_u_and_proportion_from_simulated_pairs() -> None:
    # A fixed seed: with 20,000 pairs (about 3,600 with a location for the same child) sampling
    # noise alone moves location's m by about 0.008 (one standard deviation), so 0.02 is ~2.5 of
    # them; this seed's largest miss is 0.014.
    vectors = _simulate(20_000, seed=20240607)
    assert any(Level.MISSING in vector for vector in vectors)

    result = estimate(vectors, DEFAULT_PARAMETERS)

    assert result.converged
    assert 1 < result.iterations < 100
    assert result.proportion == pytest.approx(TRUE_PROPORTION, abs=0.02)
    for name in FIELDS:
        assert set(result.m[name]) == set(TRUE_M[name])
        assert set(result.u[name]) == set(TRUE_U[name])
        for level, expected in TRUE_M[name].items():
            assert result.m[name][level] == pytest.approx(expected, abs=0.02), (name, level, "m")
        for level, expected in TRUE_U[name].items():
            assert result.u[name][level] == pytest.approx(expected, abs=0.02), (name, level, "u")
        assert sum(result.m[name].values()) == pytest.approx(1.0)
        assert sum(result.u[name].values()) == pytest.approx(1.0)


def test_estimate_accepts_a_one_pass_iterator_and_repeats_exactly() -> None:
    vectors = _simulate(2_000, seed=7)

    from_list = estimate(vectors, DEFAULT_PARAMETERS)
    from_generator = estimate((vector for vector in vectors), DEFAULT_PARAMETERS)

    assert from_generator == from_list


def test_stops_unconverged_at_max_iterations() -> None:
    result = estimate(_simulate(2_000, seed=11), DEFAULT_PARAMETERS, max_iterations=2)

    assert result.iterations == 2
    assert not result.converged


def test_levels_that_never_occur_get_the_floor_and_finite_weights() -> None:
    floor = 1e-6
    # No given-name VARIANT or PARTIAL, and no location CLOSE, anywhere in the data.
    vectors = [
        vector
        for vector in _simulate(5_000, seed=3)
        if vector[0] not in (Level.VARIANT, Level.PARTIAL) and vector[4] is not Level.CLOSE
    ]

    result = estimate(vectors, DEFAULT_PARAMETERS, floor=floor)

    for name, level in (("given", Level.VARIANT), ("given", Level.PARTIAL), ("location", Level.CLOSE)):
        assert result.m[name][level] > 0.0
        assert result.u[name][level] > 0.0
        assert result.m[name][level] == pytest.approx(floor, rel=1e-3)
        assert result.u[name][level] == pytest.approx(floor, rel=1e-3)
    parameters = parameters_from(result, upper=20.0, lower=10.0)
    for weights in (parameters.given, parameters.family, parameters.birth_date, parameters.sex, parameters.location):
        assert all(math.isfinite(weight) for weight in weights.values())


def test_a_field_missing_from_every_pair_keeps_its_starting_values() -> None:
    vectors = [(Level.EXACT, Level.EXACT, Level.EXACT, Level.MISSING, Level.EXACT)] * 50 + [
        (Level.DIFFERENT, Level.DIFFERENT, Level.DIFFERENT, Level.MISSING, Level.DIFFERENT)
    ] * 200

    result = estimate(vectors, DEFAULT_PARAMETERS)

    # The start for sex: m ∝ 2**weight, u ∝ 2**-weight over EXACT and DIFFERENT.
    weights = DEFAULT_PARAMETERS.sex
    m_exact = 2 ** weights[Level.EXACT] / (2 ** weights[Level.EXACT] + 2 ** weights[Level.DIFFERENT])
    u_exact = 2 ** -weights[Level.EXACT] / (2 ** -weights[Level.EXACT] + 2 ** -weights[Level.DIFFERENT])
    assert result.m["sex"][Level.EXACT] == pytest.approx(m_exact)
    assert result.u["sex"][Level.EXACT] == pytest.approx(u_exact)
    assert result.proportion == pytest.approx(0.2, abs=1e-3)


def test_vector_of_reads_a_scored_pair_in_fields_order_whatever_the_input_order() -> None:
    a = Demographics("Thomas", "Smith", date(2015, 3, 7), None, "AB1 2CD", "12 High Street")
    b = Demographics("Tom", "Smyth", date(2015, 7, 3), "M", "AB1 2CE", None)
    scored = score(a, b)

    expected = (Level.VARIANT, Level.CLOSE, Level.VARIANT, Level.MISSING, Level.CLOSE)
    assert vector_of(scored.fields) == expected
    assert vector_of(reversed(scored.fields)) == expected
    assert vector_of(sorted(scored.fields, key=lambda part: part.level)) == expected


def test_vector_of_rejects_missing_and_repeated_fields() -> None:
    fields = score(Demographics("Ann"), Demographics("Ann")).fields

    with pytest.raises(ValueError, match="not scored: location"):
        vector_of(fields[:-1])
    with pytest.raises(ValueError, match="more than once"):
        vector_of((*fields, fields[0]))


def test_parameters_from_has_the_default_level_keys_and_passes_thresholds_through() -> None:
    result = estimate(_simulate(5_000, seed=5), DEFAULT_PARAMETERS)

    parameters = parameters_from(result, upper=21.5, lower=12.25)

    assert parameters.upper == 21.5
    assert parameters.lower == 12.25
    for name, got, default in (
        ("given", parameters.given, DEFAULT_PARAMETERS.given),
        ("family", parameters.family, DEFAULT_PARAMETERS.family),
        ("birth_date", parameters.birth_date, DEFAULT_PARAMETERS.birth_date),
        ("sex", parameters.sex, DEFAULT_PARAMETERS.sex),
        ("location", parameters.location, DEFAULT_PARAMETERS.location),
    ):
        assert set(got) == set(default), name
        for level, weight in got.items():
            assert weight == pytest.approx(math.log2(result.m[name][level] / result.u[name][level]))
    # The result drives the scorer: the same child links, a stranger does not.
    thomas = Demographics("Thomas", "Smith", date(2015, 3, 7), "M", "AB1 2CD", "12 High Street")
    stranger = Demographics("Aisha", "Khan", date(2012, 11, 30), "F", "ZZ9 9ZZ", "1 Other Road")
    assert score(thomas, thomas, parameters).total > score(thomas, stranger, parameters).total
    assert score(thomas, stranger, parameters).decision is Decision.NEW


def test_parameters_from_rejects_an_estimate_without_a_scored_level() -> None:
    result = estimate(_simulate(2_000, seed=9), DEFAULT_PARAMETERS)
    without = dataclasses.replace(result, m={**result.m, "sex": {Level.EXACT: result.m["sex"][Level.EXACT]}})

    with pytest.raises(ValueError, match="'sex' at level"):
        parameters_from(without, upper=20.0, lower=10.0)


def test_empty_input_raises_a_clear_error() -> None:
    with pytest.raises(ValueError, match="at least one comparison vector"):
        estimate([], DEFAULT_PARAMETERS)
    with pytest.raises(ValueError, match="at least one comparison vector"):
        estimate(iter(()), DEFAULT_PARAMETERS)


def test_rejects_malformed_vectors_and_settings() -> None:
    with pytest.raises(ValueError, match="expected 5"):
        estimate([(Level.EXACT,) * 4], DEFAULT_PARAMETERS)
    # sex has no PARTIAL level in the parameters, so the pair cannot be weighed.
    with pytest.raises(ValueError, match="'sex' has level"):
        estimate([(Level.EXACT, Level.EXACT, Level.EXACT, Level.PARTIAL, Level.EXACT)], DEFAULT_PARAMETERS)
    with pytest.raises(ValueError, match="initial_proportion"):
        estimate([(Level.EXACT,) * 5], DEFAULT_PARAMETERS, initial_proportion=1.0)

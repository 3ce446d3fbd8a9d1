"""Variant assignment: stable per subject, split as the weights say, independent across
experiments, and refusing malformed variants with a message that says why."""

from __future__ import annotations

import math
import re
from collections import Counter
from functools import cache

import pytest

from shared.experiments import Variant, assign, validate_variants

USERS = 100_000
WEIGHTS = {"a": 50.0, "b": 30.0, "c": 20.0}
VARIANTS = tuple(Variant(name, weight) for name, weight in WEIGHTS.items())
#: The chi-square distribution's 0.999 quantile with 2 degrees of freedom (-2 ln 0.001): a fair
#: split exceeds it once in a thousand experiments.
CHI2_2DF_0001 = 13.8155
#: Binomial standard deviations a share may stray from its expected value (p ≈ 6e-5).
SIGMAS = 4


@cache
def assignments(experiment_id: str) -> tuple[str, ...]:
    """The variant names of the simulated users ``user-0`` … ``user-99999``."""
    return tuple(assign(experiment_id, f"user-{i}", VARIANTS).name for i in range(USERS))


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        # sha256("welcome-subject:ann@example.com")[:8] = 0x24263344a8e814c4 → 0.1412 < 0.5
        ("ann@example.com", "a"),
        # sha256("welcome-subject:user-2")[:8] = 0x92fab7b38b10cbb3 → 0.5741 in [0.5, 0.8)
        ("user-2", "b"),
        # sha256("welcome-subject:user-42")[:8] = 0xe6c849a081784480 → 0.9015 in [0.8, 1)
        ("user-42", "c"),
    ],
)
def test_the_assignment_follows_the_documented_hash(subject: str, expected: str) -> None:
    # Pinned values: a change of the rule would move users between variants of running experiments.
    assert assign("welcome-subject", subject, VARIANTS).name == expected


def test_the_same_subject_always_gets_the_same_variant() -> None:
    first = [assign("welcome-subject", f"user-{i}", VARIANTS) for i in range(1000)]

    fresh_variants = [Variant(name, weight) for name, weight in WEIGHTS.items()]
    again = [assign("welcome-subject", f"user-{i}", fresh_variants) for i in range(1000)]

    assert again == first
    assert len(set(first)) == 3


def test_weights_are_relative() -> None:
    tenths = [Variant(v.name, v.weight / 10) for v in VARIANTS]

    assert all(
        assign("welcome-subject", f"user-{i}", tenths).name == assignments("welcome-subject")[i]
        for i in range(1000)
    )


def test_users_split_as_the_weights_say() -> None:
    counts = Counter(assignments("welcome-subject"))

    total = sum(WEIGHTS.values())
    expected = {name: USERS * weight / total for name, weight in WEIGHTS.items()}
    chi2 = sum((counts[name] - expected[name]) ** 2 / expected[name] for name in WEIGHTS)
    assert chi2 < CHI2_2DF_0001
    for name, weight in WEIGHTS.items():
        share = weight / total
        sd = math.sqrt(share * (1 - share) / USERS)
        assert abs(counts[name] / USERS - share) < SIGMAS * sd, name


@pytest.mark.parametrize("first", sorted(WEIGHTS))
@pytest.mark.parametrize("second", sorted(WEIGHTS))
def test_experiments_assign_independently(first: str, second: str) -> None:
    one, other = assignments("welcome-subject"), assignments("digest-layout")

    both = sum(1 for x, y in zip(one, other, strict=True) if x == first and y == second) / USERS

    expected = one.count(first) / USERS * other.count(second) / USERS
    sd = math.sqrt(expected * (1 - expected) / USERS)
    assert abs(both - expected) < SIGMAS * sd


def test_the_limits_themselves_are_valid() -> None:
    validate_variants([Variant(f"{i}" * 64, 1.0) for i in range(10)])
    validate_variants([Variant("A-b_9", 1e-9), Variant("x", 1e9)])


@pytest.mark.parametrize(
    ("variants", "message"),
    [
        ([], "needs 2 to 10 variants, got 0"),
        ([Variant("a", 1.0)], "needs 2 to 10 variants, got 1"),
        ([Variant(f"v{i}", 1.0) for i in range(11)], "needs 2 to 10 variants, got 11"),
        ([Variant("a", 1.0), Variant("a", 2.0)], "'a' is used twice"),
        ([Variant("a", 1.0), Variant("", 1.0)], "'' must be 1-64 letters"),
        ([Variant("a", 1.0), Variant("x" * 65, 1.0)], "must be 1-64 letters"),
        ([Variant("a", 1.0), Variant("new subject", 1.0)], "'new subject' must be 1-64 letters"),
        ([Variant("a", 1.0), Variant("b\n", 1.0)], "must be 1-64 letters"),
        ([Variant("a", 1.0), Variant("é", 1.0)], "must be 1-64 letters"),
        ([Variant("a", 1.0), Variant("b", 0.0)], "'b' needs a finite weight above 0, got 0.0"),
        ([Variant("a", 1.0), Variant("b", -1.0)], "finite weight above 0, got -1.0"),
        ([Variant("a", 1.0), Variant("b", math.nan)], "finite weight above 0, got nan"),
        ([Variant("a", 1.0), Variant("b", math.inf)], "finite weight above 0, got inf"),
    ],
)
def test_malformed_variants_are_refused(variants: list[Variant], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        validate_variants(variants)
    with pytest.raises(ValueError, match=re.escape(message)):
        assign("welcome-subject", "user-1", variants)

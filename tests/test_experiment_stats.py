"""The statistics of an experiment against values worked out by hand, as a textbook would.

The reference case, control 200/1000 against variant 250/1000:
    rates 0.2 and 0.25, difference 0.05, lift 0.05 / 0.2 = 0.25
    pooled rate (200 + 250) / 2000 = 0.225
    pooled SE = sqrt(0.225 · 0.775 · (1/1000 + 1/1000)) = sqrt(0.00034875) = 0.0186748494
    z = 0.05 / 0.0186748494 = 2.6773978, two-sided p = 2 · (1 - Φ(2.6773978)) = 0.0074196
    unpooled SE = sqrt(0.2 · 0.8 / 1000 + 0.25 · 0.75 / 1000) = sqrt(0.0003475) = 0.0186413519
    95%: z_0.025 = 1.9599640; 0.05 ± 1.9599640 · 0.0186413519 = 0.05 ± 0.0365364 → (0.0134636, 0.0865364)
    97.5% (Bonferroni, two variants): z_0.0125 = 2.2414027;
        0.05 ± 2.2414027 · 0.0186413519 = 0.05 ± 0.0417828 → (0.0082172, 0.0917828)
"""

from __future__ import annotations

import pytest

from shared.experiment_stats import Arm, best, compare

CONTROL = Arm("control", 1000, 200)
REL = 1e-4


def test_a_textbook_improvement() -> None:
    [result] = compare(CONTROL, [Arm("b", 1000, 250)])

    assert result.name == "b"
    assert result.rate == pytest.approx(0.25, rel=REL)
    assert result.control_rate == pytest.approx(0.2, rel=REL)
    assert result.difference == pytest.approx(0.05, rel=REL)
    assert result.lift == pytest.approx(0.25, rel=REL)
    assert result.z == pytest.approx(2.6773978, rel=REL)
    assert result.p_value == pytest.approx(0.0074196, rel=REL)
    assert (result.ci_low, result.ci_high) == pytest.approx((0.0134636, 0.0865364), rel=REL)
    assert result.alpha == pytest.approx(0.05, rel=REL)
    assert result.significant
    assert result.verdict == "better"


def test_a_textbook_drop() -> None:
    # 150/1000: pooled 350/2000 = 0.175, SE = sqrt(0.175 · 0.825 · 0.002) = 0.0169926455,
    # z = -0.05 / 0.0169926455 = -2.9424494, p = 2 · Φ(-2.9424494) = 0.0032563;
    # unpooled SE = sqrt(0.00016 + 0.15 · 0.85 / 1000) = 0.0169558250,
    # 0.05 ± 1.9599640 · 0.0169558250 = ±0.0332328 → (-0.0832328, -0.0167672).
    [result] = compare(CONTROL, [Arm("b", 1000, 150)])

    assert result.difference == pytest.approx(-0.05, rel=REL)
    assert result.lift == pytest.approx(-0.25, rel=REL)
    assert result.z == pytest.approx(-2.9424494, rel=REL)
    assert result.p_value == pytest.approx(0.0032563, rel=REL)
    assert (result.ci_low, result.ci_high) == pytest.approx((-0.0832328, -0.0167672), rel=REL)
    assert result.significant
    assert result.verdict == "worse"


def test_two_variants_are_tested_at_half_the_level() -> None:
    # Bonferroni: alpha 0.05 / 2 = 0.025, so intervals at 97.5% with z_0.0125 = 2.2414027.
    results = compare(CONTROL, [Arm("b", 1000, 250), Arm("c", 1000, 250)])

    for result in results:
        assert result.alpha == pytest.approx(0.025, rel=REL)
        assert (result.ci_low, result.ci_high) == pytest.approx((0.0082172, 0.0917828), rel=REL)
        assert result.p_value == pytest.approx(0.0074196, rel=REL)


def test_a_difference_significant_alone_is_not_among_two_variants() -> None:
    # 238/1000: pooled 0.219, SE = sqrt(0.219 · 0.781 · 0.002) = 0.0184953508,
    # z = 0.038 / 0.0184953508 = 2.0545704, p = 0.0399205: under 0.05, over 0.025.
    # Unpooled SE = sqrt(0.00016 + 0.238 · 0.762 / 1000) = 0.0184758220;
    # 95%: 0.038 ± 1.9599640 · 0.0184758220 → (0.0017881, 0.0742119), excludes 0;
    # 97.5%: 0.038 ± 2.2414027 · 0.0184758220 → (-0.0034118, 0.0794118), includes 0.
    variant = Arm("b", 1000, 238)

    [alone] = compare(CONTROL, [variant])
    among_two, _ = compare(CONTROL, [variant, Arm("c", 1000, 200)])

    assert alone.p_value == among_two.p_value == pytest.approx(0.0399205, rel=REL)
    assert alone.significant and alone.verdict == "better"
    assert (alone.ci_low, alone.ci_high) == pytest.approx((0.0017881, 0.0742119), rel=REL)
    assert not among_two.significant and among_two.verdict == "no_difference"
    assert (among_two.ci_low, among_two.ci_high) == pytest.approx((-0.0034118, 0.0794118), rel=REL)


@pytest.mark.parametrize(
    ("control", "variant"),
    [
        (Arm("control", 50, 20), Arm("b", 50, 40)),  # z = 0.4 / sqrt(0.6 · 0.4 · 0.04) = 4.08
        (Arm("control", 1000, 200), Arm("b", 99, 60)),
        (Arm("control", 99, 10), Arm("b", 1000, 600)),
    ],
)
def test_an_arm_under_the_minimum_sample_is_insufficient_data(control: Arm, variant: Arm) -> None:
    [result] = compare(control, [variant])

    assert result.p_value < 0.001
    assert not result.significant
    assert result.verdict == "insufficient_data"


def test_the_minimum_sample_is_inclusive() -> None:
    [at_minimum] = compare(CONTROL, [Arm("b", 1000, 250)], min_sample=1000)
    [under_it] = compare(CONTROL, [Arm("b", 1000, 250)], min_sample=1001)

    assert at_minimum.verdict == "better"
    assert under_it.verdict == "insufficient_data"


def test_equal_rates_make_no_difference() -> None:
    # SE unpooled = sqrt(2 · 0.2 · 0.8 / 1000) = 0.0178885438; · 1.9599640 = 0.0350609.
    [result] = compare(CONTROL, [Arm("b", 1000, 200)])

    assert result.z == 0
    assert result.p_value == 1
    assert (result.ci_low, result.ci_high) == pytest.approx((-0.0350609, 0.0350609), rel=REL)
    assert not result.significant
    assert result.verdict == "no_difference"


@pytest.mark.parametrize("successes", [0, 1000])
def test_a_pooled_rate_of_zero_or_one_does_not_raise(successes: int) -> None:
    [result] = compare(Arm("control", 1000, successes), [Arm("b", 1000, successes)])

    assert (result.difference, result.z, result.p_value) == (0, 0, 1)
    assert (result.ci_low, result.ci_high) == (0, 0)
    assert result.verdict == "no_difference"


def test_there_is_no_lift_over_a_control_rate_of_zero() -> None:
    [result] = compare(Arm("control", 1000, 0), [Arm("b", 1000, 5)])

    assert result.difference == pytest.approx(0.005, rel=REL)
    assert result.lift is None


def test_arms_without_trials_know_nothing() -> None:
    [result] = compare(Arm("control", 0, 0), [Arm("b", 0, 0)])

    assert (result.rate, result.control_rate, result.lift) == (0, 0, None)
    assert (result.z, result.p_value) == (0, 1)
    assert (result.ci_low, result.ci_high) == (-1, 1)
    assert result.verdict == "insufficient_data"


def test_best_is_the_largest_significant_improvement() -> None:
    # Four variants: alpha 0.05 / 4 = 0.0125. "b" (p = 0.0074) and "c" (280/1000: z = 4.1885,
    # p = 0.000028) are significantly better; "d" gains most but on 50 trials; "e" is worse.
    results = compare(
        CONTROL, [Arm("b", 1000, 250), Arm("c", 1000, 280), Arm("d", 50, 30), Arm("e", 1000, 150)]
    )

    assert [r.verdict for r in results] == ["better", "better", "insufficient_data", "worse"]
    assert best(results) == "c"


def test_best_is_none_without_a_significant_improvement() -> None:
    results = compare(CONTROL, [Arm("b", 1000, 150), Arm("c", 1000, 210), Arm("d", 50, 30)])

    assert best(results) is None
    assert best([]) is None


@pytest.mark.parametrize("confidence", [0.0, 1.0, -0.5, 1.5])
def test_a_confidence_outside_zero_to_one_is_refused(confidence: float) -> None:
    with pytest.raises(ValueError, match="confidence must be between 0 and 1"):
        compare(CONTROL, [Arm("b", 1000, 250)], confidence=confidence)


@pytest.mark.parametrize(("trials", "successes"), [(10, 11), (10, -1), (-1, 0)])
def test_an_arm_with_impossible_counts_is_refused(trials: int, successes: int) -> None:
    with pytest.raises(ValueError, match="needs trials >= successes >= 0"):
        Arm("b", trials, successes)


def test_compare_needs_a_variant_and_a_sensible_minimum() -> None:
    with pytest.raises(ValueError, match="at least one variant"):
        compare(CONTROL, [])
    with pytest.raises(ValueError, match="min_sample must be 0 or more"):
        compare(CONTROL, [Arm("b", 1000, 250)], min_sample=-1)

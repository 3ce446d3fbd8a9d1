"""The statistics of an experiment's results: is a variant's rate (opened per delivered email,
clicked per opened …) really different from the control's, and which variant to promote?

The test is the two-proportion z-test, a frequentist test at a level fixed in advance: it is
well understood, and it is what users' analysts compute from the same counts, so our report and
theirs agree. For each variant against the control:

- the z statistic uses the pooled standard error (under the null hypothesis both arms share one
  rate), and the p-value is two-sided: a variant can be worse as well as better;
- the confidence interval of the difference uses the unpooled (Wald) standard error, since away
  from the null each arm has its own rate;
- with several variants the level is Bonferroni-adjusted (alpha / number of comparisons), for
  both the test and the interval, so that testing many variants does not inflate the chance of
  promoting one by luck (https://en.wikipedia.org/wiki/Bonferroni_correction);
- nothing is significant until both arms have ``min_sample`` trials: the normal approximation
  is poor on small counts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

Verdict = Literal["insufficient_data", "better", "worse", "no_difference"]

#: Trials each arm needs before a difference can be significant: the usual floor under which the
#: normal approximation of a binomial count cannot be trusted (it wants n·p and n·(1 - p) of at
#: least 5 to 10; rare events need more, which callers can ask for).
DEFAULT_MIN_SAMPLE = 100

_NORMAL = NormalDist()


@dataclass(frozen=True)
class Arm:
    """The results of one variant: ``successes`` out of ``trials`` (e.g. opened of delivered)."""

    name: str
    trials: int
    successes: int

    def __post_init__(self) -> None:
        if not 0 <= self.successes <= self.trials:
            raise ValueError(
                f"arm {self.name!r} needs trials >= successes >= 0, "
                f"got {self.successes} successes of {self.trials} trials"
            )

    @property
    def rate(self) -> float:
        """Successes per trial; 0 before any trial."""
        return self.successes / self.trials if self.trials else 0.0


@dataclass(frozen=True)
class Comparison:
    """One variant against the control. ``difference`` is variant rate - control rate, ``lift``
    the difference relative to the control rate (None when that is 0), ``alpha`` the
    Bonferroni-adjusted level of the test and of the interval (``ci_low``, ``ci_high``)."""

    name: str
    rate: float
    control_rate: float
    difference: float
    lift: float | None
    ci_low: float
    ci_high: float
    z: float
    p_value: float
    alpha: float
    significant: bool
    verdict: Verdict


def compare(
    control: Arm,
    variants: Sequence[Arm],
    *,
    confidence: float = 0.95,
    min_sample: int = DEFAULT_MIN_SAMPLE,
) -> list[Comparison]:
    """Each of ``variants`` against ``control``, in the given order.

    Raises :class:`ValueError` unless 0 < ``confidence`` < 1, ``min_sample`` >= 0 and there is
    at least one variant.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), got {confidence!r}")
    if min_sample < 0:
        raise ValueError(f"min_sample must be 0 or more, got {min_sample}")
    if not variants:
        raise ValueError("compare needs at least one variant besides the control")
    alpha = (1 - confidence) / len(variants)
    critical = _NORMAL.inv_cdf(1 - alpha / 2)
    return [_compare_one(control, variant, alpha, critical, min_sample) for variant in variants]


def best(comparisons: Sequence[Comparison]) -> str | None:
    """The variant to promote: the significantly better one with the largest difference, or
    None when no variant is significantly better than the control."""
    winners = [c for c in comparisons if c.significant and c.verdict == "better"]
    return max(winners, key=lambda c: c.difference).name if winners else None


def _compare_one(control: Arm, variant: Arm, alpha: float, critical: float, min_sample: int) -> Comparison:
    difference = variant.rate - control.rate
    if control.trials and variant.trials:
        pooled = (control.successes + variant.successes) / (control.trials + variant.trials)
        pooled_se = math.sqrt(pooled * (1 - pooled) * (1 / control.trials + 1 / variant.trials))
        wald_se = math.sqrt(
            control.rate * (1 - control.rate) / control.trials
            + variant.rate * (1 - variant.rate) / variant.trials
        )
        # A pooled standard error of 0 means all or none of both arms' trials succeeded: equal
        # rates, no evidence of a difference.
        z = difference / pooled_se if pooled_se > 0 else 0.0
        ci_low = max(-1.0, difference - critical * wald_se)
        ci_high = min(1.0, difference + critical * wald_se)
    else:
        # Without trials in an arm nothing is known: any difference in [-1, 1] is possible.
        z, ci_low, ci_high = 0.0, -1.0, 1.0
    # cdf(-|z|) rather than 1 - cdf(|z|), which rounds to 0 for large z.
    p_value = min(1.0, 2 * _NORMAL.cdf(-abs(z)))
    enough = control.trials >= min_sample and variant.trials >= min_sample
    significant = enough and p_value < alpha
    verdict: Verdict
    if not enough:
        verdict = "insufficient_data"
    elif significant:
        verdict = "better" if difference > 0 else "worse"
    else:
        verdict = "no_difference"
    return Comparison(
        name=variant.name,
        rate=variant.rate,
        control_rate=control.rate,
        difference=difference,
        lift=difference / control.rate if control.rate > 0 else None,
        ci_low=ci_low,
        ci_high=ci_high,
        z=z,
        p_value=p_value,
        alpha=alpha,
        significant=significant,
        verdict=verdict,
    )

"""Deterministic variant assignment for A/B and multivariate experiments on message templates.

A subject (the user id, or the recipient address when the message has no user) is hashed
together with the experiment id into a point of [0, 1), and the subject gets the variant whose
share of the cumulative, normalized weights covers that point:

- **Stable per subject.** SHA-256, unlike the built-in ``hash()``, is the same in every process
  and release, so a user sees the same variant on every message of an experiment, whichever
  producer or worker decides, and no assignment has to be stored or looked up.
- **Independent across experiments.** The experiment id salts the hash, so the variant a subject
  gets in one experiment says nothing about its variant in another, and experiments running at
  the same time do not bias each other's results.

The subject is hashed exactly as given: callers normalize recipient addresses (case) first.
Changing the weights or the order of a running experiment's variants moves the subjects near
the interval boundaries to another variant, so such a change starts a new experiment.

The rule is exact so that another implementation can reproduce it: the first 8 bytes of
``sha256(f"{experiment_id}:{subject}")``, read as a big-endian unsigned integer and divided by
2**64, fall into the first variant, in the given order, whose cumulative weight / total weight
exceeds them.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

#: Fewer than two variants is not an experiment.
MIN_VARIANTS = 2
#: Every variant needs its own sample: past ten, few experiments ever reach significance.
MAX_VARIANTS = 10
#: Names appear in URLs, metric labels and reports.
NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")

_POINTS = 2**64


@dataclass(frozen=True)
class Variant:
    """One arm of an experiment; ``weight`` is its share of subjects relative to the others
    (50/30/20 and 5/3/2 split alike)."""

    name: str
    weight: float


def validate_variants(variants: Sequence[Variant]) -> None:
    """Raise :class:`ValueError` saying what is wrong with ``variants``, if anything."""
    if not MIN_VARIANTS <= len(variants) <= MAX_VARIANTS:
        raise ValueError(
            f"an experiment needs {MIN_VARIANTS} to {MAX_VARIANTS} variants, got {len(variants)}"
        )
    seen: set[str] = set()
    for variant in variants:
        if not NAME_PATTERN.fullmatch(variant.name):
            raise ValueError(f"variant name {variant.name!r} must be 1-64 letters, digits, '-' or '_'")
        if variant.name in seen:
            raise ValueError(f"variant name {variant.name!r} is used twice")
        seen.add(variant.name)
        if not math.isfinite(variant.weight) or variant.weight <= 0:
            raise ValueError(
                f"variant {variant.name!r} needs a finite weight above 0, got {variant.weight!r}"
            )


def assign(experiment_id: str, subject: str, variants: Sequence[Variant]) -> Variant:
    """The variant of experiment ``experiment_id`` that ``subject`` gets, always the same one.

    Raises :class:`ValueError` when ``variants`` do not pass :func:`validate_variants`.
    """
    validate_variants(variants)
    digest = hashlib.sha256(f"{experiment_id}:{subject}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") / _POINTS
    total = sum(variant.weight for variant in variants)
    cumulative = 0.0
    for variant in variants:
        cumulative += variant.weight / total
        if point < cumulative:
            return variant
    # Floating point: the normalized weights may sum to just under 1, and a point within 2**-53
    # of 1 rounds up to 1.0; either way it belongs at the top, to the last variant.
    return variants[-1]

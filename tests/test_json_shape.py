"""The JSON shape limits: depth, number of values and NUL, at their exact boundaries, and a
check that cannot itself overflow the stack."""

from __future__ import annotations

from typing import Any

import pytest

from shared.errors import PayloadTooLarge, ValidationError
from shared.json_shape import MAX_JSON_DEPTH, MAX_JSON_VALUES, JsonShapeError, check_shape, validate_shape


def nested(depth: int) -> Any:
    """Objects and arrays nested ``depth`` levels deep (the outermost is level 1)."""
    value: Any = "leaf"
    for level in range(depth):
        value = {"k": value} if level % 2 else [value]
    return value


def test_nesting_up_to_the_limit_passes_and_one_more_level_is_refused() -> None:
    check_shape(nested(MAX_JSON_DEPTH))

    with pytest.raises(JsonShapeError, match=f"deeper than {MAX_JSON_DEPTH}") as caught:
        check_shape(nested(MAX_JSON_DEPTH + 1))
    assert not caught.value.too_large


def test_a_very_deep_document_is_refused_without_recursion() -> None:
    with pytest.raises(JsonShapeError, match="deeper"):
        check_shape(nested(200_000))


def test_values_up_to_the_limit_pass_and_one_more_is_a_size_problem() -> None:
    check_shape(list(range(MAX_JSON_VALUES - 1)))  # the list itself is a value too

    with pytest.raises(JsonShapeError, match=f"more than {MAX_JSON_VALUES} values") as caught:
        check_shape(list(range(MAX_JSON_VALUES)))
    assert caught.value.too_large


@pytest.mark.parametrize("document", [{"a": "x\x00y"}, {"a\x00": 1}, [[["\x00"]]]])
def test_a_nul_character_in_a_string_or_key_is_refused(document: Any) -> None:
    with pytest.raises(JsonShapeError, match="NUL"):
        check_shape(document)


def test_the_python_api_gets_validation_errors_naming_the_field() -> None:
    with pytest.raises(ValidationError) as deep:
        validate_shape(nested(MAX_JSON_DEPTH + 1), "payload")
    with pytest.raises(PayloadTooLarge) as many:
        validate_shape(list(range(MAX_JSON_VALUES)), "data")

    assert deep.value.details[0]["field"] == "payload" and deep.value.status_code == 422
    assert many.value.details[0]["field"] == "data" and many.value.status_code == 413

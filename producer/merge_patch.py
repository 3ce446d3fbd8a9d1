"""PATCH bodies: JSON merge patches (RFC 7396, https://www.rfc-editor.org/rfc/rfc7396).

Across the API, ``PUT`` takes a resource's whole document (a field left out takes its
default) and ``PATCH`` takes a merge patch of it: a field given replaces the current value,
an object merges key by key, and ``null`` removes the field, which then takes its default
(or is refused where the document requires it). The patched document is validated exactly
as a ``PUT`` of it would be, so both paths accept and refuse the same documents.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, create_model


def merge_patch(target: Any, patch: Any) -> Any:
    """``target`` with ``patch`` applied (RFC 7396, section 2)."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = merge_patch(merged.get(name), value)
    return merged


def patch_model(model: type[BaseModel]) -> type[BaseModel]:
    """The schema of a merge patch of ``model``'s document, for the OpenAPI document: the
    same fields, each optional and nullable (``null`` removes it)."""
    fields: dict[str, Any] = {
        name: (info.annotation | None, None)  # type: ignore[operator]
        for name, info in model.model_fields.items()
    }
    config = ConfigDict(
        alias_generator=model.model_config.get("alias_generator"),
        populate_by_name=True,
        extra=model.model_config.get("extra"),
    )
    patch: type[BaseModel] = create_model(
        f"{model.__name__}Patch",
        __config__=config,
        __doc__=f"A JSON merge patch (RFC 7396) of {model.__name__}: fields given replace the "
        "current ones, objects merge key by key, null removes a field (it takes its default).",
        **fields,
    )
    return patch


#: How every ``PUT`` of a resource reads its body (OpenAPI descriptions start with it).
PUT_SEMANTICS = (
    "Replaces the whole document: a field left out takes its default, a required field left "
    "out is refused (422). Use PATCH to change some fields only."
)
#: How every ``PATCH`` of a resource reads its body.
PATCH_SEMANTICS = (
    "Takes a JSON merge patch (RFC 7396) of the document PUT takes: fields given replace the "
    "current ones, objects merge key by key, and `null` removes a field, which then takes its "
    "default (a required field cannot be removed: 422). The result is checked as a PUT of it "
    "would be. Send it as `application/json` or `application/merge-patch+json`."
)

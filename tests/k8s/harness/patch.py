"""How an update's body becomes the object the emulated API server stores: PUT and PATCH semantics.

kmock merges a patch into the stored dict; the real server does more, and kopf, kubectl and the
kubernetes client depend on it:

- merge patch (RFC 7386), JSON patch (RFC 6902, a failing `test` answered 422 as kopf expects),
  strategic merge patch (kubectl apply of built-in kinds, approximated; refused with 415 for
  custom resources as the real server does) and server-side apply (`application/apply-patch+yaml`,
  approximated as create-or-merge);
- a resourceVersion in the body that is not the stored one is a 409 Conflict;
- the status subresource: a write to `.../status` changes only `status`, a write to the main
  resource leaves `status` alone;
- metadata the server owns (name, namespace, uid, creationTimestamp, deletion fields, generation)
  is kept from the stored object, and `generation` goes up when anything but metadata and status
  changed;
- no new finalizers on an object being deleted.

Pure functions over the stored object and the request's body; store.ObjectStore does the rest
(lookup, admission, commit).
"""

from __future__ import annotations

import copy
import json
from typing import Any, Final

import apimachinery as am
import yaml
from apitypes import ApiError, Obj, ResourceType

APPLY: Final = "application/apply-patch+yaml"
JSON_PATCH: Final = "application/json-patch+json"
MERGE_PATCH: Final = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH: Final = "application/strategic-merge-patch+json"

#: metadata the server keeps from the stored object whatever an update says
SERVER_OWNED_METADATA: Final = (
    "name",
    "namespace",
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
)


def decode_patch(body: bytes, content_type: str) -> tuple[str, Any]:
    """(the media type without parameters, the decoded patch); 400 if it does not decode."""
    media_type = content_type.split(";")[0].strip().lower()
    try:
        patch = yaml.safe_load(body) if "yaml" in media_type else json.loads(body or b"null")
    except (ValueError, yaml.YAMLError) as exc:
        raise ApiError(400, "BadRequest", f"invalid patch body: {exc}") from None
    return media_type, patch


def apply_patch(rtype: ResourceType, name: str, current: Obj, patch: Any, media_type: str) -> Obj:
    """`current` (as served) with `patch` applied the way `media_type` says: the body of the update."""
    try:
        if media_type == JSON_PATCH:
            patched = am.json_patch(current, patch)
        elif media_type == STRATEGIC_MERGE_PATCH:
            if rtype.custom:
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    "strategic merge patch is not supported for custom resources: use a merge patch",
                )
            patched = am.strategic_merge_patch(current, patch)
        elif media_type in (MERGE_PATCH, APPLY):
            # Server-side apply approximated as a merge of the applied configuration
            # (no field ownership: fields dropped from the configuration are not removed).
            patched = am.merge_patch(current, patch)
        else:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - "
                "accepted media types include: application/json-patch+json, "
                "application/merge-patch+json, application/apply-patch+yaml",
            )
    except am.PatchError as exc:
        raise ApiError(
            422,
            "Invalid",
            f"the server rejected our request due to an error in our request: {exc}",
            {"name": name, "group": rtype.group, "kind": rtype.plural},
        ) from None
    if not isinstance(patched, dict):
        raise ApiError(422, "Invalid", "the patch did not produce an object")
    rv = (patched.get("metadata") or {}).get("resourceVersion")
    if rv and rv != current["metadata"]["resourceVersion"]:
        raise ApiError.conflict(rtype, name)
    return patched


def updated_object(rtype: ResourceType, name: str, old: Obj, body: Any, subresource: str | None) -> Obj:
    """What a PUT of `body` (to the object or its `subresource`) makes of the stored `old`, before admission."""
    if not isinstance(body, dict):
        raise ApiError(400, "BadRequest", "the body of the request was not an object")
    meta = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
    if meta.get("resourceVersion") and meta["resourceVersion"] != old["metadata"]["resourceVersion"]:
        raise ApiError.conflict(rtype, name)
    if meta.get("name") not in (None, name):
        raise ApiError(
            400,
            "BadRequest",
            f"the name of the object ({meta['name']}) does not match the name on the URL ({name})",
        )
    new = copy.deepcopy(body)
    new["metadata"] = copy.deepcopy(meta)
    for field in SERVER_OWNED_METADATA:
        if field in old["metadata"]:
            new["metadata"][field] = old["metadata"][field]
        else:
            new["metadata"].pop(field, None)
    new["apiVersion"], new["kind"] = old["apiVersion"], old["kind"]
    if subresource == "status":  # only the status changes
        status = new.get("status")
        new = copy.deepcopy(old)
        if status is None:
            new.pop("status", None)
        else:
            new["status"] = status
    else:
        if rtype.has_status:  # status changes only through .../status
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        if old["metadata"].get("deletionTimestamp"):
            _refuse_new_finalizers(rtype, name, old, new)
    if _without_status(new) != _without_status(old):
        new["metadata"]["generation"] = int(old["metadata"].get("generation", 1)) + 1
    return new


def _refuse_new_finalizers(rtype: ResourceType, name: str, old: Obj, new: Obj) -> None:
    added = set(new["metadata"].get("finalizers") or []) - set(old["metadata"].get("finalizers") or [])
    if added:
        raise ApiError.invalid(
            rtype,
            name,
            [
                f"metadata.finalizers: Forbidden: no new finalizers can be "
                f"added if the object is being deleted, found new "
                f"finalizers {sorted(added)}"
            ],
        )


def _without_status(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}

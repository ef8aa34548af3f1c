"""What every part of the emulated API server speaks: a served resource, a stored change, an error.

Kept apart from the store (store.py), the update semantics (patch.py), the watch streams
(watch.py) and the HTTP front (emulator.py) so that each of them imports these and none imports
another's internals.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Final

import aiohttp.web

Obj = dict[str, Any]
#: (group, plural, namespace or "", name): one object, whatever version it is served in.
StoreKey = tuple[str, str, str, str]
Admission = Callable[[Obj], "list[str]"]
Defaulter = Callable[[Obj], Obj]

ALL_VERBS: Final = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclasses.dataclass
class ResourceType:
    """One served group/version/plural, as discovery describes it."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    subresources: tuple[str, ...] = ()
    #: a CRD's additionalPrinterColumns for this version (None: built-in printing).
    printer_columns: list[dict[str, Any]] | None = None
    #: declared by a CustomResourceDefinition: admission applies.
    custom: bool = False
    #: the CRD version's openAPIV3Schema (served under /openapi/v3 for `kubectl explain`).
    schema: dict[str, Any] | None = None

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def storage(self) -> tuple[str, str]:
        return (self.group, self.plural)

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    @property
    def qualified_kind(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind

    @property
    def resource(self) -> str:
        """`plural.group` (`plural` in the core group), as the API server names it in errors."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


@dataclasses.dataclass(frozen=True)
class Event:
    revision: int
    storage: tuple[str, str]
    type: str  # ADDED | MODIFIED | DELETED
    object: Obj
    old: Obj | None


class ApiError(Exception):
    """An API error answered as a `Status` object, as the real server does."""

    def __init__(self, code: int, reason: str, message: str, details: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, dict(details or {})

    def status(self) -> Obj:
        status: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            status["details"] = self.details
        return status

    def response(self) -> aiohttp.web.Response:
        return aiohttp.web.json_response(self.status(), status=self.code)

    @classmethod
    def not_found(cls, rtype: ResourceType, name: str) -> ApiError:
        return cls(
            404,
            "NotFound",
            f'{rtype.resource} "{name}" not found',
            {"name": name, "group": rtype.group, "kind": rtype.plural},
        )

    @classmethod
    def invalid(cls, rtype: ResourceType, name: str, messages: list[str]) -> ApiError:
        # apimachinery's errors.NewInvalid: one error inline, several as "[a, b]".
        text = messages[0] if len(messages) == 1 else "[" + ", ".join(messages) + "]"
        causes = []
        for message in messages:
            field, _, rest = message.partition(": ")
            causes.append(
                {"reason": "FieldValueInvalid", "message": rest if rest else message, "field": field if rest else ""}
            )
        return cls(
            422,
            "Invalid",
            f'{rtype.qualified_kind} "{name}" is invalid: {text}',
            {"name": name, "group": rtype.group, "kind": rtype.kind, "causes": causes},
        )

    @classmethod
    def conflict(cls, rtype: ResourceType, name: str) -> ApiError:
        return cls(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {rtype.resource} "{name}": the object has been '
            "modified; please apply your changes to the latest version and try again",
            {"name": name, "group": rtype.group, "kind": rtype.plural},
        )

    @classmethod
    def unknown_resource(cls) -> ApiError:
        return cls(404, "NotFound", "the server could not find the requested resource")

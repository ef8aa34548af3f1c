"""The base of every part of the TuningJob model: camelCase aliases, nulls read as the API server
reads them, and rule violations that name their field. spec.py and trialrun.py build on it."""

from __future__ import annotations

import math
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic.alias_generators import to_camel


class SpecProblems(ValueError):
    """Several rule violations of one model, each naming its field (relative to the model)."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{field}: {msg}" if field else msg for field, msg in problems))


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: Any) -> Any:
        # As the API server (PruneNonNullableNullsWithoutDefaults, then defaulting): a null field is
        # absent and gets its default, as does a null value in a map of typed values (requests,
        # when ...); only a field whose null switches something off (maxGradNorm) keeps it. So
        # `budget:` with every line commented out means the same to `openautoglm validate` and to kubectl.
        if not isinstance(data, dict):
            return data
        out = {}
        for key, value in data.items():
            field = cls.model_fields.get(key) or next((f for f in cls.model_fields.values() if f.alias == key), None)
            if field is None:
                out[key] = value  # an unknown field: extra="forbid" names it
            elif value is None:
                if _admits_none(field.annotation) and field.default is not None:
                    out[key] = None
            elif isinstance(value, dict) and _typed_map(field.annotation):
                out[key] = {k: v for k, v in value.items() if v is not None}
            elif isinstance(value, float) and value.is_integer() and _int_only(field.annotation):
                # JSON has one number type: the API server takes 12.0 for an integer field. Validation
                # is strict otherwise (a string is no number), as the API server's.
                out[key] = int(value)
            else:
                out[key] = value
        return out


def _variants(annotation: Any) -> tuple[Any, ...]:
    return get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)


def _admits_none(annotation: Any) -> bool:
    return any(a is None or a is type(None) for a in _variants(annotation))


def _int_only(annotation: Any) -> bool:
    """int (or int | None), not float: a field the CRD types ``integer``."""
    kinds = {get_args(a)[0] if get_origin(a) is Annotated else a for a in _variants(annotation)}
    return int in kinds and float not in kinds


def _typed_map(annotation: Any) -> bool:
    """dict[str, X] with X not Any: the CRD describes its values (and prunes their nulls)."""
    return any(get_origin(a) is dict and get_args(a)[1:] != (Any,) for a in _variants(annotation))


def _non_finite(value: object) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _raise(problems: list[tuple[str, str]]) -> None:
    if problems:
        raise SpecProblems(problems)

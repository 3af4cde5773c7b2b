"""The one base of every config: what a run is computed from must be checkable where it enters.

At the bottom of the house (beside errors.py and files.py). pydantic's defaults are lax in two ways that let
nonsense through a config and into a run's identity: ``inf``/``nan`` pass a ``gt=0`` float (``lr=inf`` trained a
run to NaN weights and marked it finished), and ``True`` passes as the integer 1 (``train.iters=true``). A
:class:`Config` refuses both, and unknown keys, and is frozen (a config is hashed into a run id).
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

#: a run's seed: what numpy and torch both accept (torch.manual_seed takes < 2**63 as a signed 64-bit value)
Seed = Annotated[int, Field(ge=0, lt=2**63, description="every random choice of the run flows from it")]


def _admits_bool(annotation: Any) -> bool:
    """Whether a field typed ``annotation`` may hold a bool (bool itself, Any, or a union/literal with one)."""
    if annotation is bool or annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return any(isinstance(a, bool) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType, typing.Annotated):
        return any(_admits_bool(a) for a in typing.get_args(annotation))
    return False


def _numbers_inside(annotation: Any) -> bool:
    """Whether ``annotation`` is, or holds (tuple, list, dict values), an int or a float."""
    if annotation in (int, float):
        return True
    return any(_numbers_inside(a) for a in typing.get_args(annotation) if a is not Ellipsis)


def _bools(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, (list, tuple)):
        return any(_bools(v) for v in value)
    if isinstance(value, dict):
        return any(_bools(v) for v in value.values())
    return False


def without_later_defaults(dumped: dict[str, Any], later: Mapping[str, object]) -> dict[str, Any]:
    """``dumped`` (a config's model_dump) without the options added after runs were stored, where they hold their
    defaults: a run id hashes the dumped config, so a new option must not change the ids of runs that never set it."""
    return {k: v for k, v in dumped.items() if not (k in later and v == later[k])}


class Config(BaseModel):
    """Strict where it matters, plain pydantic elsewhere (a list still becomes a tuple, 3 still becomes 3.0)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        if field is not None and _bools(value) and not _admits_bool(field.annotation) \
                and _numbers_inside(field.annotation):
            raise ValueError("a number, not a boolean")
        return value


class Result(BaseModel):
    """The one base of every typed result a stage or an analysis hands on (to its children, the runner, the report):
    its fields are what its JSON holds — no more (an unknown key is refused), names that JSON spells otherwise
    (``steps_to_0.9``, ``scr+ft``) by alias. :meth:`to_json` writes back exactly the keys it was given, so a result
    read from a stored file and written again is the same JSON."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=True)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)

    @classmethod
    def from_json(cls, data: Any, where: str = "result"):
        """A stored result; one that does not have this shape is one :class:`~wrapperlab.errors.IntegrityError`-like
        line (a ConfigError naming ``where``) rather than a traceback deep in a report."""
        from pydantic import ValidationError

        from wrapperlab.errors import ConfigError

        try:
            return cls.model_validate(data)
        except ValidationError as e:
            err = e.errors()[0]
            key = ".".join(str(p) for p in err["loc"]) or cls.__name__
            raise ConfigError(f"{where}: {key}", err.get("input"), f"a {cls.__name__} ({err['msg'].lower()})") from None

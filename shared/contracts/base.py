"""The typed registry of event contracts: each event type is a pydantic model with its
CloudEvents type (the version is part of the type), its topic, its owner and its key.

Versioning: an additive change (a new optional field) keeps the type; a breaking change adds
a new model with `.v2` and both are published for a while. The AsyncAPI document is
generated from this registry, and tests/contract pins it so a silent change fails CI.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

# Money is Decimal end to end and travels as a JSON string with two decimals ("1234.50"), so
# no float touches it. At most two places are accepted, so the quantize never rounds.
Money = Annotated[
    Decimal,
    Field(allow_inf_nan=False, max_digits=18, decimal_places=2),
    PlainSerializer(lambda d: format(d.quantize(Decimal("0.01")), "f"), return_type=str,
                    when_used="json"),
]


class Fact(BaseModel):
    """Base of facts and inbound messages. Unknown fields are ignored (forward-compatible)."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    TYPE: ClassVar[str]


INT64 = (-(2**63), 2**63 - 1)  # what the store (BSON int64) holds


def _unsafe_char(ch: str) -> str | None:
    o = ord(ch)
    if 0xD800 <= o <= 0xDFFF:
        return "a lone surrogate (invalid Unicode)"
    if (o < 0x20 and ch not in "\t\n\r") or 0x7F <= o <= 0x9F:
        return f"control character U+{o:04X}"
    if o in (0xFFFE, 0xFFFF):
        return f"non-character U+{o:04X}"
    return None


# every character `_unsafe_char` names, as one class: a string is searched in C, not a
# character at a time in Python (the check ran on every inbound string: 18% of a consumer's
# CPU); `_unsafe_char` still words the refusal
_CONTROL_CLASS = r"\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F\uFFFE\uFFFF"
_UNSAFE = re.compile(f"[{_CONTROL_CLASS}\\uD800-\\uDFFF]")


def refuse_unsafe(value: Any, path: str = "") -> None:
    """Raise ValueError naming the place of the first value the store cannot hold or that
    would break an export later: integers outside int64, invalid Unicode (lone surrogates),
    NUL and other control characters (tab, LF and CR are text), U+FFFE/U+FFFF."""
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if not INT64[0] <= value <= INT64[1]:
            raise ValueError(f"{path or 'value'}: integer out of range (at most 2^63-1)")
    elif isinstance(value, str):
        hit = _UNSAFE.search(value)
        if hit:
            raise ValueError(f"{path or 'value'}: {_unsafe_char(hit.group())} is not allowed")
    elif isinstance(value, dict):
        for k, v in value.items():
            refuse_unsafe(k, f"{path}.(key)" if path else "(key)")
            refuse_unsafe(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            refuse_unsafe(v, f"{path}[{i}]")


# Validation context key: the raw JSON the data came from was found free of anything
# `refuse_unsafe` refuses (`raw_json_safe`), so its per-field search is skipped.
RAW_CHECKED = "mptf_raw_checked"

# JSON bytes that could decode to a value `refuse_unsafe` refuses hold one of these: an escape
# (\\) that can make a control character or a surrogate; a raw NUL or DEL; the lead byte of
# a C1 control (C2), of a surrogate (ED: json.loads decodes bytes with "surrogatepass") or of
# U+FFFE/U+FFFF (EF) in UTF-8; FE/FF, or a NUL, in UTF-16/32 text (json.loads reads those
# too). Most text has none: two C passes over the bytes say so. Text with one is searched
# for what is really refused (`_MAYBE_UNSAFE`), and only text where that finds something
# is searched value by value (it may still be harmless: the backslash of a path).
_SPECIAL = b"\x00\x7f\xfe\xff\\\xc2\xed\xef"
_MAYBE_UNSAFE = re.compile(
    rb"[\x00\x7f\xfe\xff]|\\(?:u(?:00[01]|007f|00[89]|d[89a-f]|fff[ef])|[bf])"
    rb"|\xc2[\x80-\x9f]|\xed[\xa0-\xbf]|\xef\xbf[\xbe\xbf]", re.IGNORECASE)
# a run of 19 digits: an integer beyond int64 has at least that many
_DIGITS = bytes.maketrans(b"0123456789", b"\x01" * 10)
_LONG_NUMBER = b"\x01" * 19


def raw_json_safe(raw: bytes) -> bool:
    """Whether the JSON text `raw` certainly decodes to values `refuse_unsafe` accepts, found
    by a few passes in C over the bytes instead of a Python walk over every decoded value
    (which was more than half of validating a concept note). Pass `{RAW_CHECKED: True}` as
    the validation context of the data decoded from it. (json.loads itself refuses raw C0
    control characters inside strings.)"""
    if raw.translate(_DIGITS).find(_LONG_NUMBER) >= 0:
        return False
    if len(raw.translate(None, _SPECIAL)) == len(raw):
        return True
    return _MAYBE_UNSAFE.search(raw) is None


# What `refuse_unsafe` refuses in a string, as a JSON Schema pattern (ECMA-262, Python and
# Rust regex alike) on every string of an input model that has no narrower rule of its own:
# so the documents (OpenAPI, AsyncAPI) say what is refused, and clients and fuzzers know it.
# Lone surrogates are refused too but not named: they are not Unicode text, and a pattern
# naming them is not a regex to every validator (jsonschema-rs refuses the schema).
SAFE_TEXT = f"^[^{_CONTROL_CLASS}]*$"


def _safe_text(schema: Any, resolve: Any, seen: set[int]) -> None:
    """Every string of `schema` (nested objects, arrays, anyOf branches, referenced models)
    without a pattern, format or fixed values gets SAFE_TEXT."""
    if not isinstance(schema, dict) or id(schema) in seen:
        return
    seen.add(id(schema))
    if "$ref" in schema:
        _safe_text(resolve(schema), resolve, seen)
        return
    if schema.get("type") == "string" and not ({"pattern", "format", "enum", "const"}
                                              & set(schema)):
        schema["pattern"] = SAFE_TEXT
    for key in ("properties", "patternProperties", "$defs"):
        for sub in (schema.get(key) or {}).values():
            _safe_text(sub, resolve, seen)
    for key in ("items", "additionalProperties"):
        _safe_text(schema.get(key), resolve, seen)
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        for sub in schema.get(key) or ():
            _safe_text(sub, resolve, seen)


class SafeInput(BaseModel):
    """Base of every model that takes input from outside (HTTP bodies, inbound records):
    each field's raw value is checked by `refuse_unsafe` first, so hostile values are
    answered (422, or a dead letter `invalid`) with the field named, never stored; and its
    free text is searched for personal data of individuals (shared.privacy), refused with
    the error type `personal_data` (HTTP 422 `personal-data`, dead letter `personal-data`).
    Models whose service answers personal data together with its other rules (concept notes,
    progress reports) set `PRIVACY_BY_SERVICE`."""

    PRIVACY_BY_SERVICE: ClassVar[bool] = False
    # structured fields that are not free text about people (an organisation's contact
    # address, a URL, a secret): not searched
    PRIVACY_EXEMPT: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> Any:
        json_schema = handler(core_schema)
        _safe_text(handler.resolve_ref_schema(json_schema), handler.resolve_ref_schema, set())
        return json_schema

    @field_validator("*", mode="before")
    @classmethod
    def _refuse_unsafe(cls, v: Any, info: ValidationInfo) -> Any:
        if not (info.context and info.context.get(RAW_CHECKED)):
            refuse_unsafe(v, info.field_name or "")
        return v

    @model_validator(mode="after")
    def _refuse_personal_data(self) -> Any:
        if self.PRIVACY_BY_SERVICE:
            return self
        from shared.privacy import find_personal_data

        hits = find_personal_data(self.model_dump(mode="json", exclude=set(self.PRIVACY_EXEMPT)))
        if hits:
            raise PydanticCustomError("personal_data", "{fields}: {message}", {
                "fields": ", ".join(sorted({h.field for h in hits})),
                "message": hits[0].message})
        return self


class Command(SafeInput):
    """Base of inbound requests from outside: unknown fields are refused, so a typo (or data
    that has no place here) is answered instead of silently dropped; hostile values too."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    TYPE: ClassVar[str]


@dataclass(frozen=True)
class Contract:
    type: str
    model: type[BaseModel]
    topic: str
    owner: str  # the one service that writes it (for inbound: the one that reads it)
    key: str  # the data field whose value is the Kafka key and CloudEvents subject
    summary: str
    example: dict[str, Any] = field(default_factory=dict)
    inbound: bool = False
    also: tuple[str, ...] = ()  # further topics it is published on (same event id)

    @property
    def topics(self) -> tuple[str, ...]:
        return (self.topic, *self.also)

    @property
    def name(self) -> str:
        return self.model.__name__


REGISTRY: dict[str, Contract] = {}


def register(*, topic: str, owner: str, key: str, example: dict[str, Any],
             inbound: bool = False, also: tuple[str, ...] = ()):
    def deco(model: type[BaseModel]) -> type[BaseModel]:
        t = model.TYPE  # type: ignore[attr-defined]
        if t in REGISTRY:
            raise RuntimeError(f"event type {t} registered twice")
        summary = (model.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        # (that the example satisfies the contract it illustrates is a test, not a cost of
        # every start: tests/contract/test_contracts.py)
        REGISTRY[t] = Contract(t, model, topic, owner, key, summary, example, inbound, also)
        return model

    return deco


def contract_for(event: BaseModel | type[BaseModel]) -> Contract:
    model = event if isinstance(event, type) else type(event)
    return REGISTRY[model.TYPE]  # type: ignore[attr-defined]

"""Loading the OpenAPI file and validating bodies against its component schemas."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import fastjsonschema
import yaml

from mgsim.errors import MgsimError

SPEC_PATH = Path(str(resources.files("mgsim.contract").joinpath("openapi.yaml")))
_SPEC_URI = "urn:mgsim:openapi"


class ContractViolation(MgsimError):
    """A body does not conform to a schema of the contract.

    ``field`` is the dotted path of the offending member (``"amazonConnectParams.streamArn"``),
    or ``""`` for the body itself.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field or 'body'}: {message}")
        self.field = field
        self.message = message


@functools.cache
@functools.cache
def spec_text() -> str:
    """The OpenAPI file as text (what ``GET /openapi.yaml`` serves), read once: a file read
    on every request would block the server's event loop."""
    return SPEC_PATH.read_text(encoding="utf-8")


@functools.cache
def load_spec() -> dict[str, Any]:
    """The OpenAPI file, parsed."""
    spec: dict[str, Any] = yaml.safe_load(spec_text())
    return spec


def ecma_pattern(pattern: str) -> str:
    r"""A schema ``pattern`` rewritten so Python's ``re.search`` reads it as ECMA-262 does.

    JSON Schema patterns are ECMA-262 regular expressions, where ``$`` matches only at the
    end of the string; in Python it also matches before a trailing newline, so ``"en-US\n"``
    would pass ``^[A-Za-z-]+$``. Every end anchor (an unescaped ``$`` outside a character
    class) becomes ``\Z``.

    >>> print(ecma_pattern("^[0-9]{1,64}$"))
    ^[0-9]{1,64}\Z
    >>> print(ecma_pattern(r"^a\$[$]b$"))
    ^a\$[$]b\Z
    """
    out: list[str] = []
    in_class, i = False, 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            out.append(pattern[i : i + 2])
            i += 2
            continue
        if c == "[":
            in_class = True
        elif c == "]":
            in_class = False
        out.append("\\Z" if c == "$" and not in_class else c)
        i += 1
    return "".join(out)


def _ecma(node: Any) -> Any:
    """``node`` with every ``pattern`` keyword in ECMA-262 form (see :func:`ecma_pattern`),
    and OpenAPI 3.0's ``nullable: true`` said as JSON Schema says it (``null`` among the
    types), since the draft 4 validators do not know the keyword."""
    if isinstance(node, dict):
        out = {
            k: ecma_pattern(v) if k == "pattern" and isinstance(v, str) else _ecma(v)
            for k, v in node.items()
        }
        if out.pop("nullable", False) is True and isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        return out
    if isinstance(node, list):
        return [_ecma(v) for v in node]
    return node


@functools.cache
def _validator(schema_name: str) -> Any:
    # Imported here: jsonschema loads its optional format checkers at import, which costs
    # seconds, and it is only needed to explain a body that is already known to be invalid.
    from jsonschema import Draft4Validator
    from referencing import Registry
    from referencing.jsonschema import DRAFT4

    spec = _ecma(load_spec())
    if schema_name not in spec["components"]["schemas"]:
        raise KeyError(f"no schema {schema_name!r} in the contract")
    # OpenAPI 3.0 schema objects are a JSON Schema draft 4 dialect; unknown keywords such as
    # `example` are ignored by the validator.
    registry: Registry[Any] = Registry().with_resource(_SPEC_URI, DRAFT4.create_resource(spec))
    ref = {"$ref": f"{_SPEC_URI}#/components/schemas/{schema_name}"}
    return Draft4Validator(ref, registry=registry)


def _inline(node: Any, schemas: dict[str, Any]) -> Any:
    """``node`` with every ``#/components/schemas/X`` reference replaced by its schema."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            return _inline(schemas[ref.rsplit("/", 1)[1]], schemas)
        return {k: _inline(v, schemas) for k, v in node.items() if k != "example"}
    if isinstance(node, list):
        return [_inline(v, schemas) for v in node]
    return node


@functools.cache
def _fast_check(schema_name: str) -> Callable[[Any], Any]:
    """A compiled validator: answers valid/invalid in microseconds. It never fills in
    defaults (``use_default=False``), so it only ever judges, like the reference validator."""
    schemas = _ecma(load_spec()["components"]["schemas"])
    inlined = _inline(copy.deepcopy(schemas[schema_name]), schemas)
    inlined["$schema"] = "http://json-schema.org/draft-04/schema#"
    check: Callable[[Any], Any] = fastjsonschema.compile(inlined, use_default=False)
    return check


_COMBINATORS = frozenset({"anyOf", "oneOf", "not"})


def _describe(error: Any) -> tuple[str, str]:
    path = ".".join(str(p) for p in error.absolute_path)
    validator = error.validator
    if validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        field = f"{path}.{missing}" if path else missing
        return field, "is required"
    if validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        names = ", ".join(extra)
        field = f"{path}.{extra[0]}" if path and extra else (extra[0] if extra else path)
        return field, f"unknown parameter ({names}); check the spelling"
    if validator in ("oneOf", "anyOf", "not") and "x-mgsim-format" in error.schema:
        return path, str(error.schema["x-mgsim-format"])
    if validator == "enum":
        allowed = ", ".join(map(str, error.validator_value))
        return path, f"must be one of: {allowed}"
    if validator == "type":
        return path, f"must be of type {error.validator_value}"
    if validator == "minLength":
        return path, "must not be empty"
    if validator == "maxLength":
        return path, f"must be at most {error.validator_value} characters"
    if validator == "pattern":
        if "x-mgsim-format" in error.schema:  # the contract's own words for the form
            return path, str(error.schema["x-mgsim-format"])
        # Named as the contract writes it, not in its Python form.
        pattern = str(error.validator_value).replace("\\Z", "$")
        return path, f"has an invalid format (expected {pattern})"
    return path, error.message


def validate(schema_name: str, body: Any) -> None:
    """Check ``body`` against component schema ``schema_name``.

    Raises :class:`ContractViolation` naming the first offending field, in a stable order
    (shallowest path first) so that the same bad body always gets the same answer.

    >>> validate("StopStreamingRequest", {"namespace": "siprec", "guid": "1"})
    >>> validate("StopStreamingRequest", {"namespace": "sip", "guid": "1"})
    Traceback (most recent call last):
    ...
    mgsim.contract._spec.ContractViolation: namespace: must be one of: siprec, twilio, ...
    """
    try:
        _fast_check(schema_name)(body)
        return
    except fastjsonschema.JsonSchemaException:
        pass
    # Invalid: let the reference validator find and name the offending field.
    errors = list(_validator(schema_name).iter_errors(body))
    if not errors:  # the two validators disagree; trust the reference one
        return
    # A combinator's error (anyOf, oneOf: which members go together) comes after every
    # error about a member itself, which says more: a namespace out of its enum is named
    # as such, not as the combination it also breaks.
    errors.sort(
        key=lambda e: (
            e.validator in _COMBINATORS,
            len(e.absolute_path),
            [str(p) for p in e.absolute_path],
        )
    )
    field, message = _describe(errors[0])
    raise ContractViolation(field, message)

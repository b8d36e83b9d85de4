"""The API contract: mgsim's own OpenAPI file, request validation and the error-code table.

The OpenAPI file beside this module is the one source of truth. The simulator validates
request bodies against its schemas (:func:`validate`), and the tests check every response
against them, so the server cannot drift from the published contract.
"""

from __future__ import annotations

from mgsim.contract._codes import CODES, ErrorCode, Problem
from mgsim.contract._spec import (
    SPEC_PATH,
    ContractViolation,
    load_spec,
    spec_text,
    validate,
)

__all__ = [
    "CODES",
    "SPEC_PATH",
    "ContractViolation",
    "ErrorCode",
    "Problem",
    "load_spec",
    "spec_text",
    "validate",
]

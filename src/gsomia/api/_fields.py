"""The values a request may carry, each with the constraint the node enforces stated in its schema.

A request field is one of these types, so the OpenAPI document says what the server checks: a
reason says something, identifiers follow the node's pattern, instants the one pattern
:mod:`gsomia.core.instants` parses, numbers stay within the store's 64-bit integers. Text no store
can hold (a NUL, a lone surrogate) never reaches a field: the one gate, :mod:`gsomia.api._text`,
refuses it anywhere in a request first (every operation's ``x-gsomia-rules`` says so). Names the
node knows only from its data (parties, levels, agreements, purposes, topics, roles) carry an
``x-gsomia-vocabulary`` mark that :mod:`gsomia.api._openapi` turns into the ``enum`` of this node's
catalogue; the service refuses any other name.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi.security import HTTPBearer
from pydantic import Field, StrictBool, StringConstraints

from gsomia.core.instants import INSTANT_PATTERN, TIMESTAMP_PATTERN
from gsomia.kernel import ITEM_ID

__all__ = [
    "BEARER",
    "MAX_INT",
    "PATTERN_WORDS",
    "AgreementId",
    "Bool",
    "Caveat",
    "Classification",
    "Id",
    "Instant",
    "Party",
    "Purpose",
    "RoleName",
    "Seq",
    "Text",
    "Timestamp",
    "Topic",
    "Words",
    "vocabulary",
    "whole_number",
]

BEARER = HTTPBearer(auto_error=False, description="An API token issued by the node")

ID_PATTERN = ITEM_ID.pattern  # what an item or person id may be: the kernel's rule
MAX_INT = 2**63 - 1  # the store's integers are signed 64-bit
# at least one character that is not white space: what "give a reason" means. The white
# space is spelled out (what Python's str.strip removes): \s differs between JSON Schema's regular
# expressions, pydantic's and Python's (U+0085, U+FEFF), and the three must agree.
_SPACE = r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
SOME_WORDS = rf"[^{_SPACE}]"
MAX_TEXT = 4000  # a reason, a description: a few paragraphs, never a file


def vocabulary(kind: str) -> Any:
    """Mark a field whose values are the names of ``kind`` in the node's catalogue."""
    return Field(json_schema_extra={"x-gsomia-vocabulary": kind})


Text = Annotated[str, StringConstraints(max_length=MAX_TEXT)]
Words = Annotated[str, StringConstraints(pattern=SOME_WORDS, max_length=MAX_TEXT)]
Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
Instant = Annotated[
    str,
    StringConstraints(pattern=INSTANT_PATTERN),
    Field(description="ISO 8601 with a UTC offset, or a bare date (local midnight); years 1900-2999"),
]
Timestamp = Annotated[
    str,
    StringConstraints(pattern=TIMESTAMP_PATTERN),
    Field(description="ISO 8601 date and time with a UTC offset; years 1900-2999"),
]
Party = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$"), vocabulary("party")]
Classification = Annotated[str, StringConstraints(pattern=SOME_WORDS, max_length=200), vocabulary("level")]
AgreementId = Annotated[str, StringConstraints(max_length=200), vocabulary("agreement")]
Purpose = Annotated[str, StringConstraints(pattern=SOME_WORDS, max_length=200), vocabulary("purpose")]
Topic = Annotated[str, StringConstraints(pattern=SOME_WORDS, max_length=200), vocabulary("topic")]
RoleName = Annotated[str, vocabulary("role")]
Caveat = Annotated[str, StringConstraints(pattern=SOME_WORDS, max_length=200)]
# What a pattern asks for, in words, for the refusal of a value that does not match it.
PATTERN_WORDS = {
    SOME_WORDS: "must hold some words (not only white space)",
    ID_PATTERN: "must be 1-128 letters, digits or ._:-, starting with a letter or digit",
    INSTANT_PATTERN: (
        "is not an instant of the years 1900-2999: give ISO 8601 with a UTC offset "
        "(2019-11-23T00:00:01+09:00) or a date (2019-11-23)"
    ),
    TIMESTAMP_PATTERN: (
        "is not an instant of the years 1900-2999: give ISO 8601 with a UTC offset "
        "(2019-11-23T00:00:01+09:00)"
    ),
    r"^[A-Z]{3}$": "is not a party code (three capital letters, e.g. JPN)",
}


def whole_number(value: Any) -> Any:
    """JSON's 2 and 2.0 are the same integer (JSON Schema says so); true and "2" are not numbers."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a whole number")
    return value


# A whole number as a request field: Annotated[int, Field(bounds...), BeforeValidator(whole_number),
# Field(strict=False)] (the bounds before the validator, or the schema loses them).
Bool = StrictBool  # nor is 1 true
Seq = Annotated[int, Field(ge=0, le=MAX_INT)]

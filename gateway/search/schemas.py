"""What the search endpoint accepts and answers."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

# Longer than any real value: refused before anything reads it character by character.
Term = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
ShortTerm = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=16)]


class ChildSearch(BaseModel):
    """The terms of a search: an NHS number alone, or at least two of name, birth date and postcode."""

    model_config = ConfigDict(extra="forbid")

    nhs_number: ShortTerm | None = Field(
        default=None, description="10 digits with a correct Modulus 11 check digit (spaces allowed). Searched alone."
    )
    family_name: Term | None = Field(default=None, description="The child's surname: with given_name, the name.")
    given_name: Term | None = Field(
        default=None, description="The child's first given name; narrows a search, never counts as a field on its own."
    )
    birth_date: date | None = Field(default=None, description="The child's birth date (ISO 8601, YYYY-MM-DD).")
    postcode: ShortTerm | None = Field(default=None, description="A UK postcode, e.g. ZZ99 3VZ (spaces and case aside).")


class ChildDisplayRead(BaseModel):
    """Who the found child is, as its records (all of which the caller may open) name them."""

    family_name: str | None
    given_names: list[str]
    birth_date: date | None


class ChildFoundRead(BaseModel):
    """A child the search found that the caller may open."""

    child_id: uuid.UUID
    match: Literal["nhs_number", "demographics"] = Field(
        description="nhs_number: the number is this child's; demographics: one of its records agrees on every field given."
    )
    fields_matched: list[str] = Field(description="The fields of the search that agreed.")
    display: ChildDisplayRead = Field(
        description="Each field from the most recently received record that states it, so that you can tell the child."
    )


class ChildSearchRead(BaseModel):
    """The children found that the caller may open, and how many others matched."""

    children: list[ChildFoundRead]
    others_matched: int = Field(
        description="How many other children matched that you may not open (never who they are)."
    )
    how_to_ask: str | None = Field(description="Whom to ask for allocation, when others matched; else null.")
    limited: bool = Field(
        description="More candidates than the gateway compares in one search shared the terms: some were not "
        "compared. Give more fields to narrow the search."
    )

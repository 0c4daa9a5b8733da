"""What an order asks of QA: which automated checks run, their thresholds, how many human
review stages follow. Stored with the order (`orders.qa_config`) and read by the QA pipeline."""

from __future__ import annotations

import enum
from typing import Annotated

from pydantic import Field, model_validator

from quire.schemas import Input


class Check(enum.StrEnum):
    """Automated QA checks an order can ask for (implemented by the QA pipeline)."""

    LENGTH = "length"
    TERMS = "terms"
    DUPLICATE = "duplicate"
    LATENESS = "lateness"
    EXTERNAL = "external"


class QAConfig(Input):
    checks: list[Check] = Field(default_factory=lambda: list(Check))
    review_stages: int = Field(default=1, ge=0, le=5)
    min_words: int | None = Field(default=None, ge=0, le=200_000)
    max_words: int | None = Field(default=None, ge=1, le=200_000)
    required_terms: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=100
    )
    banned_terms: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=100
    )

    @model_validator(mode="after")
    def _word_bounds(self) -> QAConfig:
        bounded = self.min_words is not None and self.max_words is not None
        if bounded and self.min_words > self.max_words:  # type: ignore[operator]
            raise ValueError("min_words must not exceed max_words")
        return self

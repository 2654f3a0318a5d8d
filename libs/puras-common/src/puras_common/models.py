"""The LLM model catalogue: which slugs a skill may name, who serves each, and what it can read.

Data, not code: ``catalog/models.yaml``. Rates are kept as exact decimal strings of upstream
USD per 1M tokens; billing turns them into micros with integer arithmetic.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Literal

import yaml

Provider = Literal["anthropic", "openai", "gemini", "local"]


@dataclass(frozen=True)
class Model:
    slug: str
    provider: Provider
    upstream: str
    """The provider's own model id."""
    input_usd_per_mtok: Decimal
    output_usd_per_mtok: Decimal
    vision: bool
    pdf: bool


@dataclass(frozen=True)
class ModelCatalogue:
    default: str
    models: dict[str, Model]

    def get(self, slug: str) -> Model | None:
        return self.models.get(slug)

    def slugs(self) -> list[str]:
        return sorted(self.models)

    def unknown_message(self, slug: str) -> str:
        """What to say about a slug that is not in the catalogue."""
        close = difflib.get_close_matches(slug, self.slugs(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return f"unknown model {slug!r}{hint} Available: {', '.join(self.slugs())}"


@cache
def catalogue() -> ModelCatalogue:
    """The catalogue shipped with the platform."""
    data = yaml.safe_load((resources.files("puras_common") / "catalog" / "models.yaml").read_text())
    models = {
        slug: Model(
            slug=slug,
            provider=row["provider"],
            upstream=row["upstream"],
            input_usd_per_mtok=Decimal(row["input"]),
            output_usd_per_mtok=Decimal(row["output"]),
            vision=bool(row["vision"]),
            pdf=bool(row["pdf"]),
        )
        for slug, row in data["models"].items()
    }
    if data["default"] not in models:
        raise ValueError(f"default model {data['default']!r} is not in the catalogue")
    return ModelCatalogue(default=data["default"], models=models)

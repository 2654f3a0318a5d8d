"""Model providers behind one interface, and which adapter serves which catalogue slug.

``claude/*`` → Anthropic Messages; ``gpt/*`` → OpenAI Chat Completions; ``gemini/*`` → Gemini's
OpenAI-compatible endpoint; ``local/<name>`` → the operator's OpenAI-compatible base URL.
"""

from __future__ import annotations

from dataclasses import dataclass

from puras_pricing.models import Model, ModelCatalogue

from puras_agent_runner.providers.anthropic import AnthropicModel
from puras_agent_runner.providers.base import (
    ChatModel,
    ModelRequest,
    ModelResponse,
    ProviderError,
    ProviderGaveUp,
    RetryPolicy,
    StopReason,
    TransientProviderError,
    call_with_retries,
)
from puras_agent_runner.providers.openai_compat import OpenAICompatibleModel
from puras_agent_runner.settings import AgentRunnerSettings


class UnknownModel(ValueError):
    """A skill names a slug this platform's catalogue does not have."""


@dataclass(frozen=True)
class ResolvedModel:
    """A catalogue entry and the adapter that serves it."""

    model: Model
    chat: ChatModel


class Providers:
    """One adapter per provider (and per local endpoint), made on first use and shared."""

    def __init__(self, settings: AgentRunnerSettings, catalogue: ModelCatalogue) -> None:
        self.settings = settings
        self.catalogue = catalogue
        self._adapters: dict[str, ChatModel] = {}

    def resolve(self, slug: str | None) -> ResolvedModel:
        """The model ``slug`` names (the catalogue default when None) and its adapter."""
        model = self.catalogue.get(slug or self.catalogue.default)
        if model is None:
            raise UnknownModel(self.catalogue.unknown_message(slug or ""))
        key = model.provider if model.provider != "local" else f"local:{model.base_url}"
        adapter = self._adapters.get(key)
        if adapter is None:
            adapter = self._adapters[key] = self._make(model)
        return ResolvedModel(model, adapter)

    def retry_policy(self) -> RetryPolicy:
        s = self.settings
        return RetryPolicy(
            attempts=s.provider_attempts,
            base_seconds=s.provider_backoff_seconds,
            cap_seconds=s.provider_backoff_cap_seconds,
        )

    def _make(self, model: Model) -> ChatModel:
        s = self.settings
        timeout = s.provider_timeout_seconds
        if model.provider == "anthropic":
            return AnthropicModel(
                api_key=s.anthropic_api_key.get_secret_value(),
                base_url=s.anthropic_base_url,
                timeout_seconds=timeout,
            )
        if model.provider == "openai":
            return OpenAICompatibleModel(
                provider="openai",
                api_key=s.openai_api_key.get_secret_value(),
                base_url=s.openai_base_url,
                timeout_seconds=timeout,
            )
        if model.provider == "gemini":
            return OpenAICompatibleModel(
                provider="gemini",
                api_key=s.gemini_api_key.get_secret_value(),
                base_url=s.gemini_base_url,
                timeout_seconds=timeout,
                token_parameter="max_tokens",
            )
        return OpenAICompatibleModel(
            provider="local",
            api_key=s.local_api_key.get_secret_value(),
            base_url=model.base_url,
            timeout_seconds=timeout,
            token_parameter="max_tokens",
        )

    async def aclose(self) -> None:
        for adapter in self._adapters.values():
            await adapter.aclose()


__all__ = [
    "ChatModel",
    "ModelRequest",
    "ModelResponse",
    "ProviderError",
    "ProviderGaveUp",
    "Providers",
    "ResolvedModel",
    "RetryPolicy",
    "StopReason",
    "TransientProviderError",
    "UnknownModel",
    "call_with_retries",
]

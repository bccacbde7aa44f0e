"""The model registry: config model entries become langchain-core chat models.

Provider packages are optional extras, imported only when a config names them. API keys come
from the settings (the environment), never from the config file.
"""

from __future__ import annotations

import importlib
import urllib.parse
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel

from bot.config import Embeddings, ModelSpec, WorkspaceConfig
from bot.core.offline import OfflineChatModel
from bot.errors import ConfigError
from bot.settings import Settings


@dataclass(frozen=True)
class RegisteredModel:
    spec: ModelSpec
    chat: BaseChatModel
    # Why this model cannot be used (no API key, no provider package): the router skips it
    # without a call, and start-up says so once. None: usable.
    unusable: str | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (
            input_tokens * self.spec.price.input + output_tokens * self.spec.price.output
        ) / 1_000_000


def _secret(value: Any) -> str | None:
    return value.get_secret_value() if value is not None else None


def build_chat_model(spec: ModelSpec, settings: Settings) -> BaseChatModel:
    if spec.provider == "offline":
        return OfflineChatModel()
    extra = dict(spec.model_extra or {})
    if spec.provider == "openai":
        try:
            from langchain_openai import ChatOpenAI
        except ImportError:
            raise ConfigError(
                f"model {spec.name!r} needs the OpenAI provider: pip install 'concierge[openai]'"
            ) from None
        return ChatOpenAI(
            model=spec.model or "",
            base_url=spec.base_url or settings.openai_base_url,
            api_key=_secret(settings.openai_api_key) or "not-set",  # type: ignore[arg-type]
            temperature=spec.temperature,
            max_tokens=spec.max_tokens,  # type: ignore[call-arg]
            streaming=True,
            stream_usage=True,
            max_retries=0,
            **extra,
        )
    try:
        from langchain_anthropic import ChatAnthropic
    except ImportError:
        raise ConfigError(
            f"model {spec.name!r} needs the Anthropic provider: pip install 'concierge[anthropic]'"
        ) from None
    kwargs: dict[str, Any] = {"max_retries": 0, "streaming": True, **extra}
    if spec.base_url:
        kwargs["base_url"] = spec.base_url
    if spec.max_tokens:
        kwargs["max_tokens"] = spec.max_tokens
    if spec.temperature is not None:
        kwargs["temperature"] = spec.temperature
    return ChatAnthropic(  # type: ignore[call-arg]
        model=spec.model or "",
        api_key=_secret(settings.anthropic_api_key) or "not-set",  # type: ignore[arg-type]
        **kwargs,
    )


# Each hosted provider: its package (extra), its key variable, and the host that needs a key.
_PROVIDERS = {
    "openai": ("langchain_openai", "openai", "OPENAI_API_KEY", "api.openai.com"),
    "anthropic": ("langchain_anthropic", "anthropic", "ANTHROPIC_API_KEY", "api.anthropic.com"),
}


def unusable_reason(spec: ModelSpec, settings: Settings) -> str | None:
    """Why ``spec`` cannot be used as configured, decided without a network call: its
    provider package is missing, or it would call the provider's own service with no API
    key. A custom ``base_url`` (a local OpenAI-compatible server) may need no key."""
    if spec.provider not in _PROVIDERS:
        return None
    package, extra, variable, host = _PROVIDERS[spec.provider]
    try:
        importlib.import_module(package)
    except ImportError:
        return f"its provider package is not installed (pip install 'concierge[{extra}]')"
    key = settings.openai_api_key if spec.provider == "openai" else settings.anthropic_api_key
    base = spec.base_url or (settings.openai_base_url if spec.provider == "openai" else None)
    target = urllib.parse.urlsplit(base).hostname if base else host
    if key is None and target == host:
        return f"{variable} is not set"
    return None


def embeddings_unusable(spec: Embeddings, settings: Settings) -> str | None:
    """Why the configured embeddings endpoint cannot be used (the same rule as a model: the
    provider's own service with no key), or None."""
    if spec.provider != "openai" or settings.openai_api_key is not None:
        return None
    base = spec.base_url or settings.openai_base_url
    target = urllib.parse.urlsplit(base).hostname if base else _PROVIDERS["openai"][3]
    if target != _PROVIDERS["openai"][3]:
        return None
    return (
        "embeddings (openai) are not usable: OPENAI_API_KEY is not set; documents are "
        "searched by words only"
    )


def build_registry(config: WorkspaceConfig, settings: Settings) -> dict[str, RegisteredModel]:
    """Every model of the routing chain, by config name (the offline one always included).
    A model that cannot be used is registered with its reason and a stand-in client that
    is never called."""
    registry: dict[str, RegisteredModel] = {}
    for name in dict.fromkeys([*config.chain, *config.step_down_chain]):
        spec = config.model_spec(name) or ModelSpec(name=name, provider="offline")
        reason = unusable_reason(spec, settings)
        chat = OfflineChatModel() if reason else build_chat_model(spec, settings)
        registry[name] = RegisteredModel(spec, chat, reason)
    return registry


def model_notes(chain: list[RegisteredModel]) -> list[str]:
    """One line per model of the chain that cannot be used, naming what answers instead."""
    notes = []
    for i, m in enumerate(chain):
        if m.unusable is not None:
            instead = next((c.name for c in chain[i + 1 :] if c.unusable is None), "no model")
            notes.append(
                f"model {m.name} ({m.spec.provider}) is not usable: {m.unusable}; "
                f"answers use {instead}"
            )
    return notes

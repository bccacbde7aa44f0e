"""The model registry: config model entries become langchain-core chat models.

Provider packages are optional extras, imported only when a config names them. API keys come
from the settings (the environment), never from the config file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel

from bot.config import ModelSpec, WorkspaceConfig
from bot.core.offline import OfflineChatModel
from bot.errors import ConfigError
from bot.settings import Settings


@dataclass(frozen=True)
class RegisteredModel:
    spec: ModelSpec
    chat: BaseChatModel

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


def build_registry(config: WorkspaceConfig, settings: Settings) -> dict[str, RegisteredModel]:
    """Every model of the routing chain, by config name (the offline one always included)."""
    registry: dict[str, RegisteredModel] = {}
    for name in dict.fromkeys([*config.chain, *config.step_down_chain]):
        spec = config.model_spec(name) or ModelSpec(name=name, provider="offline")
        registry[name] = RegisteredModel(spec, build_chat_model(spec, settings))
    return registry

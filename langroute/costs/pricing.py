"""Prices: token counts to US dollars, from ``genai-prices`` with per-model overrides."""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from langroute.errors import UnpricedModelWarning

__all__ = [
    "PROMPT_OVERHEAD_TOKENS",
    "ModelPrice",
    "Pricer",
    "UnpricedModelWarning",
    "prompt_token_bound",
]

_MTOK = 1_000_000

PROMPT_OVERHEAD_TOKENS = 32
"""Tokens of chat framing (roles, separators) added to a prompt's own, at most."""


def prompt_token_bound(text: str | bytes) -> int:
    """More input tokens than ``text`` can become: its UTF-8 bytes plus the chat framing.

    A token covers at least one byte, so the byte count bounds any tokenizer's count;
    budgets reserve with it before a call, when the real count is not known yet.

    Example:
        >>> prompt_token_bound("hello") == 5 + PROMPT_OVERHEAD_TOKENS
        True
    """
    size = len(text) if isinstance(text, bytes) else len(text.encode("utf-8", "surrogatepass"))
    return size + PROMPT_OVERHEAD_TOKENS


class ModelPrice(BaseModel):
    """A user-supplied price for one model, in US dollars per million tokens.

    ``cached_input_per_mtok`` prices input tokens read from the provider's prompt cache;
    when it is ``None`` cached tokens are billed at ``input_per_mtok``.

    Example:
        >>> price = ModelPrice(input_per_mtok=0.5, output_per_mtok=1.5)
        >>> price.cost(input_tokens=2_000_000, output_tokens=1_000_000)
        2.5
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_per_mtok: float = Field(ge=0, description="USD per million (uncached) input tokens.")
    output_per_mtok: float = Field(ge=0, description="USD per million output tokens.")
    cached_input_per_mtok: float | None = Field(
        default=None, ge=0, description="USD per million cached input tokens (cache reads)."
    )

    def cost(self, input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> float:
        """Price one call; ``cached_tokens`` is the part of ``input_tokens`` read from cache.

        Args:
            input_tokens: All input (prompt) tokens, cached ones included.
            output_tokens: Output (completion) tokens, reasoning tokens included.
            cached_tokens: Input tokens served from the prompt cache (clamped to
                ``input_tokens``).

        Returns:
            The cost in US dollars.
        """
        cached = min(cached_tokens, input_tokens)
        cached_rate = (
            self.input_per_mtok
            if self.cached_input_per_mtok is None
            else self.cached_input_per_mtok
        )
        total = (
            (input_tokens - cached) * self.input_per_mtok
            + cached * cached_rate
            + output_tokens * self.output_per_mtok
        )
        return total / _MTOK


def _check_tokens(input_tokens: int, output_tokens: int, cached_tokens: int) -> None:
    for name, value in (
        ("input_tokens", input_tokens),
        ("output_tokens", output_tokens),
        ("cached_tokens", cached_tokens),
    ):
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")


class Pricer:
    """Prices model calls from ``genai-prices``, with per-model overrides.

    Lookup order: an override for the exact model name (then its lower-cased form), then
    ``genai-prices`` (which resolves dated and aliased names such as
    ``gpt-4o-mini-2024-07-18``), then, for names written ``provider:model`` or
    ``provider/model``, ``genai-prices`` with that provider. A model found nowhere costs
    ``None`` and triggers one :class:`UnpricedModelWarning` per model name; pricing never
    raises for an unknown model.

    ``genai-prices`` is imported on first use and only its bundled snapshot is read; no
    network access happens.

    Args:
        overrides: Model name -> :class:`ModelPrice` (or a mapping with its fields).
        provider: Default ``genai-prices`` provider id (``"openai"``, ``"azure"``, ...)
            when a model name alone is ambiguous; ``None`` lets ``genai-prices`` infer it.

    Example:
        >>> pricer = Pricer({"my-local-llama": {"input_per_mtok": 0, "output_per_mtok": 0}})
        >>> pricer.cost("my-local-llama", 1000, 200)
        0.0
        >>> round(pricer.cost("gpt-4o-mini", 1_000_000, 0), 2)  # from genai-prices
        0.15
    """

    def __init__(
        self,
        overrides: Mapping[str, ModelPrice | Mapping[str, Any]] | None = None,
        provider: str | None = None,
    ) -> None:
        self.overrides: dict[str, ModelPrice] = {
            name: value if isinstance(value, ModelPrice) else ModelPrice.model_validate(value)
            for name, value in (overrides or {}).items()
        }
        self._lower_overrides = {name.lower(): price for name, price in self.overrides.items()}
        self.provider = provider
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self._unknown: set[tuple[str, str | None]] = set()

    def __repr__(self) -> str:
        return f"Pricer(overrides={sorted(self.overrides)!r}, provider={self.provider!r})"

    def _override(self, model: str) -> ModelPrice | None:
        return self.overrides.get(model) or self._lower_overrides.get(model.lower())

    def _warn_once(self, model: str, detail: str) -> None:
        with self._lock:
            if model in self._warned:
                return
            self._warned.add(model)
        warnings.warn(
            f"no price known for model {model!r} ({detail}); its calls are recorded with "
            "cost=None. Pass Pricer(overrides={model: ModelPrice(...)}) to price it.",
            UnpricedModelWarning,
            stacklevel=3,
        )

    def _calc(
        self,
        model: str,
        provider: str | None,
        input_tokens: int,
        output_tokens: int,
        cached_tokens: int,
    ) -> float:
        """Price through genai-prices; raises LookupError / ValueError like it does."""
        from genai_prices import Usage, calc_price

        usage = Usage(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cache_read_tokens=cached_tokens,
        )
        try:
            result = calc_price(usage, model, provider_id=provider)
        except LookupError:
            if provider is not None:
                raise
            # "openai:gpt-4o-mini" (init_chat_model style) or "openai/gpt-4o-mini" (LiteLLM,
            # OpenRouter style): retry with the prefix as the provider.
            for sep in (":", "/"):
                prefix, found, rest = model.partition(sep)
                if found and prefix and rest:
                    with contextlib.suppress(LookupError):
                        result = calc_price(usage, rest, provider_id=prefix)
                        break
            else:
                raise
        return float(result.total_price)

    def cost(
        self,
        model: str,
        input_tokens: int,
        output_tokens: int,
        cached_tokens: int = 0,
        provider: str | None = None,
    ) -> float | None:
        """The cost of one call in US dollars, or ``None`` when the model has no known price.

        Args:
            model: The model name as the provider reports it (``"gpt-4o-mini"``).
            input_tokens: All input tokens, cached ones included (LangChain's
                ``usage_metadata["input_tokens"]``).
            output_tokens: Output tokens.
            cached_tokens: The part of ``input_tokens`` read from the prompt cache
                (LangChain's ``input_token_details["cache_read"]``), priced at the cached
                rate when one is known. Clamped to ``input_tokens``.
            provider: ``genai-prices`` provider id for this call (default: the pricer's).

        Returns:
            USD, or ``None`` (with one :class:`UnpricedModelWarning` per model name).

        Raises:
            ValueError: A token count is negative.

        Example:
            >>> Pricer().cost("no-such-model-xyz", 10, 10) is None  # doctest: +SKIP
            True
        """
        _check_tokens(input_tokens, output_tokens, cached_tokens)
        cached_tokens = min(cached_tokens, input_tokens)
        override = self._override(model)
        if override is not None:
            return override.cost(input_tokens, output_tokens, cached_tokens)
        provider = provider if provider is not None else self.provider
        key = (model, provider)
        if key in self._unknown:
            self._warn_once(model, "not in genai-prices")
            return None
        try:
            return self._calc(model, provider, input_tokens, output_tokens, cached_tokens)
        except LookupError as exc:
            with self._lock:
                self._unknown.add(key)
            self._warn_once(model, f"genai-prices: {exc}")
            return None
        except ValueError as exc:  # genai-prices rejected the usage for this model
            self._warn_once(model, f"genai-prices: {exc}")
            return None

    def price(self, model: str, provider: str | None = None) -> ModelPrice | None:
        """The per-million-token prices of ``model`` (base tier), or ``None`` if unknown.

        Useful to show or sort routes by price. Tiered prices (for example above 200k
        input tokens) report their base tier; :meth:`cost` applies the tiers.

        Example:
            >>> Pricer().price("gpt-4o-mini").output_per_mtok  # doctest: +SKIP
            0.6
        """
        override = self._override(model)
        if override is not None:
            return override
        provider = provider if provider is not None else self.provider
        from genai_prices import Usage, calc_price

        def as_float(value: Any) -> float | None:
            if value is None:
                return None
            return float(getattr(value, "base", value))

        candidates = [(model, provider)]
        if provider is None:
            for sep in (":", "/"):
                prefix, found, rest = model.partition(sep)
                if found and prefix and rest:
                    candidates.append((rest, prefix))
        for ref, prov in candidates:
            try:
                result = calc_price(Usage(input_tokens=0, output_tokens=0), ref, provider_id=prov)
            except (LookupError, ValueError):
                continue
            prices = result.model_price
            input_price = as_float(prices.input_mtok)
            output_price = as_float(prices.output_mtok)
            if input_price is None or output_price is None:
                return None
            return ModelPrice(
                input_per_mtok=input_price,
                output_per_mtok=output_price,
                cached_input_per_mtok=as_float(prices.cache_read_mtok),
            )
        return None

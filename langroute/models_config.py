"""The models behind the routes: a small config file, and the one call langroute makes.

A models file maps each route to the model that serves it. ``langroute label`` reads
it to ask every route's model each query; other commands that need models read the
same file. TOML (``.toml``)::

    # models.toml
    [routes]                      # cheapest first
    small = "openai:gpt-4o-mini"  # a LangChain init_chat_model spec
    large = { model = "anthropic:claude-sonnet-4-5", temperature = 0, max_output_tokens = 512 }
    local = "my_models.llama:make_model"   # "package.module:factory": anything else

    [judge]                       # optional: the model of the LLM judge grader
    model = "openai:gpt-4o"

    [prices."my-local-llama"]     # optional: USD per million tokens, beside genai-prices
    input_per_mtok = 0
    output_per_mtok = 0

    [chain]                       # optional: a decider chain (langroute.deciders)
    ask_llm_on = ["low_confidence", "out_of_distribution"]
    [[chain.rules]]               # the heuristic gate, first match decides
    name = "code"
    route = "large"
    code = true
    [chain.llm]                   # the LLM router for unsure kNN decisions
    model = "openai:gpt-4o-mini"
    descriptions = { small = "chit-chat, lookups", large = "reasoning, code, design" }

A model spec is a string or a table:

* ``"provider:model"`` (``"openai:gpt-4o-mini"``): a LangChain ``init_chat_model`` spec.
  The core never imports LangChain: it finds the adapter that turns such a spec into a
  :class:`CompletionModel` through the ``langroute.model_specs`` entry point, which the
  LangChain integration (``pip install langchain-langroute``) registers. A table's
  extra keys (``temperature = 0``) are passed to ``init_chat_model``.
* ``"package.module:factory"`` (the part before the colon holds a dot), or a table
  ``{ factory = "module:factory", ... }``: the callable is imported and called with the
  table's extra keys; it returns a :class:`CompletionModel` (anything with an async
  ``acomplete(prompt)``), or a framework model that an installed adapter accepts (a
  LangChain chat model with langchain-langroute). Modules are imported as usual, then
  from the models file's folder.

Table keys for every spec: ``max_output_tokens`` (the answer-length cap, which also
makes the budget estimate safe; default 1024) and ``price_as`` (the model name to price
calls with, when the served name is not in genai-prices).

Example:
    >>> from pathlib import Path
    >>> _ = Path("models.toml").write_text('''
    ... [routes]
    ... small = "langroute.scripted:echo_model"
    ... large = { factory = "langroute.scripted:echo_model", name = "echo-large" }
    ... ''')
    >>> config = load_models_config("models.toml")
    >>> config.route_names, config.routes["large"].options
    (['small', 'large'], {'name': 'echo-large'})
    >>> model = config.build("large")
    >>> import asyncio
    >>> asyncio.run(model.acomplete("hello there")).text
    'hello there'
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from langroute.calls import TokenUsage
from langroute.errors import ModelsConfigError

__all__ = [
    "DEFAULT_MAX_OUTPUT_TOKENS",
    "MODEL_SPECS_ENTRY_POINT",
    "Completion",
    "CompletionModel",
    "ModelSpec",
    "ModelsConfig",
    "ModelsConfigError",
    "adapt_model",
    "load_models_config",
]

MODEL_SPECS_ENTRY_POINT = "langroute.model_specs"
"""Entry-point group of the adapters that build models from framework specs."""

DEFAULT_MAX_OUTPUT_TOKENS = 1024
"""The answer-length cap when a spec sets none (also the budget's output estimate)."""

_COMMON_KEYS = ("max_output_tokens", "price_as")


class Completion(BaseModel):
    """One answer of a model: its text, the usage its provider reported, who served it.

    ``usage`` is ``None`` when the provider reported none (the call's cost is then
    unknown, not zero); ``model`` is the served model's name (``None``: the spec's).
    """

    model_config = ConfigDict(frozen=True)

    text: str
    usage: TokenUsage | None = None
    model: str | None = None


@runtime_checkable
class CompletionModel(Protocol):
    """What langroute calls to get an answer: a name and an async ``acomplete``.

    ``name`` is the model's name (for prices, the ledger and the call cache);
    ``acomplete`` sends one user prompt and returns a :class:`Completion`. Errors are
    the provider's own (a rate-limit error is retried by the caller).
    """

    name: str

    async def acomplete(self, prompt: str) -> Completion:
        """Answer one prompt."""
        ...


class ModelSpec(BaseModel):
    """One route's model as the models file gives it.

    Attributes:
        route: The route (or ``"judge"``) it serves.
        spec: A LangChain spec (``"openai:gpt-4o-mini"``) or ``"package.module:factory"``.
        kind: ``"chat"`` for a framework spec, ``"factory"`` for a callable.
        options: Further keys, passed to ``init_chat_model`` or to the factory.
        max_output_tokens: The answer-length cap (and the budget's output estimate).
        price_as: The model name to price calls with (default: the served name).
    """

    model_config = ConfigDict(frozen=True)

    route: str
    spec: str
    kind: str
    options: dict[str, Any] = Field(default_factory=dict)
    max_output_tokens: int = Field(default=DEFAULT_MAX_OUTPUT_TOKENS, ge=1)
    price_as: str | None = None

    @property
    def key(self) -> str:
        """What identifies the model in the call cache: the spec and its options."""
        if not self.options:
            return self.spec
        pairs = ",".join(f"{k}={self.options[k]!r}" for k in sorted(self.options))
        return f"{self.spec}[{pairs}]"


class ModelsConfig(BaseModel):
    """A parsed models file: the routes' specs (cheapest first), the judge, prices.

    Build models with :meth:`build`; a spec's errors name the file and the route.
    """

    model_config = ConfigDict(frozen=True)

    path: Path | None = None
    routes: dict[str, ModelSpec]
    judge: ModelSpec | None = None
    prices: dict[str, dict[str, float]] = Field(default_factory=dict)
    chain: dict[str, Any] | None = Field(
        default=None, description="The [chain] table: a decider chain's rules and LLM router."
    )

    @property
    def route_names(self) -> list[str]:
        """The routes in file order (cheapest first)."""
        return list(self.routes)

    def spec(self, route: str) -> ModelSpec:
        """The spec of ``route`` (``"judge"`` for the judge).

        Raises:
            ModelsConfigError: no such route.
        """
        if route == "judge" and self.judge is not None and route not in self.routes:
            return self.judge
        if route not in self.routes:
            raise ModelsConfigError(
                f"{self._where()}no route {route!r}; routes: {self.route_names}"
            )
        return self.routes[route]

    def _where(self) -> str:
        return f"{self.path}: " if self.path is not None else ""

    def pricer(self) -> Any:
        """A :class:`~langroute.costs.Pricer` with this file's ``[prices]`` beside genai-prices."""
        from langroute.costs.pricing import Pricer

        return Pricer(dict(self.prices))

    def decider_chain(self, router: Any) -> Any:
        """The :class:`~langroute.deciders.DeciderChain` the ``[chain]`` table describes.

        Args:
            router: The kNN router (an :class:`~langroute.router.ExemplarRouter`).

        Raises:
            ModelsConfigError: The file has no ``[chain]`` table, or its LLM router's
                model cannot be built.
            RouterConfigError: A rule or option is not valid (the message names it).
        """
        from langroute.deciders import chain_from_config
        from langroute.errors import RouterConfigError

        if self.chain is None:
            raise ModelsConfigError(f"{self._where()}no [chain] table")
        folder = self.path.parent if self.path else None

        def build(value: Any) -> CompletionModel:
            return build_model(_parse_spec("chain.llm", value, self._where()), folder=folder)

        try:
            return chain_from_config(router, self.chain, build_model=build)
        except RouterConfigError as exc:
            raise RouterConfigError(f"{self._where()}[chain]: {exc}") from exc

    def build(self, route: str) -> CompletionModel:
        """Build the model of ``route`` (or ``"judge"``).

        Raises:
            ModelsConfigError: the spec cannot be built (the message names file, route
                and cause).
        """
        spec = self.spec(route)
        try:
            return build_model(spec, folder=self.path.parent if self.path else None)
        except ModelsConfigError as exc:
            raise ModelsConfigError(f"{self._where()}route {route!r}: {exc}") from exc


def _parse_spec(route: str, value: Any, where: str) -> ModelSpec:
    if isinstance(value, str):
        table: dict[str, Any] = {"model": value}
    elif isinstance(value, Mapping):
        table = dict(value)
    else:
        raise ModelsConfigError(
            f"{where}route {route!r}: expected a spec string or a table, got {type(value).__name__}"
        )
    given = [key for key in ("model", "factory") if key in table]
    if len(given) != 1:
        raise ModelsConfigError(
            f"{where}route {route!r}: give exactly one of 'model' and 'factory' (got {given})"
        )
    spec = table.pop(given[0])
    if not isinstance(spec, str) or ":" not in spec or spec.startswith(":") or spec.endswith(":"):
        raise ModelsConfigError(
            f"{where}route {route!r}: {spec!r} is not 'provider:model' or 'package.module:factory'"
        )
    module = spec.partition(":")[0]
    kind = "factory" if given[0] == "factory" or "." in module else "chat"
    common = {key: table.pop(key) for key in _COMMON_KEYS if key in table}
    try:
        return ModelSpec(route=route, spec=spec, kind=kind, options=table, **common)
    except ValueError as exc:
        raise ModelsConfigError(f"{where}route {route!r}: {exc}") from exc


def load_models_config(path: str | Path) -> ModelsConfig:
    """Read a models file (TOML; see the module docstring for the format).

    Raises:
        ModelsConfigError: the file is missing or malformed (file and route named).
    """
    path = Path(path)
    where = f"{path}: "
    if not path.is_file():
        raise ModelsConfigError(f"{where}no such file")
    if path.suffix.lower() != ".toml":
        raise ModelsConfigError(f"{where}unsupported file type {path.suffix!r} (use .toml)")
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ModelsConfigError(f"{where}{exc}") from exc
    return models_config_from_dict(data, path=path)


def models_config_from_dict(data: Mapping[str, Any], *, path: Path | None = None) -> ModelsConfig:
    """Build a :class:`ModelsConfig` from the parsed file (a mapping).

    Raises:
        ModelsConfigError: a table is missing or malformed.
    """
    where = f"{path}: " if path is not None else ""
    unknown = sorted(set(data) - {"routes", "judge", "prices", "chain"})
    if unknown:
        raise ModelsConfigError(
            f"{where}unknown table(s) {unknown}; expected routes, judge, prices, chain"
        )
    chain = data.get("chain")
    if chain is not None and not isinstance(chain, Mapping):
        raise ModelsConfigError(f"{where}[chain] must be a table")
    routes = data.get("routes")
    if not isinstance(routes, Mapping) or not routes:
        raise ModelsConfigError(f"{where}a [routes] table naming at least one route is required")
    specs = {str(name): _parse_spec(str(name), value, where) for name, value in routes.items()}
    judge = data.get("judge")
    judge_spec = _parse_spec("judge", judge, where) if judge is not None else None
    prices = data.get("prices") or {}
    if not isinstance(prices, Mapping):
        raise ModelsConfigError(f"{where}[prices] must be a table of model tables")
    from langroute.costs.pricing import ModelPrice

    for model, price in prices.items():
        try:
            ModelPrice.model_validate(price)
        except ValueError as exc:
            raise ModelsConfigError(f"{where}prices for {model!r}: {exc}") from exc
    return ModelsConfig(
        path=path,
        routes=specs,
        judge=judge_spec,
        prices=dict(prices),
        chain=dict(chain) if chain is not None else None,
    )


@contextlib.contextmanager
def _importable_from(folder: Path | None) -> Iterator[None]:
    if folder is None:
        yield
        return
    entry = str(folder.resolve())
    sys.path.insert(0, entry)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(entry)


def import_object(target: str, folder: Path | None = None) -> Any:
    """Import ``"package.module:name"`` (trying ``folder`` after the usual path).

    Raises:
        ModelsConfigError: the module or the name cannot be found.
    """
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as first:
        if folder is None or first.name != module_name.split(".")[0]:
            raise ModelsConfigError(f"cannot import {module_name!r}: {first}") from first
        with _importable_from(folder):
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                raise ModelsConfigError(f"cannot import {module_name!r}: {exc}") from exc
    value: Any = module
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise ModelsConfigError(f"{module_name!r} has no attribute {attribute!r}")
        value = getattr(value, part)
    return value


def _adapters() -> list[Any]:
    """The installed spec adapters (``langroute.model_specs`` entry points), loaded."""
    from importlib.metadata import entry_points

    return [entry.load() for entry in entry_points(group=MODEL_SPECS_ENTRY_POINT)]


def adapt_model(model: Any, spec: ModelSpec | None = None) -> CompletionModel:
    """``model`` as a :class:`CompletionModel`: itself, or what an installed adapter makes.

    Raises:
        ModelsConfigError: no adapter accepts it.
    """
    if _is_completion_model(model):
        return model
    for adapter in _adapters():
        adapted = adapter.adapt(model, spec)
        if adapted is not None:
            return adapted
    raise ModelsConfigError(
        f"{type(model).__name__} has no async acomplete(prompt) and no installed adapter "
        f"(entry point {MODEL_SPECS_ENTRY_POINT!r}) accepts it; for a LangChain chat model "
        "install langchain-langroute"
    )


def _is_completion_model(model: Any) -> bool:
    method = getattr(model, "acomplete", None)
    return isinstance(getattr(model, "name", None), str) and inspect.iscoroutinefunction(method)


def build_model(spec: ModelSpec, folder: Path | None = None) -> CompletionModel:
    """Build the model a spec names (see the module docstring).

    Raises:
        ModelsConfigError: the factory cannot be imported or called, or no adapter for
            a framework spec is installed.
    """
    if spec.kind == "factory":
        factory: Callable[..., Any] = import_object(spec.spec, folder)
        if not callable(factory):
            raise ModelsConfigError(f"{spec.spec!r} is not callable")
        try:
            made = factory(**spec.options)
        except TypeError as exc:
            raise ModelsConfigError(f"calling {spec.spec!r} failed: {exc}") from exc
        return adapt_model(made, spec)
    for adapter in _adapters():
        model = adapter.from_spec(spec)
        if model is not None:
            return model
    raise ModelsConfigError(
        f"{spec.spec!r} is a LangChain model spec, and no adapter is installed (entry point "
        f"{MODEL_SPECS_ENTRY_POINT!r}): pip install langchain-langroute, or name a "
        "'package.module:factory'"
    )

"""The models behind the routes: a small config file, and the one call langroute makes.

A models file maps each route to the model that serves it. ``langroute label`` reads
it to ask every route's model each query; other commands that need models read the
same file. TOML (``.toml``)::

    # models.toml
    [routes]                      # cheapest first
    small = "openai:gpt-4o-mini"  # a LangChain init_chat_model spec
    large = { model = "anthropic:claude-sonnet-4-5", temperature = 0, max_output_tokens = 512 }
    local = "my_models.llama:make_model"   # "package.module:factory": anything else
    # a list: equivalent models, tried in order before escalating (optional weights)
    # medium = ["openai:gpt-4.1-mini", { model = "anthropic:claude-haiku-4-5", weight = 1 }]
    # [routes.medium] with models = [...] and continue_streams = false: route options

    [judge]                       # optional: the model of the LLM judge grader
    model = "openai:gpt-4o"

    [prices."my-local-llama"]     # optional: USD per million tokens, beside genai-prices
    input_per_mtok = 0
    output_per_mtok = 0

    [serve]                       # optional: ``langroute serve`` (see ServeConfig)
    router = "router/"            # a saved router directory (default: the starter router)
    ledger = "costs.db"           # where every call is recorded
    aliases = ["auto"]            # model names that mean "route this request"
    keys = "keys.jsonl"           # API keys (hashed); no file: no authentication
    [serve.adaptive_dial]         # optional: hold a target (langroute.adaptive_dial)
    target = { kind = "spend", per_hour = 2.0 }

    [chain]                       # optional: a decider chain (langroute.chains.deciders)
    ask_llm_on = ["low_confidence", "out_of_distribution"]
    [[chain.rules]]               # the heuristic gate, first match decides
    name = "code"
    route = "large"
    code = true
    [chain.llm]                   # the LLM router for unsure kNN decisions
    model = "openai:gpt-4o-mini"
    descriptions = { small = "chit-chat, lookups", large = "reasoning, code, design" }
    timeout = 5                   # seconds; then the kNN decision stands
    may_choose_cheaper = false    # default: only the kNN's route or a stronger one

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

A route may list several equivalent models (an array of specs, or a table with
``models = [...]``): a failure of one that escalation covers tries the next before the
call escalates to a stronger route. Each spec may set ``weight`` (relative share of
first attempts; equal weights keep the order); a route table may set
``continue_streams = false`` (a stream that breaks after text is not continued on the
next model). :meth:`ModelsConfig.specs` lists a route's models; ``routes`` holds each
route's first.

Table keys for every spec: ``max_output_tokens`` (the answer-length cap, which also
makes the budget estimate safe; default 1024; an option the model itself reads, such as
``max_tokens = 8192``, is its real cap, and a labelling budget reserves the larger) and
``price_as`` (the model name to price calls with, when the served name is not in
genai-prices).

Example:
    >>> from pathlib import Path
    >>> _ = Path("models.toml").write_text('''
    ... [routes]
    ... small = "langroute.models.scripted:echo_model"
    ... large = { factory = "langroute.models.scripted:echo_model", name = "echo-large" }
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
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from langroute.dispatch.breakers import BreakerPolicy
from langroute.dispatch.equivalents import EquivalentModel, RouteEquivalents
from langroute.dispatch.routed_call import TokenUsage
from langroute.errors import ModelsConfigError
from langroute.router.dial_targets import AdaptiveDialConfig

__all__ = [
    "DEFAULT_MAX_OUTPUT_TOKENS",
    "MODEL_SPECS_ENTRY_POINT",
    "Completion",
    "CompletionModel",
    "ModelSpec",
    "ModelsConfig",
    "ModelsConfigError",
    "ServeConfig",
    "adapt_model",
    "load_models_config",
]

MODEL_SPECS_ENTRY_POINT = "langroute.model_specs"
"""Entry-point group of the adapters that build models from framework specs."""

DEFAULT_MAX_OUTPUT_TOKENS = 1024
"""The answer-length cap when a spec sets none (also the budget's output estimate)."""

_COMMON_KEYS = ("max_output_tokens", "price_as", "weight")
_OUTPUT_CAP_OPTIONS = ("max_tokens", "max_completion_tokens", "max_new_tokens", "num_predict")
"""Options that set a model's output cap when passed to it (``max_tokens = 8192``)."""


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
    weight: float = Field(default=1.0, gt=0)
    continue_streams: bool = True

    @property
    def model_name(self) -> str:
        """The model's name: ``price_as``, else the part after ``provider:``, else the spec."""
        if self.price_as:
            return self.price_as
        return self.spec.partition(":")[2] if self.kind == "chat" else self.spec

    @property
    def key(self) -> str:
        """What identifies the model in the call cache: the spec and its options."""
        if not self.options:
            return self.spec
        pairs = ",".join(f"{k}={self.options[k]!r}" for k in sorted(self.options))
        return f"{self.spec}[{pairs}]"

    @property
    def output_token_cap(self) -> int:
        """The most output tokens one call can be billed for: the worst case a budget reserves.

        ``max_output_tokens``, or a larger cap the options pass to the model itself
        (``max_tokens = 8192`` reaches ``init_chat_model`` or the factory and wins there).

        Example:
            >>> ModelSpec(route="r", spec="openai:gpt-4o", kind="chat",
            ...           options={"max_tokens": 8192}).output_token_cap
            8192
        """
        caps = [self.max_output_tokens]
        for key in _OUTPUT_CAP_OPTIONS:
            value = self.options.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                caps.append(value)
        return max(caps)


class ServeConfig(BaseModel):
    """The ``[serve]`` table of a models file: how ``langroute serve`` runs.

    Relative paths are relative to the models file's folder.

    Attributes:
        router: A saved router directory whose routes are the file's routes (``None``:
            the bundled starter router, routes ``small`` and ``large``).
        shared_router: Instead of ``router``: a ``postgresql://`` URL holding a shared
            router (``langroute publish``); every replica serving it follows its changes,
            and feedback learned by one reaches the others.
        router_name: The shared router's name in that database.
        embedder: The saved router's embedder (``--embedder`` spelling; ``None``: the one
            its manifest names).
        ledger: Where every call is recorded: ``"memory"``, a ``.jsonl`` / ``.db`` path,
            or any target :class:`langroute.costs.CostLedger` accepts.
        aliases: Model names that mean "let the router choose" (``"auto"``).
        keys: The API keys file (``langroute serve-key add``); ``None``: no
            authentication and no budgets.
        over_budget: What a request of a key past its budget gets: ``"degrade"`` (the
            cheapest route answers) or ``"reject"`` (HTTP 429).
        learn: Feedback (``POST /v1/feedback``) also teaches the router: a good answer
            confirms its route, a bad one labels the query with the next stronger route.
            With a keys file, one client key cannot re-route everyone: a verdict teaches
            the router once ``learn_quorum`` distinct keys gave the same verdict on the
            same query (an ``admin`` key's verdict teaches at once). Without a keys file
            (one tenant) every verdict teaches.
        learn_quorum: Distinct client keys that must agree before a verdict teaches.
        feedback_per_minute: Feedback posts one key may make per minute (HTTP 429 above).
        keep_queries: Keep each routed query in the ledger (``learn`` implies it).
        timeout: Request timeout in seconds for every route's model (``None``: theirs).
        max_retries: Retries of every route's SDK client (``None``: theirs); ``0`` makes
            a failing route escalate at once.
        host: The address to listen on.
        port: The port to listen on (``0``: any free port, printed at start).
        drain_seconds: On SIGTERM/SIGINT, how long requests under way (streams
            included) may take to finish before they are cut.
        max_body_bytes: The largest request body accepted (HTTP 413 above it).
        max_json_depth: The deepest nesting of arrays and objects in a request body.
        max_messages: The most ``messages`` in one chat completion request.
        max_tools: The most ``tools`` in one chat completion request.
        metrics_key_names: Label spend and budget metrics with the API key's name
            (off: ``/metrics`` shows no tenant names, only routes).
        breakers: Circuit breakers per model (``true``, the default: the default
            :class:`~langroute.dispatch.breakers.BreakerPolicy`; a table
            ``[serve.breakers]`` sets ``failure_threshold``, ``failure_rate``, ``window``,
            ``min_calls`` and ``cooldown_s``; ``false``: none).
        fast_path: Relay requests whose routes all speak the OpenAI chat-completions API
            (``openai:`` specs, with or without a ``base_url``) straight to the
            provider over one shared HTTP client, without building LangChain objects
            per request; ``false`` sends every request through the LangChain models.
        adaptive_dial: The ``[serve.adaptive_dial]`` table: an
            :class:`~langroute.adaptive_dial.AdaptiveDial` moves the router's
            threshold to hold its ``target`` (spend per hour, strong share or an
            escalation band) from the ledger; its changes are journalled beside a file
            ledger and shown by ``langroute monitor`` (``None``: the dial stays put).
        shadow_router: A saved candidate router that decides on every request next to
            the live one without answering (shadow evaluation): its decision goes into
            the request's ledger row; ``langroute compare --ledger`` reports agreement.
        otel: Emit OpenTelemetry spans for routing decisions and model calls through
            the global tracer provider (configured by the application or the
            ``OTEL_*`` environment variables); needs the ``otel`` extra.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    router: Path | None = None
    shared_router: str | None = None
    router_name: str = Field(default="default", min_length=1)
    embedder: str | None = None
    ledger: str = "memory"
    aliases: list[str] = Field(default_factory=lambda: ["auto"], min_length=1)
    keys: Path | None = None
    over_budget: Literal["degrade", "reject"] = "degrade"
    learn: bool = False
    learn_quorum: int = Field(default=3, ge=1)
    feedback_per_minute: int = Field(default=60, ge=1)
    keep_queries: bool = False
    timeout: float | None = Field(default=None, gt=0)
    max_retries: int | None = Field(default=None, ge=0)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    drain_seconds: float = Field(default=10.0, ge=0)
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    max_json_depth: int = Field(default=32, ge=4)
    max_messages: int = Field(default=1000, ge=1)
    max_tools: int = Field(default=128, ge=0)
    metrics_key_names: bool = False
    breakers: bool | BreakerPolicy = True
    fast_path: bool = True
    adaptive_dial: AdaptiveDialConfig | None = None
    shadow_router: Path | None = None
    otel: bool = False

    @property
    def breaker_policy(self) -> BreakerPolicy | None:
        """The circuit breakers' policy (``breakers = true``: the default; false: None)."""
        if self.breakers is True:
            return BreakerPolicy()
        return self.breakers or None

    @model_validator(mode="after")
    def _one_router(self) -> ServeConfig:
        if self.router is not None and self.shared_router is not None:
            raise ValueError("give router (a directory) or shared_router (a URL), not both")
        if self.shared_router is not None and not self.shared_router.startswith(
            ("postgresql://", "postgres://")
        ):
            raise ValueError(
                f"shared_router must be a postgresql:// URL, not {self.shared_router!r}"
            )
        return self

    @property
    def stores_queries(self) -> bool:
        """Whether ledger records keep the routed query (needed to learn from feedback)."""
        return self.learn or self.keep_queries


class ModelsConfig(BaseModel):
    """A parsed models file: the routes' specs (cheapest first), the judge, prices, serving.

    Build models with :meth:`build`; a spec's errors name the file and the route.
    """

    model_config = ConfigDict(frozen=True)

    path: Path | None = None
    routes: dict[str, ModelSpec]
    equivalents: dict[str, list[ModelSpec]] = Field(
        default_factory=dict,
        description="Routes with several models: every model, in order (the first is in routes).",
    )
    judge: ModelSpec | None = None
    prices: dict[str, dict[str, float]] = Field(default_factory=dict)
    serve: ServeConfig = Field(default_factory=ServeConfig)
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

    def specs(self, route: str) -> list[ModelSpec]:
        """Every model of ``route``, preferred first (one unless it lists equivalents).

        Raises:
            ModelsConfigError: no such route.
        """
        return list(self.equivalents.get(route) or [self.spec(route)])

    def route_equivalents(self) -> RouteEquivalents:
        """Route -> its ordered models as plain data (names, weights, breaker keys).

        Example:
            >>> config = models_config_from_dict({"routes": {
            ...     "small": ["openai:gpt-4o-mini", "anthropic:claude-haiku-4-5"],
            ...     "large": "openai:gpt-4o"}})
            >>> [m.name for m in config.route_equivalents().models("small")]
            ['gpt-4o-mini', 'claude-haiku-4-5']
        """
        return RouteEquivalents(
            {
                route: [
                    EquivalentModel(
                        name=spec.model_name,
                        weight=spec.weight,
                        breaker_key=spec.key,
                        continue_streams=spec.continue_streams,
                    )
                    for spec in self.specs(route)
                ]
                for route in self.routes
            }
        )

    def _where(self) -> str:
        """``path: `` to start a message about this file (empty when it has no path)."""
        return f"{self.path}: " if self.path is not None else ""

    def pricer(self) -> Any:
        """A :class:`~langroute.costs.Pricer` with this file's ``[prices]`` beside genai-prices."""
        from langroute.costs.pricing import Pricer

        return Pricer(dict(self.prices))

    def build_spec(self, where: str, value: Any) -> CompletionModel:
        """Build a model from a spec found at ``where`` in this file (e.g. ``"chain.llm"``).

        Raises:
            ModelsConfigError: The spec cannot be built (the message names file and place).
        """
        folder = self.path.parent if self.path else None
        return build_model(_parse_spec(where, value, self._where()), folder=folder)

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


def _parse_route(route: str, value: Any, where: str) -> list[ModelSpec]:
    """A route's models: one spec, an array of specs, or a table with ``models = [...]``."""
    options: dict[str, Any] = {}
    if isinstance(value, Mapping) and "models" in value:
        table = dict(value)
        value = table.pop("models")
        options = table
        unknown = sorted(set(options) - {"continue_streams"})
        if unknown:
            raise ModelsConfigError(
                f"{where}route {route!r}: unknown route key(s) {unknown}; a route table with "
                "'models' may also set 'continue_streams'"
            )
        if not isinstance(options.get("continue_streams", True), bool):
            raise ModelsConfigError(f"{where}route {route!r}: continue_streams must be true/false")
        if not isinstance(value, list):
            raise ModelsConfigError(f"{where}route {route!r}: 'models' must be an array of specs")
    if not isinstance(value, list):
        return [_parse_spec(route, value, where)]
    if not value:
        raise ModelsConfigError(f"{where}route {route!r}: the array of models is empty")
    specs = []
    for index, item in enumerate(value):
        spec = _parse_spec(f"{route}[{index}]", item, where)
        specs.append(spec.model_copy(update={"route": route, **options}))
    keys = [spec.key for spec in specs]
    if len(set(keys)) != len(keys):
        raise ModelsConfigError(f"{where}route {route!r} lists one model twice: {keys}")
    return specs


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
    return models_config_from_dict(data, path=path, text=path.read_text(encoding="utf-8"))


def _line_of(text: str | None, table: str, key: str | None) -> int | None:
    """The 1-based line of ``key`` in ``[table]`` of a TOML text (of the header if no key)."""
    if text is None:
        return None
    inside = False
    header = re.compile(r"^\s*\[\s*" + re.escape(table) + r"\s*\]\s*(#.*)?$")
    for number, line in enumerate(text.splitlines(), start=1):
        if header.match(line):
            if key is None:
                return number
            inside = True
        elif re.match(r"^\s*\[", line):
            inside = False
        elif inside and re.match(r"^\s*\"?" + re.escape(key) + r"\"?\s*=", line):
            return number
    return None


def _parse_serve(
    value: Any, *, path: Path | None, text: str | None, routes: list[str]
) -> ServeConfig:
    """The ``[serve]`` table, checked; errors name the file, line and key."""
    where = str(path) if path is not None else "[serve]"

    def fail(key: str | None, problem: str) -> ModelsConfigError:
        line = _line_of(text, "serve", key)
        at = f"{where}:{line}" if line is not None else where
        return ModelsConfigError(f"{at}: [serve] {key + ': ' if key else ''}{problem}")

    if not isinstance(value, Mapping):
        raise fail(None, f"must be a table, got {type(value).__name__}")
    try:
        serve = ServeConfig.model_validate(dict(value))
    except ValidationError as exc:
        error = exc.errors()[0]
        key = str(error["loc"][0]) if error["loc"] else None
        problem = error["msg"] if error["type"] != "extra_forbidden" else "unknown key"
        raise fail(key, problem) from exc
    for alias in serve.aliases:
        if not alias.strip():
            raise fail("aliases", "an alias must not be empty")
        if alias in routes:
            raise fail("aliases", f"alias {alias!r} is also a route name; routes: {routes}")
    folder = path.parent if path is not None else Path()

    def beside(target: Path | None) -> Path | None:
        return None if target is None or target.is_absolute() else folder / target

    update: dict[str, Any] = {}
    if serve.router is not None:
        update["router"] = beside(serve.router) or serve.router
    if serve.keys is not None:
        update["keys"] = beside(serve.keys) or serve.keys
    dial = serve.adaptive_dial
    if dial is not None and dial.journal is not None:
        update["adaptive_dial"] = dial.model_copy(
            update={"journal": beside(dial.journal) or dial.journal}
        )
    if serve.shadow_router is not None:
        update["shadow_router"] = beside(serve.shadow_router) or serve.shadow_router
    if serve.ledger != "memory" and "://" not in serve.ledger:
        ledger = Path(serve.ledger)
        update["ledger"] = str(ledger if ledger.is_absolute() else folder / ledger)
    return serve.model_copy(update=update)


def models_config_from_dict(
    data: Mapping[str, Any], *, path: Path | None = None, text: str | None = None
) -> ModelsConfig:
    """Build a :class:`ModelsConfig` from the parsed file (a mapping).

    Args:
        data: The parsed TOML.
        path: The file (named in errors; relative paths in ``[serve]`` are beside it).
        text: The file's text, to name the line of a bad ``[serve]`` key.

    Raises:
        ModelsConfigError: a table is missing or malformed.
    """
    where = f"{path}: " if path is not None else ""
    unknown = sorted(set(data) - {"routes", "judge", "prices", "serve", "chain"})
    if unknown:
        raise ModelsConfigError(
            f"{where}unknown table(s) {unknown}; expected routes, judge, prices, serve, chain"
        )
    chain = data.get("chain")
    if chain is not None and not isinstance(chain, Mapping):
        raise ModelsConfigError(f"{where}[chain] must be a table")
    routes = data.get("routes")
    if not isinstance(routes, Mapping) or not routes:
        raise ModelsConfigError(f"{where}a [routes] table naming at least one route is required")
    every = {str(name): _parse_route(str(name), value, where) for name, value in routes.items()}
    specs = {name: models[0] for name, models in every.items()}
    equivalents = {name: models for name, models in every.items() if len(models) > 1}
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
    serve = _parse_serve(data.get("serve", {}), path=path, text=text, routes=list(specs))
    return ModelsConfig(
        path=path,
        routes=specs,
        equivalents=equivalents,
        judge=judge_spec,
        prices=dict(prices),
        serve=serve,
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

"""The ``langroute demo``: route a realistic workload, then show what it cost and saved.

The demo builds the starter router (:meth:`langroute.ExemplarRouter.default`), sends a
mixed workload of everyday and hard requests through a :class:`RoutingChatModel` and a
few structured-extraction jobs through a :class:`CascadeRunnable` (cheap model first, a
JSON validator decides, escalate on failure), records every paid call with
:func:`track_costs` into a SQLite ledger, and prints each decision, the per-route cost
table, the escalations and the savings against sending everything to the strong model.
It also writes a cost-per-route plot.

Offline (the default) the two models are :class:`StandInChatModel` instances: local
chat models that answer like a cheap and a strong model (different answers, token usage
proportional to the text) and report the names of two real models, ``gpt-4o-mini`` and
``gpt-4o``, so ``genai-prices`` prices them. With ``provider="openai"``,
``"anthropic"`` or ``"ollama"`` the same code path runs with real chat models.

With ``tiers=3`` (``langroute demo --tiers 3``) the same run has three tiers, small,
medium and large (stand-ins priced as gpt-4o-mini, gpt-4.1-mini and gpt-4o), and routes
through a decider chain: a heuristic gate, the kNN router over the starter pack split in
three (:func:`three_tier_router`), and an LLM router for what the kNN is unsure of.

The core finds :func:`run_demo` through the ``langroute.demo`` entry point
(``langroute demo``), so ``langroute`` itself never imports LangChain.

Example:
    .. code-block:: python

        from pathlib import Path
        from langchain_langroute.demo import run_demo

        result = run_demo(output=Path("langroute-demo"))  # offline, about 30 s
        result.savings_pct  # e.g. 71.3
        result.ledger_path  # Path('langroute-demo/ledger.db')
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.messages.ai import UsageMetadata
from langroute.costs import CostLedger, ModelPrice, Pricer, plot_costs, render_report
from langroute.costs.summary import request_costs
from langroute.dispatch.routed_call import RouteMetadata
from langroute.errors import LangrouteError
from langroute.scorers import AllOf, JSONValidator, NonEmptyValidator, RefusalDetector
from pydantic import Field

from langchain_langroute.callbacks import track_costs
from langchain_langroute.cascade import CascadeRunnable, get_cascade_result
from langchain_langroute.chat_models import RoutingChatModel
from langchain_langroute.query import message_text
from langchain_langroute.testing import ScriptedChatModel

if TYPE_CHECKING:
    from langroute.router.exemplar_router import ExemplarRouter
    from rich.console import Console

__all__ = [
    "DEFAULT_MODELS",
    "DEMO_RULES",
    "MEDIUM_CATEGORIES",
    "PROVIDERS",
    "THREE_TIERS",
    "THREE_TIER_MODELS",
    "WORKLOAD",
    "DemoDecision",
    "DemoRequest",
    "DemoResult",
    "DemoSetupError",
    "StandInChatModel",
    "chat_models_for",
    "plot_costs",
    "run_demo",
    "stand_in_models",
    "stand_in_router_model",
    "three_tier_chain",
    "three_tier_router",
    "tier_models_for",
]

PROVIDERS = ("offline", "openai", "anthropic", "ollama")
"""Accepted ``provider`` values (``None`` means ``"offline"``)."""

DEFAULT_MODELS: dict[str, tuple[str, str]] = {
    "offline": ("gpt-4o-mini", "gpt-4o"),
    "openai": ("gpt-4o-mini", "gpt-4o"),
    "anthropic": ("claude-3-5-haiku-latest", "claude-sonnet-4-5"),
    "ollama": ("llama3.2:3b", "llama3.1:8b"),
}
"""Provider -> (cheap model, strong model); override with ``LANGROUTE_CHEAP_MODEL`` /
``LANGROUTE_STRONG_MODEL``."""

THREE_TIERS = ("small", "medium", "large")
"""The routes of the three-tier demo, cheapest first."""

THREE_TIER_MODELS: dict[str, tuple[str, str, str]] = {
    "offline": ("gpt-4o-mini", "gpt-4.1-mini", "gpt-4o"),
    "openai": ("gpt-4o-mini", "gpt-4.1-mini", "gpt-4o"),
    "anthropic": ("claude-3-5-haiku-latest", "claude-sonnet-4-5", "claude-opus-4-1"),
    "ollama": ("llama3.2:1b", "llama3.2:3b", "llama3.1:8b"),
}
"""Provider -> (small, medium, large) models of the three-tier demo; override with
``LANGROUTE_CHEAP_MODEL`` / ``LANGROUTE_MEDIUM_MODEL`` / ``LANGROUTE_STRONG_MODEL``."""

MEDIUM_CATEGORIES = frozenset(
    {"analysis_comparison", "code_generation", "expert_advice", "long_creative_writing"}
)
"""Starter-pack categories whose exemplars :func:`three_tier_router` moves from large to
medium: substantial work a mid-priced model does well. Multi-step reasoning, math,
planning, research synthesis and debugging stay large."""

DEMO_RULES: tuple[dict[str, Any], ...] = (
    {
        "name": "greeting",
        "route": "small",
        "max_words": 6,
        "keywords": ["hi", "hello", "hey", "thanks", "thank you", "good morning"],
    },
    {"name": "attachment", "route": "large", "attachments": True},
    {"name": "very long", "route": "large", "min_words": 400},
)
"""The heuristic gate of the three-tier demo (:class:`langroute.chains.deciders.HeuristicRule`)."""

_PROVIDER_SETUP: dict[str, tuple[str, str, str, str | None]] = {
    # provider: (module, class, pip package, API key variable)
    "openai": ("langchain_openai", "ChatOpenAI", "langchain-openai", "OPENAI_API_KEY"),
    "anthropic": (
        "langchain_anthropic",
        "ChatAnthropic",
        "langchain-anthropic",
        "ANTHROPIC_API_KEY",
    ),
    "ollama": ("langchain_ollama", "ChatOllama", "langchain-ollama", None),
}

SYSTEM_PROMPT = (
    "You are the assistant of a software company's internal help desk. Answer accurately "
    "and concisely. When a request is ambiguous, say what you assumed. Use Markdown for "
    "code and lists. Never invent facts about people, prices or laws; say when you are "
    "unsure and suggest who to ask. When asked for JSON, reply with JSON only."
)
"""The system message sent with every request (routing ignores it: it routes on the
user's message)."""


class DemoSetupError(LangrouteError):
    """The demo cannot start: unknown provider, missing package or missing API key."""


# --------------------------------------------------------------------------- workload


@dataclass(frozen=True)
class DemoRequest:
    """One request of the demo workload, with the answers the stand-in models give.

    Attributes:
        text: The user's request.
        cheap_answer: What the cheap stand-in answers.
        strong_answer: What the strong stand-in answers.
        kind: ``"route"`` (through the routing model) or ``"cascade"``.
    """

    text: str
    cheap_answer: str
    strong_answer: str
    kind: Literal["route", "cascade"] = "route"


_WORKLOAD_FILE = Path(__file__).parent / "data" / "demo_workload.jsonl"


def _load_workload(path: Path) -> tuple[DemoRequest, ...]:
    """Read a workload file: one JSON object per line with the :class:`DemoRequest` fields."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return tuple(DemoRequest(**json.loads(line)) for line in lines if line.strip())


WORKLOAD: tuple[DemoRequest, ...] = _load_workload(_WORKLOAD_FILE)
"""The demo workload: 15 routed requests (easy and hard) and 5 cascade extractions.

Read from ``data/demo_workload.jsonl``, in order: ten everyday requests a small model
does well, one ambiguous request (the vote is too close to the dial, so it escalates),
four hard requests worth the strong model, and five structured extractions through the
cascade (a JSON validator decides).
"""


# --------------------------------------------------------------------------- stand-ins


def _tokens(text: str) -> int:
    """A realistic token estimate: about four characters per token (at least 1)."""
    return max(1, math.ceil(len(text) / 4))


class StandInChatModel(ScriptedChatModel):
    """A local chat model that answers like a real one, for offline demos and recipes.

    It knows the answers to the demo :data:`WORKLOAD` (``answers``: question -> reply;
    other questions get a short generic reply), reports token usage proportional to the
    text (about four characters per token, plus a few tokens per message, like chat
    APIs), and reports ``model`` as its model name, so a real model name is priced by
    ``genai-prices``. Everything else (streaming, tools, failures) is
    :class:`~langchain_langroute.testing.ScriptedChatModel`.

    Example:
        >>> cheap, strong = stand_in_models()
        >>> cheap.invoke("What's the capital of Australia?").content
        'Canberra.'
        >>> strong.invoke("hi").response_metadata["model_name"]
        'gpt-4o'
    """

    answers: dict[str, str] = Field(default_factory=dict)
    """Question (the last human message) -> the reply."""
    style: Literal["cheap", "strong"] = "cheap"
    """How unknown questions are answered: tersely (cheap) or at more length (strong)."""

    def _reply(
        self, messages: list[BaseMessage], scripted: str | AIMessage | None, kwargs: dict[str, Any]
    ) -> AIMessage:
        question = next(
            (message_text(m) for m in reversed(messages) if isinstance(m, HumanMessage)), ""
        )
        if scripted is None and not kwargs.get("tools"):
            answer = self.answers.get(question.strip())
            if answer is None:
                answer = (
                    f"(offline stand-in for {self.model}) A short answer to: {question}"
                    if self.style == "cheap"
                    else f"(offline stand-in for {self.model}) A careful answer to: {question} "
                    "1. Restate the goal and the constraints. 2. Work through the options and "
                    "their trade-offs. 3. Recommend one, with the risks and how to check it."
                )
            return AIMessage(content=answer)
        return super()._reply(messages, scripted, kwargs)

    def _usage(self, messages: list[BaseMessage], message: AIMessage) -> UsageMetadata:
        input_tokens = sum(_tokens(message_text(m)) + 4 for m in messages)
        output_tokens = _tokens(message.text or "") + 8 * len(message.tool_calls)
        return UsageMetadata(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            total_tokens=input_tokens + output_tokens,
        )


def stand_in_models(
    cheap_model: str = "gpt-4o-mini",
    strong_model: str = "gpt-4o",
    workload: Sequence[DemoRequest] = WORKLOAD,
    *,
    latency: tuple[float, float] = (0.02, 0.06),
) -> tuple[StandInChatModel, StandInChatModel]:
    """A cheap and a strong stand-in model that know the answers of ``workload``.

    Args:
        cheap_model: Model name the cheap stand-in reports (and is priced as).
        strong_model: Model name the strong stand-in reports.
        workload: Requests whose scripted answers the stand-ins give.
        latency: Seconds each model waits before answering (cheap, strong).

    Returns:
        ``(cheap, strong)``.
    """
    cheap = StandInChatModel(
        model=cheap_model,
        provider="openai",
        answers={r.text: r.cheap_answer for r in workload},
        style="cheap",
        latency=latency[0],
    )
    strong = StandInChatModel(
        model=strong_model,
        provider="openai",
        answers={r.text: r.strong_answer for r in workload},
        style="strong",
        latency=latency[1],
    )
    return cheap, strong


def _normalise_provider(provider: str | None) -> str:
    name = (provider or "offline").strip().lower()
    if name in ("", "none", "local", "stand-in", "standin", "fake"):
        name = "offline"
    if name not in PROVIDERS:
        raise DemoSetupError(f"unknown provider {provider!r}: choose one of {', '.join(PROVIDERS)}")
    return name


def chat_models_for(provider: str | None = None) -> tuple[BaseChatModel, BaseChatModel]:
    """The (cheap, strong) chat models of a provider: stand-ins offline, else real ones.

    Model names come from ``LANGROUTE_CHEAP_MODEL`` / ``LANGROUTE_STRONG_MODEL`` when set,
    else :data:`DEFAULT_MODELS`. Provider packages are imported only here, on demand.

    Args:
        provider: ``None`` / ``"offline"``, ``"openai"``, ``"anthropic"`` or ``"ollama"``.

    Returns:
        ``(cheap, strong)`` chat models.

    Raises:
        DemoSetupError: Unknown provider, its LangChain package is not installed, or its
            API key variable is not set.

    Example:
        >>> cheap, strong = chat_models_for(None)  # offline stand-ins
        >>> cheap.model, strong.model
        ('gpt-4o-mini', 'gpt-4o')
    """
    name = _normalise_provider(provider)
    default_cheap, default_strong = DEFAULT_MODELS[name]
    cheap_name = os.environ.get("LANGROUTE_CHEAP_MODEL") or default_cheap
    strong_name = os.environ.get("LANGROUTE_STRONG_MODEL") or default_strong
    if name == "offline":
        return stand_in_models(cheap_name, strong_name)
    chat_class = _provider_class(name)
    return chat_class(model=cheap_name), chat_class(model=strong_name)


def _provider_class(name: str) -> Any:
    """The LangChain chat model class of a provider, once its package and key are there."""
    module_name, class_name, package, key = _PROVIDER_SETUP[name]
    try:
        module = import_module(module_name)
    except ImportError as exc:
        raise DemoSetupError(
            f"the {name} demo needs the {package} package: pip install {package}"
        ) from exc
    if key is not None and not os.environ.get(key):
        raise DemoSetupError(f"the {name} demo needs an API key: export {key}=...")
    return getattr(module, class_name)


def _pricer_for(provider: str, models: Sequence[BaseChatModel]) -> Pricer:
    """Local (Ollama) models are free; everything else is priced by genai-prices."""
    if provider != "ollama":
        return Pricer()
    free = ModelPrice(input_per_mtok=0, output_per_mtok=0)
    names = {getattr(m, "model", None) or getattr(m, "model_name", None) for m in models}
    return Pricer({name: free for name in names if name})


def three_tier_router(embedder: Any = None) -> ExemplarRouter:
    """The starter router split in three tiers: small, medium and large.

    The starter pack's ``large`` exemplars of :data:`MEDIUM_CATEGORIES` become
    ``medium``. The vectors come from the starter router (cached on disk after its first
    build), so nothing is embedded again.

    Example:
        >>> router = three_tier_router()  # doctest: +SKIP
        >>> router.routes  # doctest: +SKIP
        ['small', 'medium', 'large']
    """
    from langroute.router.exemplar_router import ExemplarRouter

    starter = ExemplarRouter.default(embedder=embedder)
    exemplars = starter.exemplars
    relabelled = [
        ex.model_copy(update={"route": "medium"})
        if ex.route == "large" and ex.metadata.get("category") in MEDIUM_CATEGORIES
        else ex
        for ex in exemplars
    ]
    router = ExemplarRouter(routes=list(THREE_TIERS), embedder=starter.embedder)
    router.add_embedded(relabelled, starter.vectors([ex.id for ex in exemplars]))
    return router


def tier_models_for(provider: str | None = None) -> dict[str, BaseChatModel]:
    """The small, medium and large chat models of the three-tier demo (route -> model).

    Offline: stand-ins priced as :data:`THREE_TIER_MODELS` names; otherwise real models
    of the provider, as :func:`chat_models_for` builds them.

    Raises:
        DemoSetupError: As :func:`chat_models_for`.

    Example:
        >>> {route: m.model for route, m in tier_models_for(None).items()}
        {'small': 'gpt-4o-mini', 'medium': 'gpt-4.1-mini', 'large': 'gpt-4o'}
    """
    name = _normalise_provider(provider)
    small, medium, large = THREE_TIER_MODELS[name]
    names = (
        os.environ.get("LANGROUTE_CHEAP_MODEL") or small,
        os.environ.get("LANGROUTE_MEDIUM_MODEL") or medium,
        os.environ.get("LANGROUTE_STRONG_MODEL") or large,
    )
    if name == "offline":
        cheap, strong = stand_in_models(names[0], names[2])
        middle = StandInChatModel(
            model=names[1],
            provider="openai",
            answers={r.text: r.strong_answer for r in WORKLOAD},
            style="strong",
            latency=0.04,
        )
        return dict(zip(THREE_TIERS, (cheap, middle, strong), strict=True))
    chat_class = _provider_class(name)
    return {route: chat_class(model=model) for route, model in zip(THREE_TIERS, names, strict=True)}


_HARD_WORDS = ("prove", "derive", "design", "architecture", "plan ", "theorem", "diagnose")
_MEDIUM_WORDS = ("write", "code", "function", "compare", "recommend", "explain", "draft")


def _stand_in_route_choice(prompt: str) -> str:
    """What the offline stand-in of the LLM router answers: a judgement by keywords."""
    from langroute.chains.deciders import request_in_prompt

    request = request_in_prompt(prompt).lower()
    if any(word in request for word in _HARD_WORDS):
        return "large"
    if any(word in request for word in _MEDIUM_WORDS):
        return "medium"
    return "small"


def stand_in_router_model() -> Any:
    r"""The offline stand-in of the LLM router: judges the request by keywords.

    A :class:`~langroute.models.scripted.ScriptedCompletionModel` named (and priced as)
    ``gpt-4o-mini`` that answers ``large`` for proofs, designs and plans, ``medium`` for
    code, comparisons and advice, else ``small``.

    Example:
        >>> import asyncio
        >>> prompt = "...route:\n<request>\nProve Fermat's little theorem\n</request>\nAnswer"
        >>> asyncio.run(stand_in_router_model().acomplete(prompt)).text
        'large'
    """
    from langroute.models.scripted import ScriptedCompletionModel

    return ScriptedCompletionModel("gpt-4o-mini", reply=_stand_in_route_choice)


def three_tier_chain(router: ExemplarRouter, router_model: Any) -> Any:
    """The demo's decider chain: :data:`DEMO_RULES`, the kNN ``router``, an LLM router.

    Args:
        router: The three-tier kNN router (:func:`three_tier_router`).
        router_model: The LLM router's model: a LangChain chat model or a
            :class:`~langroute.models.config.CompletionModel`.
    """
    from langroute.chains.deciders import DeciderChain, HeuristicGate, LLMRouter

    descriptions = {
        "small": "greetings, lookups, short rewrites, translations, formatting",
        "medium": "writing code, comparisons, advice, longer writing",
        "large": "multi-step reasoning, math, planning, research, debugging",
    }
    return DeciderChain(
        router,
        gate=HeuristicGate(DEMO_RULES),
        # the demo's router model may also send an unsure request to a cheaper tier
        llm=LLMRouter(router_model, descriptions=descriptions, may_choose_cheaper=True),
    )


# --------------------------------------------------------------------------- result


@dataclass(frozen=True)
class DemoDecision:
    """What happened to one request of the workload.

    Attributes:
        query: The request.
        kind: ``"route"`` (routing model) or ``"cascade"``.
        route: The route that answered.
        model: The model that answered.
        reason: The router's reason (``vote``, ``out_of_distribution``...) or, for the
            cascade, why the answer was accepted.
        confidence: The router's confidence (``None`` for cascade requests).
        escalated: True when the request went to a stronger model than first chosen
            (router uncertainty, a provider error, or a rejected cascade answer).
        detail: Why it escalated, when it did.
        answer: The answer's text.
    """

    query: str
    kind: Literal["route", "cascade"]
    route: str
    model: str
    reason: str
    confidence: float | None
    escalated: bool
    detail: str = ""
    answer: str = ""


@dataclass(frozen=True)
class DemoResult:
    """Summary of one demo run (what was printed, as data).

    Attributes:
        provider: ``"offline"``, ``"openai"``, ``"anthropic"`` or ``"ollama"``.
        models: Route -> model name.
        decisions: One entry per request, in workload order.
        requests: Requests sent.
        calls: Paid model calls recorded in the ledger (escalations add calls).
        cost: Total cost in USD (``None`` if no call could be priced).
        baseline_cost: What always using the strong model would have cost.
        savings: ``baseline_cost - cost`` over the priced requests.
        savings_pct: ``savings`` in percent of the baseline.
        ledger_path: The SQLite ledger.
        plot_path: The PNG plot.
        elapsed_s: Wall time of the run.
    """

    provider: str
    models: dict[str, str]
    decisions: list[DemoDecision]
    requests: int
    calls: int
    cost: float | None
    baseline_cost: float | None
    savings: float | None
    savings_pct: float | None
    ledger_path: Path
    plot_path: Path
    elapsed_s: float
    escalations: list[DemoDecision] = field(default_factory=list)


# --------------------------------------------------------------------------- the demo


def _short(text: str, width: int = 58) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _fresh_ledger(path: Path) -> None:
    """Remove a previous run's ledger (and its WAL files) so the report covers this run."""
    for suffix in ("", "-wal", "-shm"):
        candidate = path.with_name(path.name + suffix)
        if candidate.exists():
            candidate.unlink()


def _model_name(model: BaseChatModel) -> str:
    for attribute in ("model", "model_name"):
        value = getattr(model, attribute, None)
        if isinstance(value, str) and value:
            return value
    return type(model).__name__


def _routed(llm: RoutingChatModel, request: DemoRequest) -> DemoDecision:
    answer = llm.invoke([SystemMessage(SYSTEM_PROMPT), HumanMessage(request.text)])
    record = RouteMetadata.from_metadata(answer.response_metadata)
    if record is None:  # pragma: no cover - a routing model always annotates its answer
        raise RuntimeError("the routed answer carries no routing record")
    reason = record.reason
    detail = ""
    if reason in ("low_confidence", "out_of_distribution"):
        detail = f"router {reason.replace('_', ' ')}: sent to the fallback route"
    if record.escalated:
        errors = "; ".join(a.error or "" for a in record.attempts)
        detail = f"{record.escalated_from} failed ({errors})"
    return DemoDecision(
        query=request.text,
        kind="route",
        route=str(record.route),
        model=str(answer.response_metadata.get("model_name") or record.model),
        reason=reason,
        confidence=record.confidence,
        escalated=bool(detail),
        detail=detail,
        answer=message_text(answer),
    )


def _cascaded(cascade: CascadeRunnable, request: DemoRequest) -> DemoDecision:
    answer = cascade.invoke([SystemMessage(SYSTEM_PROMPT), HumanMessage(request.text)])
    result = get_cascade_result(answer)
    if result is None:  # pragma: no cover - a cascade always annotates its answer
        raise RuntimeError("the cascade answer carries no cascade record")
    rejected = result.rejected
    detail = "; ".join(f"{a.tier_name} ({a.model}) {a.reason}" for a in rejected)
    return DemoDecision(
        query=request.text,
        kind="cascade",
        route=result.tier_name,
        model=result.model,
        reason="validated" if result.tier == 0 else "escalated",
        confidence=None,
        escalated=result.escalated,
        detail=detail,
        answer=message_text(answer),
    )


def _decision_table(
    decisions: Sequence[DemoDecision], costs: Sequence[float | None], colours: dict[str, str]
) -> Any:
    from rich.table import Table

    table = Table(title="decisions", title_justify="left", header_style="bold")
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("request", min_width=24)  # the only column that wraps when narrow
    table.add_column("via", no_wrap=True)
    table.add_column("route", no_wrap=True)
    table.add_column("model", no_wrap=True)
    table.add_column("reason", no_wrap=True)
    table.add_column("conf", justify="right", no_wrap=True)
    table.add_column("cost", justify="right", no_wrap=True)
    for number, (item, cost) in enumerate(zip(decisions, costs, strict=True), start=1):
        style = f"bold {colours.get(item.route, 'magenta')}"
        table.add_row(
            str(number),
            _short(item.query, 50),
            "router" if item.kind == "route" else "cascade",
            f"[{style}]{item.route}[/]",
            item.model,
            item.reason + (" ⤴" if item.escalated else ""),
            "-" if item.confidence is None else f"{item.confidence:.2f}",
            "n/a" if cost is None else f"${cost:.6f}",
        )
    return table


def run_demo(
    provider: str | None = None,
    output: Path = Path("langroute-demo"),
    console: Console | None = None,
    *,
    router: ExemplarRouter | None = None,
    workload: Sequence[DemoRequest] = WORKLOAD,
    tiers: int = 2,
) -> DemoResult:
    """Run the demo: route the workload, record the costs, print the report, plot it.

    Args:
        provider: ``None`` / ``"offline"`` (local stand-ins priced as gpt-4o-mini and
            gpt-4o), ``"openai"``, ``"anthropic"`` or ``"ollama"`` (real models; see
            :func:`chat_models_for` for packages, keys and model names).
        output: Folder for ``ledger.db`` (SQLite, replaced on each run) and ``costs.png``.
        console: A ``rich`` console to print to (default: stdout).
        router: The router (default: :meth:`ExemplarRouter.default`, the starter router;
            with ``tiers=3``, :func:`three_tier_router`).
        workload: The requests (default: :data:`WORKLOAD`).
        tiers: 2 (small, large) or 3 (small, medium, large, routed through the decider
            chain of :func:`three_tier_chain`).

    Returns:
        A :class:`DemoResult` with the decisions, totals and file paths.

    Raises:
        DemoSetupError: The provider cannot be used (package or API key missing), or
            ``tiers`` is not 2 or 3.

    Example:
        >>> result = run_demo(output=Path("/tmp/demo"))  # doctest: +SKIP
        >>> result.savings > 0  # doctest: +SKIP
        True
    """
    from rich.console import Console
    from rich.panel import Panel

    started = time.perf_counter()
    name = _normalise_provider(provider)
    if tiers not in (2, 3):
        raise DemoSetupError(f"the demo has 2 or 3 tiers, not {tiers}")
    # fail fast, before loading the embedder
    if tiers == 2:
        cheap, strong = chat_models_for(name)
        chat_models: dict[str, BaseChatModel] = {"small": cheap, "large": strong}
    else:
        chat_models = tier_models_for(name)
    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=max(console.width, 140))
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    ledger_path = output / "ledger.db"
    plot_path = output / "costs.png"
    models = {route: _model_name(model) for route, model in chat_models.items()}
    strongest = list(models)[-1]
    where = "local stand-in models" if name == "offline" else f"{name} models"
    colours = dict(zip(models, ("green", "yellow", "magenta")[-len(models) :], strict=True))
    console.print(
        Panel.fit(
            f"[bold]langroute demo[/] · {where}: "
            + ", ".join(f"{route} → [{colours[route]}]{m}[/]" for route, m in models.items())
            + " (prices from genai-prices)\n"
            f"{sum(r.kind == 'route' for r in workload)} requests through a RoutingChatModel, "
            f"{sum(r.kind == 'cascade' for r in workload)} extractions through a cascade "
            "(cheap first, a JSON validator decides)",
        )
    )

    if router is None:
        from langroute.router.exemplar_router import ExemplarRouter

        with console.status("building the starter router (embedding the bundled exemplars)"):
            router = ExemplarRouter.default() if tiers == 2 else three_tier_router()
    console.print(
        f"router: {len(router)} exemplars "
        f"({', '.join(f'{r}: {n}' for r, n in router.counts().items())}), "
        f"dial {router.threshold:.2f}, k={router.settings.k}"
    )
    deciding: Any = router
    if tiers == 3:
        # offline, the LLM router is a stand-in judging by keywords (priced as
        # gpt-4o-mini); with a provider, the small model chooses
        router_model = stand_in_router_model() if name == "offline" else chat_models["small"]
        deciding = three_tier_chain(router, router_model)
        console.print(f"decider chain: {deciding!r}; rules: {[r['name'] for r in DEMO_RULES]}")
    llm = RoutingChatModel(router=deciding, models=chat_models)
    cascade = CascadeRunnable(
        tiers=list(chat_models.values()),
        scorer=AllOf(NonEmptyValidator(), RefusalDetector(), JSONValidator()),
        threshold=0.5,
        tier_names=list(chat_models),
    )

    _fresh_ledger(ledger_path)
    ledger = CostLedger(ledger_path, pricer=_pricer_for(name, list(chat_models.values())))
    decisions: list[DemoDecision] = []
    with track_costs(ledger):
        for request in workload:
            if request.kind == "cascade":
                decisions.append(_cascaded(cascade, request))
            else:
                decisions.append(_routed(llm, request))

    records = ledger.records()
    per_request = request_costs(records)
    costs: list[float | None] = [cost for cost, _ in per_request]
    if len(costs) != len(decisions):  # a record went missing: show no per-request costs
        costs = [None] * len(decisions)
    console.print(_decision_table(decisions, costs, colours))

    summary = ledger.summary(order=router.routes)
    console.print(render_report(summary))

    escalations = [d for d in decisions if d.escalated]
    console.print(f"[bold]escalations[/] ({len(escalations)} of {len(decisions)} requests)")
    for item in escalations:
        console.print(f"  ⤴ {_short(item.query, 70)}\n    [dim]{item.detail}[/] → {item.model}")
    if not escalations:
        console.print("  none")

    if summary.savings is not None and summary.baseline_cost is not None:
        console.print(
            f"[bold]savings[/]: spent [green]${summary.cost or 0:.6f}[/] instead of "
            f"${summary.baseline_cost:.6f} with every request on {models[strongest]}: "
            f"[bold green]saved ${summary.savings:.6f} ({summary.savings_pct or 0:.1f}%)[/]"
        )
    else:
        console.print("[bold]savings[/]: n/a (the models have no known price)")

    plot_costs(records, plot_path, order=router.routes, title=f"langroute demo ({where})")
    ledger.close()
    elapsed = time.perf_counter() - started
    console.print(f"ledger: [bold]{ledger_path}[/]  (langroute report {ledger_path})")
    console.print(f"plot:   [bold]{plot_path}[/]")
    console.print(f"[dim]done in {elapsed:.1f} s[/]")
    # the last line: where to look next (one line, whatever the terminal's width)
    console.print(f"see it: langroute dashboard {ledger_path}", markup=False, soft_wrap=True)
    return DemoResult(
        provider=name,
        models=models,
        decisions=decisions,
        requests=summary.requests,
        calls=summary.calls,
        cost=summary.cost,
        baseline_cost=summary.baseline_cost,
        savings=summary.savings,
        savings_pct=summary.savings_pct,
        ledger_path=ledger_path,
        plot_path=plot_path,
        elapsed_s=elapsed,
        escalations=escalations,
    )

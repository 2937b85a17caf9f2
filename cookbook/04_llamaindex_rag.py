"""Recipe 4: LlamaIndex RAG with a routing LLM: route on the question, not the context.

What it shows:
    * ``VectorStoreIndex`` over a few documents, queried through
      ``index.as_query_engine(llm=RoutingLLM(...))``.
    * The response synthesizer sends the model a long prompt (template + retrieved
      chunks), but ``RoutingLLM`` routes on the template's ``query_str``: the user's
      question. ``RouteSelectedEvent`` shows what was routed on and where it came from.
    * Cost per route from the LlamaIndex ``track_costs`` handler, into the same
      ``CostLedger`` the LangChain integration uses.

Run it:
    python cookbook/04_llamaindex_rag.py                      # offline mock LLMs
    python cookbook/04_llamaindex_rag.py --provider openai    # llama-index-llms-openai + key
    (anthropic: llama-index-llms-anthropic; ollama: llama-index-llms-ollama; model names
    from LANGROUTE_CHEAP_MODEL / LANGROUTE_STRONG_MODEL)

The retrieval embedding here is a model-free hashing embedding so that the recipe runs
anywhere; in real use pass your embedding model (``embed_model=``).
"""

from __future__ import annotations

import argparse
import os
from importlib import import_module
from pathlib import Path
from typing import Any

from llama_index.core import SimpleDirectoryReader, VectorStoreIndex
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.llms import LLM
from llama_index.llms.langroute import RouteSelectedEvent, RoutingLLM, track_costs
from llama_index.llms.langroute.testing import HashingEmbedding, MockProviderLLM

from langroute import ExemplarRouter
from langroute.costs import CostLedger

DATA = Path(__file__).parent / "data"
PROVIDERS = {  # provider: (module, class, pip package, default cheap, default strong)
    "openai": (
        "llama_index.llms.openai",
        "OpenAI",
        "llama-index-llms-openai",
        "gpt-4o-mini",
        "gpt-4o",
    ),
    "anthropic": (
        "llama_index.llms.anthropic",
        "Anthropic",
        "llama-index-llms-anthropic",
        "claude-3-5-haiku-latest",
        "claude-sonnet-4-5",
    ),
    "ollama": (
        "llama_index.llms.ollama",
        "Ollama",
        "llama-index-llms-ollama",
        "llama3.2:3b",
        "llama3.1:8b",
    ),
}


def llms_for(provider: str) -> tuple[LLM, LLM]:
    """(cheap, strong) LlamaIndex LLMs: offline mocks, or a real provider's."""
    if provider == "offline":
        return (
            MockProviderLLM(model="gpt-4o-mini", reply="(offline gpt-4o-mini) Short answer."),
            MockProviderLLM(model="gpt-4o", reply="(offline gpt-4o) A careful, sourced answer."),
        )
    module_name, class_name, package, cheap, strong = PROVIDERS[provider]
    try:
        llm_class: Any = getattr(import_module(module_name), class_name)
    except ImportError as exc:
        raise SystemExit(f"the {provider} recipe needs: pip install {package}") from exc
    cheap = os.environ.get("LANGROUTE_CHEAP_MODEL", cheap)
    strong = os.environ.get("LANGROUTE_STRONG_MODEL", strong)
    return llm_class(model=cheap), llm_class(model=strong)


class PrintRoutes(BaseEventHandler):
    """Prints each routing decision: what was routed on, and the route."""

    @classmethod
    def class_name(cls) -> str:
        return "PrintRoutes"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        if isinstance(event, RouteSelectedEvent):
            print(
                f"  ROUTE {event.route} ({event.model}), routed on the {event.source}: "
                f"{(event.query or '')[:70]!r}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider", default=os.environ.get("LANGROUTE_PROVIDER", "offline"))
    args = parser.parse_args()

    cheap, strong = llms_for(args.provider)
    router = ExemplarRouter.from_file(DATA / "helpdesk_exemplars.jsonl", routes=["small", "large"])
    llm = RoutingLLM(router=router, models={"small": cheap, "large": strong})

    documents = SimpleDirectoryReader(str(DATA / "handbook")).load_data()
    index = VectorStoreIndex.from_documents(documents, embed_model=HashingEmbedding())
    engine = index.as_query_engine(llm=llm, similarity_top_k=2)

    dispatcher = get_dispatcher()
    printer = PrintRoutes()
    dispatcher.add_event_handler(printer)
    ledger = CostLedger()  # or CostLedger("costs.db")
    questions = [
        "How many days per week can I work from home?",
        "A contractor needs admin rights on a production database for two weeks. Analyse the "
        "risks under our access policy and propose a compliant way to grant it.",
    ]
    try:
        with track_costs(ledger):
            for question in questions:
                print(f"Q: {question}")
                response = engine.query(question)
                sources = ", ".join(
                    Path(n.node.metadata.get("file_name", "?")).name for n in response.source_nodes
                )
                print(f"  A: {str(response)[:100]}  [sources: {sources}]")
    finally:
        dispatcher.event_handlers = [h for h in dispatcher.event_handlers if h is not printer]

    summary = ledger.summary(order=router.routes)
    for item in summary.routes:
        print(
            f"{item.route}: {item.calls} calls, {item.input_tokens} input tokens "
            f"(question + retrieved context), ${item.cost or 0:.6f}"
        )


if __name__ == "__main__":
    main()

"""LangChain chat models as langroute completion models (``langroute label``'s models).

The core's models file (:mod:`langroute.models.config`) names LangChain models by an
``init_chat_model`` spec (``"openai:gpt-4o-mini"``). The core never imports LangChain:
it finds this module through the ``langroute.model_specs`` entry point, which this
package registers, and calls :func:`from_spec` (a spec) or :func:`adapt` (a chat model
a factory returned).

Example:
    .. code-block:: python

        from langchain_langroute.completion_models import ChatCompletionModel

        model = ChatCompletionModel(ChatOpenAI(model="gpt-4o-mini"))
        completion = await model.acomplete("What is the capital of France?")
        completion.text, completion.usage, completion.model
        # ('Paris.', TokenUsage(input_tokens=14, ...), 'gpt-4o-mini-2024-07-18')
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage
from langroute.errors import ModelsConfigError
from langroute.models.config import Completion, ModelSpec, import_object

from langchain_langroute.route_models import model_name_of, served_model, usage_of_message

__all__ = ["ChatCompletionModel", "adapt", "chat_model_from_spec", "from_spec"]


class ChatCompletionModel:
    """A LangChain chat model behind langroute's ``CompletionModel`` protocol.

    Each prompt is sent as one human message with ``ainvoke``; the answer's text, its
    ``usage_metadata`` and the served ``model_name`` come back as a
    :class:`~langroute.models.config.Completion`.

    Args:
        model: The chat model.
        name: The model's name for prices and the call cache (default: the name it
            reports to tracing).
    """

    def __init__(self, model: BaseChatModel, *, name: str | None = None) -> None:
        self.model = model
        self.name = name or model_name_of(model)

    def __repr__(self) -> str:
        return f"ChatCompletionModel({self.name!r})"

    async def acomplete(self, prompt: str) -> Completion:
        """Ask the chat model; the provider's errors propagate (the caller retries)."""
        message = await self.model.ainvoke([HumanMessage(prompt)])
        return Completion(
            text=message.text if isinstance(message.text, str) else str(message.content),
            usage=usage_of_message(message),
            model=served_model(self.name, message),
        )


def chat_model_from_spec(spec: ModelSpec, folder: Path | None = None) -> BaseChatModel:
    """The LangChain chat model a spec names: ``init_chat_model`` or a factory's model.

    An ``init_chat_model`` spec's options go to ``init_chat_model``; ``max_tokens``
    defaults to the spec's ``max_output_tokens`` (so the labelling budget's estimate
    holds). A factory (``"package.module:factory"``) is imported (also from ``folder``)
    and called with the options; it must return a ``BaseChatModel``.

    Raises:
        ModelsConfigError: ``langchain`` or the provider's package is missing, the
            provider refuses the options, or a factory fails or returns no chat model.
    """
    if spec.kind == "factory":
        factory = import_object(spec.spec, folder)
        try:
            made = factory(**spec.options)
        except TypeError as exc:
            raise ModelsConfigError(f"calling {spec.spec!r} failed: {exc}") from exc
        if not isinstance(made, BaseChatModel):
            raise ModelsConfigError(
                f"{spec.spec!r} returned {type(made).__name__}, not a LangChain chat model"
            )
        return made
    try:
        from langchain.chat_models import init_chat_model
    except ImportError as exc:
        raise ModelsConfigError(
            f"{spec.spec!r} needs init_chat_model from the langchain package: pip install langchain"
        ) from exc
    options: dict[str, Any] = {"max_tokens": spec.max_output_tokens, **spec.options}
    try:
        return init_chat_model(spec.spec, **options)
    except (ImportError, ValueError, TypeError) as exc:
        raise ModelsConfigError(f"init_chat_model({spec.spec!r}) failed: {exc}") from exc


def from_spec(spec: ModelSpec) -> ChatCompletionModel | None:
    """Build the model of an ``init_chat_model`` spec; ``None`` for other kinds of spec.

    Raises:
        ModelsConfigError: see :func:`chat_model_from_spec`.
    """
    if spec.kind != "chat":
        return None
    return ChatCompletionModel(chat_model_from_spec(spec))


def adapt(model: Any, spec: ModelSpec | None = None) -> ChatCompletionModel | None:
    """A chat model as a completion model; ``None`` for anything else."""
    if isinstance(model, BaseChatModel):
        return ChatCompletionModel(model)
    return None

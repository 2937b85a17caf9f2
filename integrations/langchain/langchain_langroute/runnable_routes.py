"""Routes whose target is not a chat model: an agent, a chain, a canned answer.

:class:`RunnableRoute` gives any ``Runnable`` the face of a chat model, so that
:class:`~langchain_langroute.chat_models.RoutingChatModel` routes to it like to any
other route: the same decision record on the answer, the same events, one ledger row.
A route given as a non-chat ``Runnable`` is wrapped automatically::

    from langchain.agents import create_agent

    llm = RoutingChatModel(
        router=router,
        models={"small": ChatOpenAI(model="gpt-4o-mini"),
                "large": create_agent(ChatOpenAI(model="gpt-4o"), tools=[search])},
    )

The runnable's own model calls are counted by a private usage handler (they are not
children of the routing model's run, which is a leaf): the row names the one model the
runnable called and carries its summed usage, so the ledger prices it as that model.
A runnable that called no model (a canned answer) gives a zero-usage row named after
the route target; one that called several models gives a row named after the runnable
with the summed usage, which the ledger leaves unpriced unless ``[prices]`` names it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
    UsageMetadataCallbackHandler,
)
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.runnables import Runnable
from pydantic import ConfigDict, Field

__all__ = ["RunnableRoute", "messages_input"]


def messages_input(messages: list[BaseMessage]) -> dict[str, Any]:
    """The input of a LangChain agent (``create_agent``): ``{"messages": messages}``."""
    return {"messages": messages}


def _answer_of(output: Any) -> AIMessage:
    """The answer a runnable returned: a message, an agent's state, text or anything else."""
    if isinstance(output, AIMessage):
        return output
    if isinstance(output, Mapping) and isinstance(output.get("messages"), list):
        for message in reversed(output["messages"]):
            if isinstance(message, AIMessage):
                return message
    if isinstance(output, BaseMessage):
        return AIMessage(content=output.content)
    return AIMessage(content=output if isinstance(output, str) else str(output))


class RunnableRoute(BaseChatModel):
    """A chat model that answers by running any ``Runnable`` (agent, chain, canned answer).

    Args:
        runnable: What answers the route.
        model_name: The name its rows take when it called no model or several.
        to_input: Messages -> the runnable's input (default: ``{"messages": messages}``,
            what ``create_agent`` expects).

    Example:
        >>> from langchain_core.runnables import RunnableLambda
        >>> canned = RunnableRoute(
        ...     runnable=RunnableLambda(lambda _: "We are open 9 to 5."), model_name="canned")
        >>> canned.invoke("When are you open?").content
        'We are open 9 to 5.'
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    runnable: Runnable[Any, Any]
    model_name: str = "runnable"
    to_input: Callable[[list[BaseMessage]], Any] = Field(default=messages_input)

    @property
    def _llm_type(self) -> str:
        return "langroute-runnable-route"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "runnable": self.runnable.get_name()}

    def _result(self, output: Any, usage: UsageMetadataCallbackHandler) -> ChatResult:
        answer = _answer_of(output)
        used = usage.usage_metadata
        named = next(iter(used)) if len(used) == 1 else self.model_name
        total: dict[str, Any] = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
        cached = 0
        for counts in used.values():
            for key in ("input_tokens", "output_tokens", "total_tokens"):
                total[key] += int(counts.get(key) or 0)
            cached += int((counts.get("input_token_details") or {}).get("cache_read") or 0)
        if cached:
            total["input_token_details"] = {"cache_read": cached}
        message = AIMessage(
            content=answer.content,
            tool_calls=answer.tool_calls,
            usage_metadata=total,  # type: ignore[arg-type]
            response_metadata={"model_name": named, "runnable": self.runnable.get_name()},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        usage = UsageMetadataCallbackHandler()
        output = self.runnable.invoke(self.to_input(messages), {"callbacks": [usage]})
        return self._result(output, usage)

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        usage = UsageMetadataCallbackHandler()
        output = await self.runnable.ainvoke(self.to_input(messages), {"callbacks": [usage]})
        return self._result(output, usage)


def as_route_model(route: str, value: Any) -> Any:
    """A route's target as a chat model (a non-chat ``Runnable``: a :class:`RunnableRoute`)."""
    if isinstance(value, Runnable) and not isinstance(value, BaseChatModel):
        return RunnableRoute(runnable=value, model_name=value.get_name() or route)
    return value

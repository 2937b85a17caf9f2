"""QueryExtractor: finding the user's question in what LlamaIndex hands an LLM."""

from __future__ import annotations

import pytest
from llama_index.core.llms import ChatMessage
from llama_index.core.prompts import ChatPromptTemplate, PromptTemplate
from llama_index.core.prompts.default_prompt_selectors import DEFAULT_TEXT_QA_PROMPT_SEL
from llama_index.llms.langroute import QueryExtractor, QueryExtractorProtocol


@pytest.fixture
def extractor() -> QueryExtractor:
    return QueryExtractor()


def test_query_str_from_call_arguments(extractor):
    template = PromptTemplate("{context_str}\n{query_str}")
    assert extractor.from_prompt(template, {"context_str": "ctx", "query_str": "Why?"}) == "Why?"


def test_query_str_bound_by_partial_format_in_the_default_selector_template(extractor):
    # what the response synthesizers pass to predict()
    bound = DEFAULT_TEXT_QA_PROMPT_SEL.partial_format(query_str="When was it founded?")
    assert extractor.from_prompt(bound, {"context_str": "lots of context"}) == (
        "When was it founded?"
    )


def test_question_key_of_the_condense_prompts(extractor):
    template = PromptTemplate("{chat_history}\nFollow up: {question}")
    assert extractor.from_prompt(template, {"chat_history": "...", "question": "And Rome?"}) == (
        "And Rome?"
    )


def test_template_without_a_question_routes_on_the_formatted_prompt(extractor):
    template = PromptTemplate("Write a haiku about {topic}.")
    assert extractor.from_prompt(template, {"topic": "cats"}) == "Write a haiku about cats."


def test_chat_template_without_a_question_routes_on_its_last_user_message(extractor):
    template = ChatPromptTemplate(
        message_templates=[
            ChatMessage(role="system", content="Extract {kind}."),
            ChatMessage(role="user", content="Invoice text: {text}"),
        ]
    )
    assert extractor.from_prompt(template, {"kind": "totals", "text": "$12"}) == (
        "Invoice text: $12"
    )


def test_last_user_turn_skipping_observations(extractor):
    messages = [
        ChatMessage(role="system", content="tools..."),
        ChatMessage(role="user", content="What is 6 times 7?"),
        ChatMessage(role="assistant", content="Thought: multiply"),
        ChatMessage(role="user", content="Observation: 42"),
    ]
    assert extractor.from_messages(messages) == "What is 6 times 7?"


def test_several_user_turns():
    messages = [
        ChatMessage(role="user", content="Translate 'cat' into German."),
        ChatMessage(role="assistant", content="Katze"),
        ChatMessage(role="user", content="and into French?"),
    ]
    assert QueryExtractor(user_turns=2).from_messages(messages) == (
        "Translate 'cat' into German.\nand into French?"
    )


def test_no_user_message_gives_nothing(extractor):
    assert extractor.from_messages([ChatMessage(role="system", content="x")]) is None
    assert extractor.from_messages([ChatMessage(role="user", content="   ")]) is None


def test_completion_condense_prompt_gives_the_follow_up(extractor):
    prompt = (
        "Chat History:\nuser: hi\nassistant: hello\n"
        "  Follow Up Input: What about the warranty?\n  Standalone question:"
    )
    assert extractor.from_completion(prompt) == "What about the warranty?"
    assert extractor.from_completion("Plain question?") == "Plain question?"


def test_custom_completion_patterns():
    extractor = QueryExtractor(completion_patterns=[r"Q: (.+)$"])
    assert extractor.from_completion("Context...\nQ: Is it safe?") == "Is it safe?"


def test_text_is_clipped():
    assert QueryExtractor(max_chars=5).from_completion("abcdefgh") == "abcde"


@pytest.mark.parametrize("kwargs", [{"user_turns": 0}, {"max_chars": 0}])
def test_invalid_settings(kwargs):
    with pytest.raises(ValueError):
        QueryExtractor(**kwargs)


def test_it_satisfies_the_protocol(extractor):
    assert isinstance(extractor, QueryExtractorProtocol)

"""Conversation-aware routing: which turns the router sees, and sessions that hold a route.

A follow-up such as ``"yes, do that"`` or ``"and now in Rust?"`` says little on its own.
:class:`ConversationContext` decides what the router embeds for a conversation:

* ``current_only`` (the default): the current user turn alone;
* ``window``: the current user turn and up to ``window`` earlier user turns, mixed in
  embedding space (a weighted mean of their normalised vectors, the turn ``i`` steps back
  weighted ``decay ** i``);
* ``window_text``: the same turns joined into one text.

Only user turns count: system prompts, assistant replies, assistant tool calls and tool
results never do, so in a tool-calling agent loop every model call of one run is routed
on the user's request.

:class:`SessionTracker` keeps one route per conversation: a later turn never gets a
cheaper route than an earlier one (``sticky``) unless it left the topic (``topic_shift``:
low similarity to the topic's earlier user turns, and long enough to stand on its own);
a stronger route is always taken (``upgrade``). The decision's :attr:`session
<langroute.router.decision.RouteDecision.session>` says which applied. Sessions are bounded
(least recently used dropped beyond ``max_sessions``, idle ones after ``ttl_s``; each
remembers at most ``max_seen_turns`` turns, as 16-byte digests, so a session's memory
does not grow with its length) and thread-safe.

Messages are OpenAI chat format (``{"role": "user", "content": "..."}``) or
:class:`ChatTurn`; the integrations convert their own message types.

Example:
    >>> from langroute import Exemplar, ExemplarRouter
    >>> from langroute.embedders import HashingEmbedder
    >>> router = ExemplarRouter(
    ...     routes=["small", "large"],
    ...     exemplars=[
    ...         Exemplar(text="hello there", route="small"),
    ...         Exemplar(text="prove the theorem step by step", route="large"),
    ...     ],
    ...     embedder=HashingEmbedder(),
    ...     min_similarity=0.0,
    ... )
    >>> chat = [
    ...     {"role": "user", "content": "prove the theorem step by step"},
    ...     {"role": "assistant", "content": "Sure..."},
    ...     {"role": "user", "content": "hello there, yes"},
    ... ]
    >>> route_conversation(router, chat, ConversationContext(strategy="window")).context
    'window(3, decay 0.5)'
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from langroute.errors import RouterConfigError
from langroute.router.decision import RouteDecision, SessionAction, SessionInfo
from langroute.router.query_text import clean_query, has_visible_text

__all__ = [
    "DEFAULT_CONTEXT",
    "ROLES",
    "SCOPE_KEYS",
    "SESSION_KEYS",
    "ChatTurn",
    "ConversationContext",
    "ConversationRouting",
    "SessionTracker",
    "aroute_conversation",
    "derived_session_key",
    "parse_messages",
    "previous_session_key",
    "route_conversation",
    "route_conversations",
    "scoped_session_key",
    "session_key_from",
    "session_scope_from",
    "user_texts",
]

ROLES = ("system", "developer", "user", "assistant", "tool", "function")
"""Roles of OpenAI chat format; only ``user`` turns are routed on."""

SESSION_KEYS = ("session_id", "thread_id", "conversation_id")
"""Metadata keys a caller's session key is read from, first found wins."""

SCOPE_KEYS = ("api_key", "tenant_id", "tenant", "user_id")
"""Metadata keys a caller's identity is read from (sessions never cross it), first wins."""

ContextStrategy = Literal["current_only", "window", "window_text"]


class ChatTurn(BaseModel):
    """One message of a conversation, reduced to what routing needs: role and text."""

    model_config = ConfigDict(frozen=True)

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    text: str = ""


def _content_text(content: Any, where: str) -> str:
    """The text of an OpenAI ``content`` value: a string, or its text parts joined."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content.strip()
    if not isinstance(content, list):
        raise ValueError(f"{where}.content must be a string or a list of parts")
    parts = []
    for j, part in enumerate(content):
        if isinstance(part, str):
            parts.append(part)
        elif isinstance(part, Mapping):
            if part.get("type") in ("text", "input_text"):
                text = part.get("text")
                if not isinstance(text, str):
                    raise ValueError(f"{where}.content[{j}].text must be a string")
                parts.append(text)
        else:
            raise ValueError(f"{where}.content[{j}] must be an object or a string")
    return "\n".join(p.strip() for p in parts if p.strip())


def parse_messages(messages: Any) -> list[ChatTurn]:
    """Validate OpenAI chat-format messages (or :class:`ChatTurn` objects) into turns.

    Raises:
        ValueError: naming the message and field at fault (``messages[2].role ...``).

    Example:
        >>> parse_messages([{"role": "user", "content": [{"type": "text", "text": "hi"}]}])
        [ChatTurn(role='user', text='hi')]
    """
    if not isinstance(messages, Sequence) or isinstance(messages, (str, bytes)):
        raise ValueError("messages must be a list of {role, content} objects")
    if not messages:
        raise ValueError("messages is empty")
    turns = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if isinstance(message, ChatTurn):
            turns.append(message)
            continue
        if not isinstance(message, Mapping):
            raise ValueError(f"{where} must be an object with role and content")
        role = message.get("role")
        if role not in ROLES:
            raise ValueError(f"{where}.role must be one of {', '.join(ROLES)}; got {role!r}")
        turns.append(ChatTurn(role=role, text=_content_text(message.get("content"), where)))
    if not any(t.role == "user" and has_visible_text(t.text) for t in turns):
        raise ValueError("messages has no user turn with text")
    return turns


def user_texts(turns: Sequence[ChatTurn]) -> list[str]:
    """The user turns' texts, oldest first (empty or invisible ones left out)."""
    return [t.text for t in turns if t.role == "user" and has_visible_text(t.text)]


def scoped_session_key(key: str | None, scope: str | None) -> str | None:
    """A caller's own session key within its ``scope`` (an API key, a tenant).

    Two callers that name the same session (``"1"``) under different scopes never share it.

    Example:
        >>> scoped_session_key("thread-7", "key-a")
        'key-a/thread-7'
    """
    if key is None or scope is None:
        return key
    return f"{scope}/{key}"


def _first_value(names: Sequence[str], sources: Sequence[Mapping[str, Any] | None]) -> str | None:
    for source in sources:
        if not isinstance(source, Mapping):
            continue
        for name in names:
            value = source.get(name)
            if value not in (None, ""):
                return str(value)
    return None


def session_key_from(*sources: Mapping[str, Any] | None) -> str | None:
    """The first :data:`SESSION_KEYS` value found in ``sources`` (metadata, config), else None.

    Example:
        >>> session_key_from({"user": "x"}, {"thread_id": 42})
        '42'
    """
    return _first_value(SESSION_KEYS, sources)


def session_scope_from(*sources: Mapping[str, Any] | None) -> str | None:
    """The caller's identity: the first :data:`SCOPE_KEYS` value in ``sources``, else None.

    Example:
        >>> session_scope_from({"thread_id": "t1"}, {"tenant": "acme"})
        'acme'
    """
    return _first_value(SCOPE_KEYS, sources)


def _transcript_key(turns: Sequence[ChatTurn], users: int, scope: str | None) -> str:
    digest = hashlib.sha256((scope or "").encode("utf-8", "surrogatepass"))
    seen = 0
    for turn in turns:
        if seen == users:
            break  # the transcript through the ``users``-th user turn, not what follows it
        if turn.role not in ("user", "assistant") or not has_visible_text(turn.text):
            continue  # tool calls and results change nothing the router sees
        seen += turn.role == "user"
        digest.update(f"\x1e{turn.role}\x1f{turn.text}".encode("utf-8", "surrogatepass"))
    return "derived:" + digest.hexdigest()[:32]


def derived_session_key(turns: Sequence[ChatTurn], scope: str | None = None) -> str | None:
    """A session key for a caller that gives none: its transcript through this user turn.

    The key hashes every user and assistant text up to and including the current (last)
    user turn, with the caller's ``scope`` (an API key, a tenant). Two conversations get
    the same key only when their transcripts so far are identical, and a session's state
    is a function of the transcript: a derived key never joins two callers' different
    conversations (a key derived from the first user turn alone would). The next request
    of the conversation finds the session by :func:`previous_session_key`.

    Example:
        >>> one = [ChatTurn(role="user", text="hi")]
        >>> derived_session_key(one) == derived_session_key(one, scope="key-a")
        False
    """
    users = len(user_texts(turns))
    return _transcript_key(turns, users, scope) if users else None


def previous_session_key(turns: Sequence[ChatTurn], scope: str | None = None) -> str | None:
    """The derived key of the conversation's previous user turn (its earlier request).

    Example:
        >>> first = [ChatTurn(role="user", text="hi")]
        >>> later = [*first, ChatTurn(role="assistant", text="hello!"),
        ...          ChatTurn(role="user", text="and you?")]
        >>> previous_session_key(later) == derived_session_key(first)
        True
    """
    users = len(user_texts(turns))
    return _transcript_key(turns, users - 1, scope) if users > 1 else None


class ConversationContext(BaseModel):
    """What of a conversation the router routes on (see the module docstring).

    Example:
        >>> ConversationContext.parse("window_text:2").describe()
        'window_text(2)'
    """

    model_config = ConfigDict(frozen=True)

    strategy: ContextStrategy = "current_only"
    window: int = Field(default=3, ge=0, description="Earlier user turns kept (newest first).")
    decay: float = Field(
        default=0.5, gt=0.0, le=1.0, description="Weight factor per turn back (window)."
    )
    separator: str = Field(default="\n", description="Between turns (window_text).")

    @classmethod
    def parse(cls, spec: str) -> ConversationContext:
        """``current_only``, ``window``, ``window:N``, ``window:N:DECAY`` or ``window_text:N``.

        Raises:
            ValueError: an unknown strategy or a malformed number.
        """
        name, *numbers = spec.strip().split(":")
        if name not in ("current_only", "window", "window_text") or len(numbers) > 2:
            raise ValueError(
                f"unknown context {spec!r}: use current_only, window[:N[:DECAY]] or window_text[:N]"
            )
        options: dict[str, Any] = {"strategy": name}
        try:
            if numbers:
                options["window"] = int(numbers[0])
            if len(numbers) == 2:
                options["decay"] = float(numbers[1])
        except ValueError as exc:
            raise ValueError(f"context {spec!r}: {exc}") from exc
        return cls(**options)

    def describe(self) -> str:
        """A short name recorded on decisions, e.g. ``window(3, decay 0.5)``."""
        if self.strategy == "window":
            return f"window({self.window}, decay {self.decay:g})"
        if self.strategy == "window_text":
            return f"window_text({self.window})"
        return "current_only"

    def turns_routed(self, turns: Sequence[ChatTurn]) -> list[str]:
        """The user texts this strategy routes on, oldest first (the current one last)."""
        texts = user_texts(turns)
        if self.strategy == "current_only" or not texts:
            return texts[-1:]
        return texts[-(self.window + 1) :]

    def weights(self, count: int) -> list[float]:
        """Mixing weights of ``count`` turns, oldest first (the current turn weighs 1)."""
        return [self.decay ** (count - 1 - i) for i in range(count)]


DEFAULT_CONTEXT = ConversationContext(strategy="window", window=1)
"""The context the integrations route conversations with by default: the current user
turn mixed with the one before it (``window:1``). With sessions it scored best on the
bundled follow-up set (``benchmarks/conversations.py``; README, "Multi-turn chats")."""


@dataclass
class _Session:
    route: str
    vectors: list[np.ndarray]
    seen: OrderedDict[bytes, None] = field(default_factory=OrderedDict)
    """Digests of the latest turns (a re-sent turn is not a new one), oldest first."""
    touched: float = 0.0
    turn: int = 1

    def remember(self, turn_id: bytes, limit: int) -> None:
        self.seen[turn_id] = None
        self.seen.move_to_end(turn_id)
        while len(self.seen) > limit:
            self.seen.popitem(last=False)


def _turn_id(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class SessionTracker:
    """Per-conversation route memory: no downgrade within a topic; bounded and thread-safe.

    Args:
        topic_threshold: A turn whose highest cosine similarity to the topic's earlier
            user turns is below this (and that has at least ``min_topic_words`` words)
            starts a new topic, where any route is allowed again.
        min_topic_words: Shorter turns ("yes, do that", "make it shorter") are
            follow-ups whatever their similarity.
        max_sessions: Sessions kept; the least recently used one is dropped beyond.
        ttl_s: A session idle this long is forgotten.
        memory: Earlier user turns of a topic compared against.
        max_seen_turns: Turns a session remembers having seen (a client re-sending one
            of them does not count it as a new turn); older ones are forgotten.
        clock: Seconds, monotonic (tests pass their own).

    Example:
        >>> tracker = SessionTracker(max_sessions=2)
        >>> len(tracker)
        0
    """

    def __init__(
        self,
        *,
        topic_threshold: float = 0.3,
        min_topic_words: int = 6,
        max_sessions: int = 10_000,
        ttl_s: float = 3600.0,
        memory: int = 8,
        max_seen_turns: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_sessions < 1 or ttl_s <= 0 or memory < 1 or max_seen_turns < 1:
            raise RouterConfigError(
                "max_sessions, ttl_s, memory and max_seen_turns must be positive"
            )
        self.max_seen_turns = max_seen_turns
        self.topic_threshold = topic_threshold
        self.min_topic_words = min_topic_words
        self.max_sessions = max_sessions
        self.ttl_s = ttl_s
        self.memory = memory
        self._clock = clock
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def forget(self, key: str) -> None:
        """Drop one session (a conversation that ended)."""
        with self._lock:
            self._sessions.pop(key, None)

    def route_of(self, key: str) -> str | None:
        """The route a live session holds, or None."""
        with self._lock:
            session = self._live(key, self._clock())
            return session.route if session is not None else None

    def _live(self, key: str, now: float) -> _Session | None:
        session = self._sessions.get(key)
        if session is not None and now - session.touched > self.ttl_s:
            del self._sessions[key]
            return None
        return session

    def apply(
        self,
        key: str,
        decision: RouteDecision,
        routes: Sequence[str],
        turn_text: str,
        vector: np.ndarray,
        *,
        continues: str | None = None,
    ) -> RouteDecision:
        """The session's decision for this turn, given the router's own ``decision``.

        Args:
            key: The session key.
            decision: What the router chose for this turn.
            routes: The router's routes, cheapest first.
            turn_text: The current user turn.
            vector: Its normalised embedding (for topic similarity).
            continues: Another key the session may be found under when ``key`` has none:
                a derived key's previous turn (:func:`previous_session_key`). The session
                is then kept under ``key`` from this turn on.
        """
        rank = {route: i for i, route in enumerate(routes)}
        turn_id = _turn_id(turn_text)
        vector = np.asarray(vector, dtype=np.float32).reshape(-1)
        now = self._clock()
        with self._lock:
            session = self._live(key, now)
            if session is None and continues is not None:
                session = self._live(continues, now)
                if session is not None:  # a copy: the earlier turn's key keeps its state
                    session = replace(
                        session, vectors=list(session.vectors), seen=OrderedDict(session.seen)
                    )
            similarity: float | None = None
            previous = session.route if session is not None else None
            action: SessionAction
            route = decision.route
            if session is None:
                action = "new"
                session = _Session(route=route, vectors=[vector])
                session.remember(turn_id, self.max_seen_turns)
            else:
                similarity = float(max(float(v @ vector) for v in session.vectors))
                repeated = turn_id in session.seen
                if repeated:
                    session.seen.move_to_end(turn_id)
                shifted = (
                    not repeated
                    and similarity < self.topic_threshold
                    and len(turn_text.split()) >= self.min_topic_words
                )
                if shifted:
                    action = "topic_shift"
                    session = _Session(route=route, vectors=[vector])
                    session.remember(turn_id, self.max_seen_turns)
                else:
                    held = rank.get(session.route, -1)
                    if rank[route] > held:
                        action, session.route = "upgrade", route
                    elif rank[route] < held:
                        action, route = "sticky", session.route
                    else:
                        action = "kept"
                    if not repeated:
                        session.turn += 1
                        session.remember(turn_id, self.max_seen_turns)
                        session.vectors = [*session.vectors, vector][-self.memory :]
            session.touched = now
            self._sessions[key] = session
            self._sessions.move_to_end(key)
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
            info = SessionInfo(
                key=key,
                action=action,
                routed=decision.route,
                previous=previous,
                similarity=similarity,
                turn=session.turn,
            )
        return decision.model_copy(update={"route": route, "session": info})


def _as_turns(messages: Any) -> list[ChatTurn]:
    if isinstance(messages, Sequence) and all(isinstance(m, ChatTurn) for m in messages):
        return list(messages)
    return parse_messages(messages)


def _vectors(router: Any, texts: Sequence[str]) -> np.ndarray:
    embedder = getattr(router, "embedder", None)
    if embedder is None or not hasattr(router, "route_vectors"):
        raise RouterConfigError(
            f"{type(router).__name__} cannot route a conversation in embedding space or keep "
            "sessions (it needs .embedder and .route_vectors, as ExemplarRouter has); use "
            "ConversationContext(strategy='window_text') without sessions"
        )
    cleaned = [router.settings.prepare(clean_query(t))[0] for t in texts]
    vectors = np.asarray(embedder.embed_queries(cleaned), dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def _mixed(vectors: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    mixed = (np.asarray(weights, dtype=np.float32)[:, None] * vectors).sum(axis=0)
    norm = float(np.linalg.norm(mixed))
    return mixed / norm if norm > 0 else mixed


def route_conversation(
    router: Any,
    messages: Any,
    context: ConversationContext | None = None,
    *,
    sessions: SessionTracker | None = None,
    session_key: str | None = None,
    scope: str | None = None,
) -> RouteDecision:
    """Route a conversation with ``context``; apply ``sessions`` when given.

    Args:
        router: A router (``ExemplarRouter``; ``window`` and sessions need its
            ``embedder`` and ``route_vectors``).
        messages: OpenAI chat-format messages or :class:`ChatTurn` objects.
        context: The strategy (default ``current_only``).
        sessions: A :class:`SessionTracker` to keep routes stable within a session.
        session_key: The caller's key for the conversation; derived from the transcript
            when ``None`` (:func:`derived_session_key`).
        scope: The caller's identity (an API key, a tenant): session keys, given or
            derived, are kept apart per scope.

    Returns:
        The decision; ``context`` names the strategy, ``session`` what the session did.
        A conversation without user text gets the fallback decision (``no_query``).
    """
    context = context or ConversationContext()
    turns = _as_turns(messages) if messages else []
    texts = context.turns_routed(turns)
    if not texts:
        return router.fallback_decision("no_query")
    current = texts[-1]
    vectors: np.ndarray | None = None
    if context.strategy == "window":
        started = time.perf_counter()
        vectors = _vectors(router, texts)
        embed_ms = (time.perf_counter() - started) * 1000
        (decision,) = router.route_vectors(
            [current], _mixed(vectors, context.weights(len(texts)))[None, :]
        )
        # the router timed its search of the mixed vector; the turns' embedding is ours
        timings = {**decision.timings_ms}
        timings["embed"] = timings.get("embed", 0.0) + embed_ms
        # and the current turn's own vector, for the steps after routing (per-caller learning)
        decision = decision.with_query_vector(
            vectors[-1], elapsed_ms=decision.elapsed_ms + embed_ms, timings_ms=timings
        )
    elif context.strategy == "window_text":
        decision = router.route(context.separator.join(texts))
    else:
        decision = router.route(current)
    decision = decision.model_copy(update={"context": context.describe()})
    if sessions is None:
        return decision
    if session_key is not None:
        key, continues = scoped_session_key(session_key, scope), None
    else:
        key, continues = derived_session_key(turns, scope), previous_session_key(turns, scope)
    if key is None:
        return decision
    if vectors is not None:
        current_vector = vectors[-1]
    elif context.strategy == "current_only" and decision.query_vector is not None:
        current_vector = decision.query_vector  # the router embedded the current turn
    else:
        current_vector = _vectors(router, [current])[0]
    return sessions.apply(
        key, decision, list(router.routes), current, current_vector, continues=continues
    )


async def aroute_conversation(
    router: Any,
    messages: Any,
    context: ConversationContext | None = None,
    *,
    sessions: SessionTracker | None = None,
    session_key: str | None = None,
    scope: str | None = None,
) -> RouteDecision:
    """Async :func:`route_conversation` (runs in a worker thread; the loop is not blocked)."""
    return await asyncio.to_thread(
        route_conversation,
        router,
        messages,
        context,
        sessions=sessions,
        session_key=session_key,
        scope=scope,
    )


def route_conversations(
    router: Any, conversations: Sequence[Any], context: ConversationContext | None = None
) -> list[RouteDecision]:
    """Route many conversations at once (evaluation): one embedding batch, one search.

    Each conversation is routed on its own (no sessions); see :func:`route_conversation`.

    Raises:
        ValueError: a conversation without a user turn (naming its position).
    """
    context = context or ConversationContext()
    plans = []
    for i, messages in enumerate(conversations):
        texts = context.turns_routed(_as_turns(messages))
        if not texts:
            raise ValueError(f"conversation {i} has no user turn with text")
        plans.append(texts)
    name = context.describe()
    if context.strategy == "window":
        flat = [t for texts in plans for t in texts]
        vectors = _vectors(router, flat)
        mixed, at = [], 0
        for texts in plans:
            mixed.append(_mixed(vectors[at : at + len(texts)], context.weights(len(texts))))
            at += len(texts)
        decisions = router.route_vectors([texts[-1] for texts in plans], np.stack(mixed))
    elif context.strategy == "window_text":
        decisions = router.route_batch([context.separator.join(texts) for texts in plans])
    else:
        decisions = router.route_batch([texts[-1] for texts in plans])
    return [d.model_copy(update={"context": name}) for d in decisions]


class ConversationRouting:
    """A router with its conversation strategy and sessions: what the integrations hold.

    Args:
        router: The router.
        context: The strategy (``None``: ``current_only``).
        sessions: ``True`` for a default :class:`SessionTracker`, a tracker of your own,
            or ``False`` for none.

    Example:
        >>> routing = ConversationRouting(router, sessions=True)  # doctest: +SKIP
        >>> chat = [{"role": "user", "content": "hi"}]  # doctest: +SKIP
        >>> routing.route(chat, session_key="s1").session.action  # doctest: +SKIP
        'new'
    """

    def __init__(
        self,
        router: Any,
        context: ConversationContext | None = None,
        sessions: bool | SessionTracker = False,
    ) -> None:
        self.router = router
        self.context = context or ConversationContext()
        if isinstance(sessions, SessionTracker):
            self.sessions: SessionTracker | None = sessions
        elif sessions is True:
            self.sessions = SessionTracker()
        elif sessions is False or sessions is None:
            self.sessions = None
        else:
            raise RouterConfigError(
                f"sessions must be True, False or a SessionTracker; got {type(sessions).__name__}"
            )

    def route(
        self, messages: Any, session_key: str | None = None, scope: str | None = None
    ) -> RouteDecision:
        """:func:`route_conversation` with this strategy and these sessions."""
        return route_conversation(
            self.router,
            messages,
            self.context,
            sessions=self.sessions,
            session_key=session_key,
            scope=scope,
        )

    async def aroute(
        self, messages: Any, session_key: str | None = None, scope: str | None = None
    ) -> RouteDecision:
        """Async :meth:`route`."""
        return await aroute_conversation(
            self.router,
            messages,
            self.context,
            sessions=self.sessions,
            session_key=session_key,
            scope=scope,
        )

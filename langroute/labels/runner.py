"""A labelling run: ask every route's model each query, grade the answers, write exemplars.

:func:`alabel` (and its sync twin :func:`label`) reads unlabelled queries, calls each
route's model through a :class:`~langroute.labels.calls.ModelCaller` (cached,
budgeted, retried, concurrent, in the ledger), grades the answers with a
:class:`~langroute.labels.graders.Grader` and appends one scored exemplar per query to
the output, fsync'd, as soon as the query is done. The output is read back on start:
re-running the same command skips every query already written, and the call journal
beside it means no call that finished is paid again. A crash loses at most the calls
in flight.

Files of a run on ``scored.jsonl``: ``scored.calls.jsonl`` (the call journal: answers,
usage, cost), ``scored.ledger.jsonl`` (the cost ledger, unless another is given) and,
when asked for, an answers file (one line per query: the answer and grade of each
route).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from langroute.costs import CostLedger, ModelPrice, Pricer
from langroute.errors import BudgetExhausted, ExemplarFormatError, GradingError, LabellingError
from langroute.files.journal import Journal
from langroute.labels.calls import (
    DEFAULT_CALL_TIMEOUT_S,
    DEFAULT_MAX_ANSWER_CHARS,
    ModelCaller,
    default_paths,
)
from langroute.labels.graders import Grade, Grader, LabelQuery, grader_from_name
from langroute.models.config import (
    DEFAULT_MAX_OUTPUT_TOKENS,
    CompletionModel,
    ModelsConfig,
    ModelSpec,
    adapt_model,
    load_models_config,
)
from langroute.router.exemplars import Exemplar, exemplars_to_jsonl, load_exemplar_rows

__all__ = ["FailedQuery", "LabelReport", "alabel", "label", "load_queries"]

REFERENCE_KEY = "reference"


class FailedQuery(BaseModel):
    """A query the run could not label (it is retried on the next run), and why."""

    model_config = ConfigDict(frozen=True)

    id: str
    line: int | None = None
    error: str


class LabelReport(BaseModel):
    """What a labelling run did.

    Attributes:
        output: The scored exemplars file.
        total: Queries in the input.
        labelled: Queries labelled by this run.
        skipped: Queries already in the output (from an earlier run).
        failed: Queries that failed (a provider error after retries, an ungradable
            answer); the next run tries them again.
        not_started: Queries left unlabelled because the budget stopped the run.
        stopped_by_budget: The run stopped before a call that could pass the budget.
        paid_calls / cache_hits / retries: Requests made, calls answered from the
            cache (no charge), retried requests.
        spent: USD charged by this run; ``spent_total`` over every run on the output.
        budget / budget_left: The budget and what is left of it (USD).
        overrun / overrun_reason: USD spent past the budget (over every run) and why:
            a model that ignored its output cap costs more than was reserved for it.
        cut_answers: Answers stored cut to ``max_answer_chars``.
        elapsed_s / queries_per_s: Wall time and labelling throughput of this run.
    """

    output: Path
    total: int
    labelled: int = 0
    skipped: int = 0
    failed: list[FailedQuery] = Field(default_factory=list)
    not_started: int = 0
    stopped_by_budget: bool = False
    paid_calls: int = 0
    cache_hits: int = 0
    retries: int = 0
    spent: float = 0.0
    spent_total: float = 0.0
    budget: float | None = None
    budget_left: float | None = None
    overrun: float = 0.0
    overrun_reason: str | None = None
    cut_answers: int = 0
    elapsed_s: float = 0.0
    grader: str
    grader_version: str

    @property
    def queries_per_s(self) -> float:
        """Queries labelled per second of this run."""
        return self.labelled / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def complete(self) -> bool:
        """Every query of the input is in the output."""
        return self.labelled + self.skipped == self.total

    def summary(self) -> str:
        """One paragraph for people: counts, spend, budget, throughput."""
        parts = [
            f"labelled {self.labelled} of {self.total} queries ({self.skipped} already done, "
            f"{len(self.failed)} failed, {self.not_started} not started)",
            f"{self.paid_calls} paid calls, {self.cache_hits} from the cache, "
            f"{self.retries} retries",
            f"spent ${self.spent:.4f} (${self.spent_total:.4f} in all runs)",
        ]
        if self.budget is not None and self.overrun > 0:
            parts.append(
                f"budget ${self.budget:.2f} overrun by ${self.overrun:.4f}: {self.overrun_reason}"
            )
        elif self.budget is not None:
            parts.append(f"budget ${self.budget:.2f}, ${self.budget_left or 0.0:.4f} left")
        if self.stopped_by_budget and self.overrun <= 0:
            parts.append("stopped before a call that could pass the budget")
        elif self.stopped_by_budget:
            parts.append("stopped")
        if self.cut_answers:
            parts.append(f"{self.cut_answers} answers too long, stored cut")
        parts.append(f"{self.queries_per_s:.1f} queries/s")
        return "; ".join(parts)


def load_queries(path: str | os.PathLike[str]) -> list[LabelQuery]:
    """Read a queries file (JSONL or CSV) to label.

    Columns: ``text`` (or ``prompt``, ``query``), optional ``reference``, ``id`` and
    ``metadata``; other columns join the metadata. The same text (or id) twice: the
    later row wins.

    Raises:
        ExemplarFormatError: naming file, line and field.
    """
    queries: dict[str, LabelQuery] = {}
    for line, row in load_exemplar_rows(path):
        metadata = dict(row.metadata)
        reference = metadata.pop(REFERENCE_KEY, None)
        if reference == "":
            reference = None
        # the same text (or id) twice: the later row wins, as in exemplar files
        queries[row.id] = LabelQuery(
            id=row.id, text=row.text, reference=reference, metadata=metadata, line=line
        )
    return list(queries.values())


def _as_queries(queries: str | os.PathLike[str] | Sequence[Any]) -> tuple[list[LabelQuery], str]:
    if isinstance(queries, (str, os.PathLike)):
        return load_queries(queries), str(queries)
    out = []
    for index, item in enumerate(queries):
        if isinstance(item, LabelQuery):
            out.append(item)
        elif isinstance(item, str):
            ex = Exemplar(text=item)
            out.append(LabelQuery(id=ex.id, text=ex.text))
        elif isinstance(item, Exemplar):
            metadata = dict(item.metadata)
            reference = metadata.pop(REFERENCE_KEY, None)
            out.append(
                LabelQuery(id=item.id, text=item.text, reference=reference, metadata=metadata)
            )
        else:
            raise TypeError(f"query {index}: expected a string, Exemplar or LabelQuery")
    seen: dict[str, LabelQuery] = {}
    for query in out:
        seen[query.id] = query  # the later one wins, as in exemplar files
    return list(seen.values()), "the queries"


class _Route(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    name: str
    model: Any
    key: str
    max_output_tokens: int
    price_as: str | None = None


def _routes_from(
    models: str | os.PathLike[str] | ModelsConfig | Mapping[str, Any],
) -> tuple[list[_Route], _Route | None, dict[str, Any]]:
    """The routes (cheapest first), the judge, and price overrides of ``models``."""
    if isinstance(models, (str, os.PathLike)):
        models = load_models_config(models)
    if isinstance(models, ModelsConfig):
        routes = [_from_spec(models.spec(name), models.build(name)) for name in models.route_names]
        judge = _from_spec(models.judge, models.build("judge")) if models.judge else None
        return routes, judge, dict(models.prices)
    routes = []
    for name, model in models.items():
        adapted: CompletionModel = adapt_model(model)
        routes.append(
            _Route(
                name=name,
                model=adapted,
                key=adapted.name,
                max_output_tokens=DEFAULT_MAX_OUTPUT_TOKENS,
            )
        )
    return routes, None, {}


def _from_spec(spec: ModelSpec, model: CompletionModel) -> _Route:
    return _Route(
        name=spec.route,
        model=model,
        key=spec.key,
        max_output_tokens=spec.output_token_cap,
        price_as=spec.price_as,
    )


def _read_done(output: Journal) -> set[str]:
    done: set[str] = set()
    for number, row in enumerate(output.read(), start=1):
        try:
            ex = Exemplar.model_validate(row)
        except ValueError as exc:
            raise ExemplarFormatError(
                f"not a scored exemplar ({exc.errors()[0]['msg']}); move the file away or fix it",
                path=output.path,
                line=number,
            ) from exc
        done.add(ex.id)
    return done


@contextlib.contextmanager
def _progress(show: bool, total: int, budget: float | None) -> Iterator[Any]:
    if not show:
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [
        TextColumn("labelling"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[spend]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=Console(stderr=True)) as progress:
        yield progress


def _spend_text(caller: ModelCaller) -> str:
    text = f"${caller.total_spent:.4f}"
    if caller.budget is not None:
        text += f" of ${caller.budget:.2f}"
    return text


async def alabel(
    queries: str | os.PathLike[str] | Sequence[Any],
    models: str | os.PathLike[str] | ModelsConfig | Mapping[str, Any],
    output: str | os.PathLike[str],
    *,
    grader: Grader | str = "normalised",
    judge: CompletionModel | None = None,
    budget: float | None = None,
    concurrency: int = 16,
    answers: str | os.PathLike[str] | None = None,
    ledger: CostLedger | str | os.PathLike[str] | None = None,
    prices: Mapping[str, ModelPrice | Mapping[str, Any]] | None = None,
    max_retries: int = 6,
    retry_delay: float = 1.0,
    timeout: float | None = DEFAULT_CALL_TIMEOUT_S,
    max_answer_chars: int = DEFAULT_MAX_ANSWER_CHARS,
    show_progress: bool = False,
) -> LabelReport:
    """Label queries with every route's model and a grader; append scored exemplars.

    Args:
        queries: A JSONL/CSV file (``text``, optional ``reference``, ``id``,
            ``metadata``) or a list of strings, exemplars or :class:`LabelQuery`.
        models: A models file (see :mod:`langroute.models.config`), a parsed one, or a
            mapping route -> model (a :class:`~langroute.models.config.CompletionModel`
            or a framework model an installed adapter accepts), cheapest first. Calls
            are cached by the model's ``name`` and the prompt.
        output: The scored exemplars file (JSONL). Queries already in it are skipped.
        grader: A :class:`~langroute.labels.graders.Grader` or a name of
            :func:`~langroute.labels.graders.grader_from_name`.
        judge: The judge grader's model (default: the models file's ``[judge]``).
        budget: USD the output may cost over all its runs; the run stops before a call
            that could pass it, reserving each call's full output cap. A model that
            ignores its cap can still pass it: the run stops at once and the report
            says by how much (``overrun``) and why.
        concurrency: Model requests in flight at most.
        answers: Also write every route's answer and grade, one line per query.
        ledger: A ledger or its path (default: ``<output stem>.ledger.jsonl``).
        prices: Price overrides (model name -> USD per million tokens), beside the
            models file's ``[prices]`` and genai-prices.
        max_retries: Retries of a rate-limited (or timed-out, 5xx) request.
        retry_delay: The first backoff in seconds.
        timeout: Seconds one model request may take before it is abandoned and retried
            (``None``: no limit).
        max_answer_chars: Answers are stored and graded cut to this many characters.
        show_progress: A progress bar (on stderr) with spend and ETA.

    Returns:
        A :class:`LabelReport`.

    Raises:
        LabellingError: the run cannot start (no reference for a reference grader, no
            price with a budget, no judge for the judge grader, a damaged call journal).
        ExemplarFormatError: the queries or the output file is malformed (file, line).
        ModelsConfigError: the models file is malformed or a model cannot be built.
    """
    started = time.perf_counter()
    output = Path(output)
    items, source = _as_queries(queries)
    routes, config_judge, config_prices = _routes_from(models)
    if isinstance(grader, str):
        grader = grader_from_name(grader)
    judge_route = config_judge
    if judge is not None:
        adapted = adapt_model(judge)
        judge_route = _Route(
            name="judge",
            model=adapted,
            key=adapted.name,
            max_output_tokens=DEFAULT_MAX_OUTPUT_TOKENS,
        )
    if grader.needs_judge and judge_route is None:
        raise LabellingError(
            f"the {grader.name} grader needs a judge model: a [judge] table in the models file"
        )
    if grader.needs_reference:
        missing = [q for q in items if q.reference is None]
        if missing:
            first = missing[0]
            where = f"line {first.line}" if first.line is not None else f"id {first.id!r}"
            raise LabellingError(
                f"{source}: {len(missing)} of {len(items)} queries have no 'reference' (first: "
                f"{where}); the {grader.name} grader needs one for each, or use --grader judge"
            )
    calls_path, ledger_path = default_paths(output)
    pricer = Pricer({**config_prices, **(prices or {})})
    own_ledger = not isinstance(ledger, CostLedger)
    the_ledger = (
        ledger
        if isinstance(ledger, CostLedger)
        # written inline: a record queued for a background writer dies with a killed run
        else CostLedger(ledger or ledger_path, pricer=pricer, background=False)
    )
    out_journal = Journal(output)
    call_journal = Journal(calls_path)
    answers_journal = Journal(answers) if answers is not None else None
    try:
        done = _read_done(out_journal)
        answered = {row.get("id") for row in answers_journal.read()} if answers_journal else set()
        caller = ModelCaller(
            journal=call_journal,
            ledger=the_ledger,
            pricer=pricer,
            budget=budget,
            concurrency=concurrency,
            max_retries=max_retries,
            retry_delay=retry_delay,
            timeout=timeout,
            max_answer_chars=max_answer_chars,
        )
        everyone = [*routes, *([judge_route] if judge_route and grader.needs_judge else [])]
        caller.check_priced({r.name: r.price_as or r.model.name for r in everyone})
        todo = [q for q in items if q.id not in done]
        report = LabelReport(
            output=output,
            total=len(items),
            skipped=len(items) - len(todo),
            grader=grader.name,
            grader_version=grader.version,
            budget=budget,
        )
        run = _Run(
            routes=routes,
            judge=judge_route,
            grader=grader,
            caller=caller,
            out=out_journal,
            answers=answers_journal,
            answered=answered,
            report=report,
        )
        with _progress(show_progress, len(items), budget) as progress:
            task = None
            if progress is not None:
                task = progress.add_task(
                    "labelling",
                    total=len(items),
                    completed=report.skipped,
                    spend=_spend_text(caller),
                )
            await run.all(todo, concurrency, progress, task)
        report.paid_calls = caller.paid_calls
        report.cache_hits = caller.cache_hits
        report.retries = caller.retries
        report.spent = caller.spent
        report.spent_total = caller.total_spent
        report.budget_left = caller.budget_left
        report.overrun = caller.overrun
        report.overrun_reason = caller.overrun_reason()
        report.cut_answers = run.cut_answers
        report.elapsed_s = time.perf_counter() - started
        return report
    finally:
        for journal in (out_journal, call_journal, answers_journal):
            if journal is not None:
                journal.close()
        if own_ledger:
            the_ledger.close()


class _Run:
    """The queries of one run, worked on by ``concurrency`` workers."""

    def __init__(
        self,
        *,
        routes: list[_Route],
        judge: _Route | None,
        grader: Grader,
        caller: ModelCaller,
        out: Journal,
        answers: Journal | None,
        answered: set[Any],
        report: LabelReport,
    ) -> None:
        self.routes = routes
        self.judge = judge
        self.grader = grader
        self.caller = caller
        self.out = out
        self.answers = answers
        self.answered = answered
        self.report = report
        self.stop = False
        self.cut_answers = 0

    async def all(self, todo: list[LabelQuery], concurrency: int, progress: Any, task: Any) -> None:
        queue: asyncio.Queue[LabelQuery] = asyncio.Queue()
        for query in todo:
            queue.put_nowait(query)

        async def worker() -> None:
            while not self.stop:
                try:
                    query = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                finished = await self.one(query)
                if progress is not None and (finished or not self.stop):
                    progress.update(task, advance=1, spend=_spend_text(self.caller))

        await asyncio.gather(*(worker() for _ in range(min(concurrency, max(1, len(todo))))))
        self.report.not_started = queue.qsize() + self.report.not_started

    async def _ask_judge(self, query: LabelQuery, prompt: str) -> str:
        assert self.judge is not None
        judged = await self.caller.call(
            "judge",
            self.judge.model,
            prompt,
            model_key=self.judge.key,
            max_output_tokens=self.judge.max_output_tokens,
            price_as=self.judge.price_as,
            query_id=query.id,
            role="judge",
        )
        return judged.text

    async def one(self, query: LabelQuery) -> bool:
        """Label one query; True when it was written to the output."""
        calls = [
            self.caller.call(
                route.name,
                route.model,
                query.text,
                model_key=route.key,
                max_output_tokens=route.max_output_tokens,
                price_as=route.price_as,
                query_id=query.id,
            )
            for route in self.routes
        ]
        results = await asyncio.gather(*calls, return_exceptions=True)
        try:
            for result in results:
                if isinstance(result, BaseException):
                    raise result
            texts = {route.name: result.text for route, result in zip(self.routes, results)}
            self.cut_answers += sum(1 for result in results if result.cut_chars)

            async def ask(prompt: str) -> str:
                return await self._ask_judge(query, prompt)

            grades = await self.grader.grade(query, texts, ask if self.judge else None)
            missing = [route.name for route in self.routes if route.name not in grades]
            if missing:
                raise GradingError(f"the grader gave no grade for {missing}")
        except BudgetExhausted:
            self.stop = True
            self.report.stopped_by_budget = True
            self.report.not_started += 1
            return False
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except Exception as exc:  # one query fails, the others go on
            from langroute.dispatch.routed_call import error_text

            self.report.failed.append(
                FailedQuery(id=query.id, line=query.line, error=error_text(exc))
            )
            return False
        await self._write(query, texts, grades)
        self.report.labelled += 1
        return True

    async def _write(
        self, query: LabelQuery, texts: dict[str, str], grades: dict[str, Grade]
    ) -> None:
        if self.answers is not None and query.id not in self.answered:
            self.answered.add(query.id)
            await self.answers.aappend(
                {
                    "id": query.id,
                    "text": query.text,
                    "answers": texts,
                    "grades": {name: grade.model_dump() for name, grade in grades.items()},
                }
            )
        metadata = dict(query.metadata)
        if query.reference is not None:
            metadata[REFERENCE_KEY] = query.reference
        metadata["grader"] = self.grader.name
        metadata["grader_version"] = self.grader.version
        exemplar = Exemplar(
            text=query.text,
            id=query.id,
            scores={route.name: grades[route.name].score for route in self.routes},
            metadata=metadata,
        )
        await self.out.aappend_line(exemplars_to_jsonl([exemplar]).rstrip("\n"))


def label(
    queries: str | os.PathLike[str] | Sequence[Any],
    models: str | os.PathLike[str] | ModelsConfig | Mapping[str, Any],
    output: str | os.PathLike[str],
    **options: Any,
) -> LabelReport:
    """Sync :func:`alabel` (same arguments); not from inside a running event loop.

    Example:
        >>> from langroute.models.scripted import ScriptedCompletionModel
        >>> models = {
        ...     "small": ScriptedCompletionModel("gpt-4o-mini", reply="4"),
        ...     "large": ScriptedCompletionModel("gpt-4o", reply="The answer is 4."),
        ... }
        >>> queries = [LabelQuery(id="q1", text="What is 2 + 2?", reference="4")]
        >>> report = label(queries, models, "scored.jsonl", grader="exact")
        >>> report.labelled, open("scored.jsonl").read().count('"scores"')
        (1, 1)
        >>> from langroute.router.exemplars import load_exemplars
        >>> load_exemplars("scored.jsonl")[0].scores
        {'small': 1.0, 'large': 0.0}
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(alabel(queries, models, output, **options))
    raise RuntimeError("label() cannot run inside an event loop: await alabel(...) instead")

"""Budget spend and reservations shared by replicas on a real Postgres."""

from __future__ import annotations

import contextlib
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from langroute.costs import LedgerRecord
from langroute.errors import DatabaseUnavailableError, SpendWriteWarning
from langroute.postgres.spend import PostgresSpend
from langroute.serving.keys import ApiKey, ApiKeys

KEY = ApiKey(name="team-a", sha256="0" * 64, budget=1.0, period="day")
BAD_URL = "postgresql://nobody@/nowhere?host=/nonexistent-socket-dir"


@pytest.fixture
def replicas(postgres_url):
    """Two spends on one database, as two replicas would hold them."""
    made = [PostgresSpend(postgres_url), PostgresSpend(postgres_url)]
    yield made
    for spend in made:
        spend.close()


def test_concurrent_reservations_from_two_replicas_never_hold_past_the_budget(replicas):
    # 40 calls, each holding $0.3 of a $1 budget, from 8 threads on two replicas: at most
    # 4 may be admitted (0 + 0.3 + 0.6 + 0.9 < 1) while none has ended
    admitted: list[tuple[PostgresSpend, datetime]] = []
    lock = threading.Lock()

    def call(spend: PostgresSpend) -> None:
        for _ in range(5):
            start = spend.reserve(KEY, 0.3)
            if start is not None:
                with lock:
                    admitted.append((spend, start))

    threads = [threading.Thread(target=call, args=(replicas[i % 2],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(admitted) == 4
    assert {id(spend) for spend, _ in admitted} <= {id(s) for s in replicas}
    assert replicas[0].reserved(KEY) == pytest.approx(1.2)
    assert replicas[1].reserved(KEY) == pytest.approx(1.2)  # each sees all holds


def test_a_release_settles_to_the_real_cost_seen_by_every_replica(replicas):
    one, two = replicas
    start = one.reserve(KEY, 0.9)
    assert start is not None
    assert two.reserve(KEY, 0.2) is not None  # 0.9 held < 1.0: admitted
    assert two.reserve(KEY, 0.2) is None  # 0.9 + 0.2 held >= 1.0: refused
    one.add(KEY, 0.05)  # the call cost far less than its worst case
    one.release(KEY, 0.9, start)
    one.flush()  # (its writer would write them a moment later)
    assert two.spent(KEY) == pytest.approx(0.05)
    assert two.reserved(KEY) == pytest.approx(0.2)
    assert two.reserve(KEY, 0.2) is not None  # room again
    one.release(KEY, 0.9, start)  # a second release of the same hold changes nothing
    assert one.reserved(KEY) == pytest.approx(0.4)


def test_a_key_that_spent_its_budget_is_refused_on_every_replica(replicas):
    one, two = replicas
    one.add(KEY, 1.0)
    one.flush()
    assert two.reserve(KEY, 0.000001) is None
    zero = KEY.model_copy(update={"name": "free", "budget": 0.0})
    assert one.reserve(zero, 0.0) is None  # a $0 budget admits nothing


def test_the_holds_of_a_replica_that_died_expire(postgres_url):
    dead = PostgresSpend(postgres_url, hold_ttl=600)
    assert dead.reserve(KEY, 1.0) is not None
    dead.close()  # the replica is gone without releasing
    alive = PostgresSpend(postgres_url)
    try:
        assert alive.reserve(KEY, 0.1) is None  # the hold still counts...
        with psycopg.connect(postgres_url, autocommit=True) as conn:  # ...until it expires
            conn.execute("UPDATE langroute_reservations SET expires_at = now() - interval '1s'")
        assert alive.reserve(KEY, 0.1) is not None
        assert alive.reserved(KEY) == pytest.approx(0.1)
    finally:
        alive.close()


def test_load_starts_a_period_from_the_ledger_once_across_replicas(replicas):
    now = datetime.now(timezone.utc)
    keys = ApiKeys(keys=[KEY])
    rows = [
        LedgerRecord(route="small", model="m", cost=0.25, metadata={"api_key": "team-a"}),
        LedgerRecord(route="small", model="m", cost=0.5, metadata={"api_key": "team-a"}),
        LedgerRecord(route="small", model="m", cost=9.0, metadata={"api_key": "stranger"}),
        LedgerRecord(
            route="small",
            model="m",
            cost=7.0,
            metadata={"api_key": "team-a"},
            timestamp=now - timedelta(days=3),  # an earlier period
        ),
    ]
    one, two = replicas
    assert one.load(rows, keys) == 2
    assert two.load(rows, keys) == 0  # the period exists: no double count
    assert two.spent(KEY) == pytest.approx(0.75)


def test_an_unreachable_database_refuses_reservations_and_keeps_what_it_owes():
    spend = PostgresSpend(BAD_URL, timeout=1)
    try:
        with pytest.raises(DatabaseUnavailableError, match="nonexistent-socket-dir"):
            spend.reserve(KEY, 0.1)
        spend.add(KEY, 0.2)  # a call was made: its cost waits for the database
        assert spend.pending == 1
    finally:
        spend.close()  # cannot write it: kept, logged
    assert spend.pending == 1 and spend.dropped == 0


@contextlib.contextmanager
def connection_taken(spend: PostgresSpend) -> Iterator[list[bool]]:
    """Another thread holds ``spend``'s connection (as a writer stuck connecting would).

    Yields a list that gets ``True`` if the holder had to give the connection up
    because something waited for it (a guard against hanging, not a timing check).
    """
    held, done = threading.Event(), threading.Event()
    gave_up: list[bool] = []

    def hold() -> None:
        with spend._db.lock:
            held.set()
            gave_up.append(not done.wait(120))

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    try:
        yield gave_up
    finally:
        done.set()
        holder.join()


def wait_until(condition: Callable[[], bool]) -> bool:
    """Poll ``condition`` until it holds (a hang guard of 60 s, not a timing check)."""
    deadline = time.monotonic() + 60
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_settling_during_an_outage_never_waits_for_the_database(postgres_url):
    spend, other = PostgresSpend(postgres_url), PostgresSpend(postgres_url)
    try:
        start = spend.reserve(KEY, 0.4)
        assert start is not None
        spend._db.url = BAD_URL  # the database goes away...
        spend._db.close()
        with connection_taken(spend) as gave_up:
            spend.add(KEY, 0.1)  # the call's cost and the end of its hold...
            spend.release(KEY, 0.4, start)
            # ...returned while the connection was someone else's: they never tried it
            assert gave_up == []
            assert spend.pending == 2
        assert gave_up == [False]
        assert other.reserved(KEY) == pytest.approx(0.4)  # not written during the outage
        spend._db.url = postgres_url  # ...and comes back: the writer writes, in order
        assert wait_until(lambda: spend.pending == 0)
        assert other.spent(KEY) == pytest.approx(0.1)
        assert other.reserved(KEY) == 0
    finally:
        spend.close()
        other.close()


def test_costs_written_during_an_outage_count_before_the_next_reservation(postgres_url):
    spend = PostgresSpend(postgres_url)
    try:
        start = spend.reserve(KEY, 0.4)
        assert start is not None
        spend._db.url = BAD_URL  # the database goes away...
        spend.close()
        spend.add(KEY, 1.0)
        spend.release(KEY, 0.4, start)
        assert spend.pending == 2
        spend._db.url = postgres_url  # ...and comes back
        assert spend.reserve(KEY, 0.1) is None  # the outage's cost counted first
        assert spend.spent(KEY) == pytest.approx(1.0)
        assert spend.reserved(KEY) == 0
    finally:
        spend.close()


def test_close_writes_what_is_queued(postgres_url):
    spend, other = PostgresSpend(postgres_url), PostgresSpend(postgres_url)
    try:
        spend._db.url = BAD_URL
        spend.add(KEY, 0.25)
        spend.add(KEY, 0.5)
        spend.close()  # unreachable: the writer is stopped and the writes are kept
        assert spend._writer is None and spend.pending == 2
        spend._db.url = postgres_url
        spend.close()  # nothing but close writes them now
        assert spend.pending == 0
        assert other.spent(KEY) == pytest.approx(0.75)
    finally:
        other.close()


def test_settled_calls_on_two_replicas_never_spend_past_the_budget_by_more_than_one_hold(
    replicas,
):
    # 8 threads on two replicas each run calls that hold $0.3 and cost $0.05: admitted
    # while spent + held < $1, so spend stops within one worst case of the budget
    costs: list[float] = []
    lock = threading.Lock()

    def calls(spend: PostgresSpend) -> None:
        for _ in range(10):
            start = spend.reserve(KEY, 0.3)
            if start is None:
                continue
            spend.add(KEY, 0.05)
            spend.release(KEY, 0.3, start)
            with lock:
                costs.append(0.05)

    threads = [threading.Thread(target=calls, args=(replicas[i % 2],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for spend in replicas:
        spend.close()  # every settlement written
    assert replicas[0].spent(KEY) == pytest.approx(sum(costs))
    assert 1.0 <= sum(costs) < 1.0 + 0.3
    assert replicas[1].reserved(KEY) == 0
    assert replicas[0].reserve(KEY, 0.3) is None


def test_a_full_queue_drops_new_writes_with_a_warning():
    spend = PostgresSpend(BAD_URL, timeout=1, max_pending=1)
    try:
        spend.add(KEY, 0.1)
        with pytest.warns(SpendWriteWarning, match="cost of key 'team-a' was dropped"):
            spend.add(KEY, 0.2)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # once per overflow
            spend.add(KEY, 0.3)
        assert spend.pending == 1 and spend.dropped == 2
    finally:
        spend.close()


def test_a_cost_that_is_not_a_number_is_refused():
    spend = PostgresSpend(BAD_URL, timeout=1)
    with pytest.raises(ValueError, match="finite"):
        spend.add(KEY, float("nan"))
    assert spend.pending == 0


def test_a_non_positive_hold_ttl_is_refused():
    with pytest.raises(ValueError, match="hold_ttl"):
        PostgresSpend("postgresql://x@/y", hold_ttl=0)


def test_a_non_positive_queue_bound_is_refused():
    with pytest.raises(ValueError, match="max_pending"):
        PostgresSpend("postgresql://x@/y", max_pending=0)

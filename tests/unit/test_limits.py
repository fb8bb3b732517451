"""Connection limits: the slots and the arrival-ordered queue in DynamoDB (moto in process, no
socket), and the gate CreateJob passes: a request takes a free slot, waits in line when none
is free or others wait, is handed the next slot that frees, and ends at its deadline."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from jobrelay.admission import Ended, Entered, Gate, waiter_key, with_request_id
from jobrelay.aws_limits import DynamoConnectionSlots
from jobrelay.connections import Connection, Limits
from jobrelay.errors import RequestWaiting
from jobrelay.ports import LedgerEntry, Waiter
from jobrelay.secrets import StaticKey
from moto import mock_aws

from tests.fakes import MemoryLedger
from tests.tables import create_limits_table

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)


class SentMessages:
    def __init__(self) -> None:
        self.sent: list[tuple[str, int]] = []

    def send(self, body: str, *, delay_seconds: int = 0) -> str:
        self.sent.append((body, delay_seconds))
        return str(len(self.sent))

    def bodies(self, *, delayed: bool) -> list[str]:
        return [json.loads(b)["request_id"] for b, d in self.sent if (d > 0) == delayed]


@pytest.fixture
def slots(monkeypatch: pytest.MonkeyPatch) -> Iterator[DynamoConnectionSlots]:
    for name, value in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        client = boto3.client("dynamodb")
        create_limits_table(client)
        yield DynamoConnectionSlots("limits", client)


def waiter(request_id: str, arrived: datetime, connection: str = "geo") -> Waiter:
    body = json.dumps({"request_id": request_id, "provider": "pixxel", "params": {}})
    return Waiter(connection, request_id, waiter_key(arrived, request_id), LATER, body)


def test_slots_up_to_the_cap_then_none(slots):
    assert slots.take("geo", "a", cap=2, deadline_at=LATER) is not None
    assert slots.take("geo", "b", cap=2, deadline_at=LATER) is not None
    assert slots.take("geo", "c", cap=2, deadline_at=LATER) is None
    # A holder asking again keeps its slot and the deadline it took it with.
    assert slots.take("geo", "a", cap=2, deadline_at=LATER + timedelta(days=1)) == LATER
    slots.release("geo", "a")
    assert slots.take("geo", "c", cap=2, deadline_at=LATER) is not None
    view = slots.view("geo")
    assert view is not None
    assert (view.cap, sorted(view.held), view.waiting) == (2, ["b", "c"], 0)


def test_a_free_slot_is_not_taken_past_those_waiting(slots):
    slots.take("geo", "a", cap=1, deadline_at=LATER)
    slots.wait(waiter("w1", NOW), cap=1)
    slots.release("geo", "a")
    assert slots.take("geo", "newcomer", cap=1, deadline_at=LATER) is None
    assert [w.request_id for w in slots.admit("geo")] == ["w1"]
    assert slots.take("geo", "w1", cap=1, deadline_at=LATER) == LATER


def test_waiting_twice_keeps_one_place_and_admission_follows_arrival(slots):
    slots.take("geo", "holder", cap=2, deadline_at=LATER)
    slots.take("geo", "holder-2", cap=2, deadline_at=LATER)
    for n, rid in enumerate(["w3", "w1", "w2"]):
        # Arrival times out of the order they are written in: the key orders them.
        arrived = NOW + timedelta(seconds={"w1": 1, "w2": 2, "w3": 3}[rid])
        slots.wait(waiter(rid, arrived), cap=2)
        assert n >= 0
    slots.wait(waiter("w1", NOW + timedelta(seconds=1)), cap=2)
    assert slots.view("geo").waiting == 3
    assert slots.position("geo", waiter_key(NOW + timedelta(seconds=2), "w2")) == 2
    assert slots.admit("geo") == []  # no free slot
    slots.release("geo", "holder")
    slots.release("geo", "holder-2")
    assert [w.request_id for w in slots.admit("geo")] == ["w1", "w2"]
    assert slots.view("geo").waiting == 1
    slots.release("geo", "w1")
    assert [w.request_id for w in slots.admit("geo")] == ["w3"]


def test_leaving_the_line(slots):
    slots.take("geo", "holder", cap=1, deadline_at=LATER)
    slots.wait(waiter("w1", NOW), cap=1)
    gone = slots.leave("geo", waiter_key(NOW, "w1"))
    assert gone is not None
    assert gone.request_id == "w1"
    assert slots.leave("geo", waiter_key(NOW, "w1")) is None
    assert slots.view("geo").waiting == 0


def test_creates_per_minute_are_counted_per_window(slots):
    assert slots.count_create("geo", 2, NOW) == 0
    assert slots.count_create("geo", 2, NOW + timedelta(seconds=10)) == 0
    assert slots.count_create("geo", 2, NOW + timedelta(seconds=15)) == pytest.approx(45)
    assert slots.count_create("geo", 2, NOW + timedelta(seconds=61)) == 0


def test_reclaim_frees_slots_of_holders_that_are_done_once_a_minute(slots):
    slots.take("geo", "done", cap=2, deadline_at=LATER)
    slots.take("geo", "busy", cap=2, deadline_at=LATER)
    assert slots.reclaim("geo", lambda rid, until: rid == "done", NOW) == ["done"]
    slots.take("geo", "done-too", cap=2, deadline_at=LATER)
    assert slots.reclaim("geo", lambda rid, until: True, NOW + timedelta(seconds=30)) == []
    reclaimed = slots.reclaim("geo", lambda rid, until: True, NOW + timedelta(seconds=61))
    assert sorted(reclaimed) == ["busy", "done-too"]


# ------------------------------------------------------------------ the gate
def connection(cap: int | None = 1, rate: int | None = None) -> Connection:
    return Connection(
        "geo", "pixxel", "https://api.pixxel.space", StaticKey("k"), Limits(cap, rate)
    )


def body(request_id: str | None = None) -> str:
    raw: dict[str, object] = {"provider": "pixxel", "params": {"workflow_id": "wf"}}
    if request_id:
        raw["request_id"] = request_id
    return json.dumps(raw)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def gate_of(slots: DynamoConnectionSlots) -> tuple[Gate, SentMessages, MemoryLedger, Clock]:
    queue, ledger, clock = SentMessages(), MemoryLedger(), Clock()
    return Gate(slots=slots, queue=queue, ledger=ledger, clock=clock), queue, ledger, clock


def entry(ledger: MemoryLedger, request_id: str) -> LedgerEntry:
    found = ledger.entry(request_id)
    assert found is not None
    return found


def enter(gate: Gate, request_id: str, *, deadline: int = 3600) -> Entered | Ended:
    return gate.enter(
        connection(), request_id, body(), deadline_seconds=deadline, cancelled=lambda: False
    )


def test_a_connection_without_limits_passes_with_no_call(slots):
    gate, _queue, _ledger, _ = gate_of(slots)
    entered = gate.enter(
        connection(None), "r", body(), deadline_seconds=60, cancelled=lambda: False
    )
    assert entered == Entered(deadline_at=None, holds_slot=False)
    assert slots.view("geo") is None


def test_the_gate_queues_a_request_over_the_cap_and_hands_it_the_freed_slot(slots):
    gate, queue, ledger, clock = gate_of(slots)
    first = enter(gate, "r1")
    assert isinstance(first, Entered)
    assert first.holds_slot
    with pytest.raises(RequestWaiting) as waiting:
        enter(gate, "r2")
    assert waiting.value.waiting_for == "slot"
    # Its timer: its own message (with its id), back before its deadline.
    ((timer, delay),) = queue.sent
    assert json.loads(timer)["request_id"] == "r2"
    assert delay == 900
    assert entry(ledger, "r2").waiting_for == "slot"
    gate.free("geo", "r1")
    assert queue.bodies(delayed=False) == ["r2"]  # woken at once
    clock.now += timedelta(seconds=5)
    admitted = enter(gate, "r2")
    # Its deadline counts from its arrival, not from its admission.
    assert admitted == Entered(deadline_at=NOW + timedelta(seconds=3600), holds_slot=True)


def test_a_request_still_waiting_at_its_deadline_ends_without_a_slot(slots):
    gate, queue, _ledger, clock = gate_of(slots)
    enter(gate, "r1")
    with pytest.raises(RequestWaiting):
        enter(gate, "r2", deadline=60)
    assert queue.sent[-1][1] == 60
    clock.now += timedelta(seconds=61)
    ended = enter(gate, "r2", deadline=60)
    assert ended == Ended("waited_out", "slot", NOW + timedelta(seconds=60))
    gate.leave("geo", "r2")
    assert slots.view("geo").waiting == 0


def test_a_cancel_read_after_queueing_ends_the_request(slots):
    gate, queue, _ledger, _ = gate_of(slots)
    enter(gate, "r1")
    ended = gate.enter(connection(), "r2", body(), deadline_seconds=600, cancelled=lambda: True)
    assert isinstance(ended, Ended)
    assert ended.why == "cancelled"
    assert slots.view("geo").waiting == 0
    assert queue.sent == []


def test_a_cancel_wakes_a_queued_request(slots):
    gate, queue, ledger, _ = gate_of(slots)
    enter(gate, "r1")
    with pytest.raises(RequestWaiting):
        enter(gate, "r2")
    assert gate.wake_cancelled(entry(ledger, "r2")) is True
    assert queue.bodies(delayed=False) == ["r2"]
    assert gate.wake_cancelled(entry(ledger, "r2")) is False  # already out of line


def test_over_the_creation_rate_the_request_comes_back_next_minute(slots):
    gate, queue, _ledger, clock = gate_of(slots)
    rated = connection(cap=None, rate=1)
    assert gate.enter(rated, "r1", body(), deadline_seconds=600, cancelled=lambda: False)
    clock.now += timedelta(seconds=20)
    with pytest.raises(RequestWaiting) as waiting:
        gate.enter(rated, "r2", body(), deadline_seconds=600, cancelled=lambda: False)
    assert waiting.value.waiting_for == "rate"
    ((_, delay),) = queue.sent
    assert 40 <= delay <= 45


def test_a_stale_holder_is_reclaimed_when_a_request_must_wait(slots):
    gate, _queue, ledger, _clock = gate_of(slots)
    enter(gate, "r1")
    ledger.record_outcome("r1", event_type="jobrelay.job.succeeded", event_id="e")
    # r1's outcome is out but its slot was never freed (a crash): r2 reclaims it and goes.
    entered = enter(gate, "r2")
    assert isinstance(entered, Entered)
    assert entered.holds_slot


def test_a_message_goes_back_with_its_request_id():
    assert json.loads(with_request_id(body(), "msg-1"))["request_id"] == "msg-1"
    same = body("r-1")
    assert with_request_id(same, "r-1") is same


def test_a_waiter_whose_request_went_on_without_its_turn_gets_no_slot(slots):
    gate, queue, ledger, _ = gate_of(slots)
    enter(gate, "r1")
    with pytest.raises(RequestWaiting):
        enter(gate, "r2")
    # r2 is still in line, but (its count having drifted) a later delivery found a slot and
    # made its job; r1 ends: the slot must not go to r2 a second time.
    ledger.record_created("r2", "job-2", {}, provider="pixxel")
    gate.free("geo", "r1")
    view = slots.view("geo")
    assert view is not None
    assert view.held == {}
    assert view.waiting == 0
    assert queue.bodies(delayed=False) == []

"""The store contract: records, statuses and the primitives every engine offers inside a transaction.

Domain rules (dedup, ordering between a sale and its reversal) are written once, in `bridge.outbox`,
over these primitives; an engine only has to make `Store.run` one atomic, durable transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class CallStatus(StrEnum):
    RECEIVED = "received"  # stored, not parsed yet
    PROCESSED = "processed"
    FAILED = "failed"  # the adapter could not parse it; kept for replay


class OpStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    SKIPPED = "skipped"
    DEAD = "dead"


class EventStatus(StrEnum):
    """An event's own status; events that became an operation show the operation's status instead."""

    QUEUED = "queued"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    SKIPPED = "skipped"


FINAL_OP_STATUSES = (OpStatus.DELIVERED, OpStatus.SKIPPED, OpStatus.DEAD)


class StoreError(Exception):
    """The store cannot do what was asked; the message says why, without the values involved."""


class UnstorableText(StoreError):
    """Text that one of the engines cannot hold: PostgreSQL refuses NUL, UTF-8 refuses lone surrogates.

    Both engines refuse it the same way, before the driver sees it, so a call carrying such a value
    fails alike on SQLite and on PostgreSQL instead of being stored on one and rejected on the other."""

    def __init__(self) -> None:
        super().__init__("a value holds a NUL character or a lone UTF-16 surrogate, which no store can keep")


class StoreInUse(StoreError):
    """Another process already owns this SQLite store."""


def storable(text: str) -> bool:
    """True unless `text` holds a NUL or a lone surrogate."""
    if "\x00" in text:
        return False
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True)
class StoredCall:
    id: int
    endpoint: str
    delivery_id: str
    received_at: float
    method: str
    path: str
    query_string: str
    headers: dict[str, str]
    body: bytes
    status: CallStatus
    error: str | None = None
    read_attempts: int = 0


@dataclass(frozen=True)
class Operation:
    """One Partnero call to make exactly once: `create:<target_key>` or `delete:<target_key>`.

    `transaction_key` is the payment's key; `target_key` the Partnero transaction this call acts on — the
    same, or a derived key (`<transaction_key>~adj<n>`) when a partial refund or a won dispute re-books
    the sale. Operations of one payment run strictly in the order they were enqueued.
    """

    id: int
    scope: str
    op_key: str
    action: str
    transaction_key: str
    target_key: str
    event_id: int | None
    customer_key: str | None
    endpoint: str
    request: dict[str, Any]
    status: OpStatus
    reason: str | None
    attempts: int
    next_attempt_at: float
    maybe_sent: bool  # an earlier attempt may have reached Partnero: look before sending again
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class NewOperation:
    scope: str
    action: str
    transaction_key: str
    target_key: str
    endpoint: str
    request: dict[str, Any]
    status: OpStatus = OpStatus.PENDING
    reason: str | None = None
    event_id: int | None = None
    # a sale waits (bounded) while this customer's creation is pending in the bridge
    customer_key: str | None = None

    @property
    def op_key(self) -> str:
        return f"{self.action}:{self.target_key}"


class CustomerState(StrEnum):
    PENDING = "pending"  # a sign-up or a first sale that creates the customer is on its way
    CREATED = "created"
    NOT_REFERRED = "not_referred"  # Partnero refused the partner: sales for it earn nothing
    FAILED = "failed"


@dataclass(frozen=True)
class Customer:
    """What the bridge knows of one Partnero customer: from the sign-up relay or a first sale."""

    scope: str
    customer_key: str
    state: CustomerState
    creator_op_key: str | None  # the operation creating it; other sales for it wait for that one
    email: str | None = None
    partner_key: str | None = None


class PaymentState(StrEnum):
    ACTIVE = "active"  # the sale is (or is queued to be) in Partnero under `current_key`
    REFUNDED = "refunded"  # fully reversed by refunds
    DISPUTED = "disputed"  # reversed by a chargeback; a won dispute restores it


@dataclass(frozen=True)
class Payment:
    """The bridge's ledger of one payment in one Partnero program: what was sold, refunded, reversed."""

    scope: str
    transaction_key: str
    endpoint: str
    state: PaymentState
    current_key: str | None
    revision: int
    sale_request: dict[str, Any] | None  # the create body of the original sale, amount as a string
    refunded: Decimal  # on the endpoint's commission base, as last applied
    # the figures providers reported (sale, refunds by id, cumulative totals), kept by `bridge.ledger`
    amounts: dict[str, Any] = field(default_factory=dict)

    @property
    def sale_amount(self) -> Decimal | None:
        return Decimal(self.sale_request["amount"]) if self.sale_request else None


@dataclass(frozen=True)
class NewEvent:
    call_id: int
    endpoint: str
    seq: int
    kind: str
    event_type: str
    transaction_key: str | None
    data: dict[str, Any]
    customer_key: str | None
    status: EventStatus
    reason: str | None = None
    operation_id: int | None = None
    # something the operator should know although the event went through (two keys for one email)
    warning: str | None = None


@dataclass(frozen=True)
class Remembered:
    """One fact of the customer memory: this email (or provider customer id) goes with this customer key.

    `fact` is `email` or `customer_id:<provider>`; `first_used_at` is when the payment or sign-up that
    taught it happened, so history learned later (a backfill) can still be the earliest.
    """

    scope: str
    fact: str
    value: str
    customer_key: str
    first_used_at: float
    source: str  # the endpoint (or `_signups`) that taught it


@dataclass(frozen=True)
class EventView:
    """An event as the operator sees it: its own status, or its operation's once it has one."""

    id: int
    call_id: int
    endpoint: str
    kind: str
    event_type: str
    transaction_key: str | None
    customer_key: str | None
    status: str
    reason: str | None
    operation_id: int | None
    created_at: float
    email: str | None = None  # the buyer's (or the sign-up's) email, for the operator's search
    warning: str | None = None
    attributed: str | None = None  # the rule that attributed a sale: cookie, sign-up, code, memory


@dataclass(frozen=True)
class Attempt:
    operation_id: int
    at: float
    outcome: str
    status_code: int | None
    detail: str
    latency_seconds: float | None = None  # from the claim to Partnero's answer (None: not measured)


@dataclass
class EventFilter:
    status: str | None = None
    endpoint: str | None = None
    since: float | None = None
    limit: int = 100
    extra: dict[str, Any] = field(default_factory=dict)
    kind: str | None = None
    until: float | None = None
    # equal to a transaction key, customer key, email, provider payment id (the key's last part) or delivery id
    q: str | None = None
    offset: int = 0


@dataclass(frozen=True)
class QueueStats:
    """What waits: operations pending delivery and calls not parsed yet, and what is stuck for good."""

    pending_operations: int
    received_calls: int
    oldest_pending_at: float | None
    dead_operations: int
    failed_calls: int


@dataclass(frozen=True)
class DayRow:
    """Sale, refund or dispute events of one UTC day that the overview's chart counts alike: the same
    endpoint, kind and status, and for delivered sales (the only ones it books) the same amount and currency."""

    day_start: float  # unix seconds
    endpoint: str
    kind: str
    status: str
    amount: str | None  # delivered sales only
    currency: str | None  # delivered sales only
    events: int = 1


class Transaction(Protocol):
    """Primitives usable inside one `Store.run`; all of them see and write the same transaction."""

    def ping(self) -> bool: ...
    def insert_call(
        self,
        endpoint: str,
        delivery_id: str,
        received_at: float,
        method: str,
        path: str,
        query_string: str,
        headers: dict[str, str],
        body: bytes,
    ) -> tuple[int, bool]: ...
    def received_calls(self, limit: int, now: float | None = None) -> list[StoredCall]:
        """Stored calls not parsed yet, oldest first; with `now`, those not deferred past it."""
        ...

    def claim_calls(self, owner: str, now: float, lease_until: float, limit: int) -> list[StoredCall]:
        """Lease received calls to parse (several worker processes never parse one call twice)."""
        ...

    def defer_call(self, call_id: int, until: float, error: str) -> int:
        """Read this call again after `until` (the provider's API was down); returns how often deferred."""
        ...

    def get_call(self, call_id: int) -> StoredCall | None: ...
    def finish_call(self, call_id: int, status: CallStatus, error: str | None, at: float) -> None: ...
    def insert_event(self, event: NewEvent, at: float) -> int: ...
    def get_customer(self, scope: str, customer_key: str) -> Customer | None: ...
    def put_customer(self, customer: Customer, at: float) -> None: ...
    def customer_key_by_email(self, scope: str, email: str) -> str | None:
        """The key the merchant used at sign-up for this email (case-insensitive), newest first."""
        ...

    def recall(self, scope: str, fact: str, value: str) -> Remembered | None:
        """What the customer memory holds for this fact (emails lower-cased by the caller)."""
        ...

    def remember(self, entry: Remembered, at: float) -> None:
        """Write (or replace) one fact of the customer memory."""
        ...

    def get_payment(self, scope: str, transaction_key: str) -> Payment | None: ...
    def put_payment(self, payment: Payment, at: float) -> None: ...
    def get_operation(self, scope: str, op_key: str) -> Operation | None: ...
    def get_operation_by_id(self, operation_id: int) -> Operation | None: ...
    def insert_operation(self, op: NewOperation, at: float) -> int: ...
    def update_operation(self, operation_id: int, at: float, **fields: Any) -> None: ...
    def cancel_unsent_operation(self, operation_id: int, at: float, reason: str) -> bool:
        """Skip a pending operation that was never claimed; False (and nothing changed) if it has been,
        even by a claim committing concurrently in another process."""
        ...

    def claim_operations(
        self,
        owner: str,
        now: float,
        lease_until: float,
        limit: int,
        exclude_scopes: Sequence[str] = (),
        customer_wait_seconds: float = 0.0,
    ) -> list[Operation]:
        """Lease due operations, counting the attempt and marking them maybe-sent before any request
        leaves; the returned records show the state before the claim (was an earlier attempt sent?).

        Only the first unfinished operation of a payment is claimable: an earlier one that is pending
        or dead holds the rest, so a payment's operations never overlap and never run out of order.
        Operations of the Partnero programs in `exclude_scopes` (paused: down or rate limiting) wait, and
        so does an operation whose customer is still being created by another operation, for at most
        `customer_wait_seconds` after it was enqueued."""
        ...

    def release_leases(self, owner: str | None) -> int: ...
    def renew_operation_lease(self, operation_id: int, owner: str, now: float, until: float) -> bool:
        """Extend `owner`'s lease on an operation to `until`; False (nothing changed) when the lease has run
        out or passed to another process — then the operation is no longer `owner`'s to send."""
        ...

    def release_call_leases(self, call_ids: Sequence[int]) -> int:
        """Give claimed calls back at once (a worker round that could not finish them)."""
        ...

    def next_due_at(self) -> float | None:
        """When the earliest pending operation or deferred call is due; None when nothing waits."""
        ...

    def add_attempt(self, attempt: Attempt) -> None: ...
    def list_events(self, flt: EventFilter) -> list[EventView]: ...
    def get_event(self, event_id: int) -> tuple[EventView, dict[str, Any]] | None:
        """The event and its normalized data."""
        ...

    def operations_of_event(self, event_id: int) -> list[Operation]: ...
    def failed_calls(self, flt: EventFilter) -> list[StoredCall]:
        """Calls kept unparsed (`failed`), newest first, with the filter's endpoint and since."""
        ...

    def replay_operation(self, operation_id: int, now: float) -> bool:
        """A dead operation back to pending with a fresh attempt budget; its maybe-sent mark is kept,
        so the first new attempt still looks before it sends. False if it was not dead."""
        ...

    def replay_call(self, call_id: int) -> bool:
        """A failed call back to `received`, to be parsed again. False if it was not failed."""
        ...

    def purge_bodies(self, before: float) -> int:
        """Drop raw bodies and headers of processed calls received before `before` whose operations are
        all finished; the outcome (events, operations, attempts) stays. Returns how many were purged."""
        ...

    def attempts_of(self, operation_id: int) -> list[Attempt]: ...
    def set_program_paused(self, scope: str, paused: bool, at: float) -> bool:
        """Pause (or resume) delivery to one Partnero program for every worker process; claims skip a
        paused program's operations. Returns whether anything changed."""
        ...

    def paused_programs(self) -> dict[str, float]:
        """Programs paused by an operator, with the time each was paused."""
        ...

    def status_counts(self, since: float | None) -> dict[tuple[str, str], int]:
        """(kind, status) → how many events since `since`; unparsed calls count as ("unparsed", "failed")."""
        ...

    def queue_stats(self) -> QueueStats: ...
    def day_rows(self, since: float) -> list[DayRow]:
        """Sale, refund and dispute events created since `since`, counted per day; in the order each row's
        first event was created."""
        ...


class Store(Protocol):
    """An engine: SQLite embedded (one process) or PostgreSQL (several)."""

    single_process: bool

    async def migrate_async(self) -> list[int]:
        """Apply pending schema migrations (forward only); returns the versions applied."""
        ...

    async def open(self) -> None: ...
    async def hold_exclusive(self) -> None:
        """Own the store for this process's life where the engine allows only one process (SQLite);
        raise `StoreInUse` if another process owns it. PostgreSQL: nothing to do."""
        ...

    async def close(self) -> None: ...
    async def ping(self) -> bool: ...
    async def run(self, work: Callable[[Transaction], T], *, urgent: bool = False) -> T:
        """`work` in a transaction of its own (SQLite: in the writer's next group commit). `urgent` work — a
        webhook's insert, which a provider waits on — goes ahead of the rest and never waits for a slot;
        PostgreSQL commits urgent work in groups, and runs a piece again alone when its group failed, so
        urgent work must be plain statements with no effect outside the transaction."""
        ...

    async def read(self, work: Callable[[Transaction], T]) -> T:
        """Work that only reads (an operator's page, a metrics scrape), in a snapshot of its own. SQLite runs
        it on a reader connection beside the one writer (WAL lets them go side by side), so a long read
        over a large store never holds up a webhook's insert; PostgreSQL as `run`."""
        ...

    async def run_each(self, works: Sequence[Callable[[Transaction], T]]) -> list[T | Exception]:
        """Every piece of work in order, each in a savepoint of its own, under as few commits as the engine
        can: a piece that raises is rolled back alone and its exception takes its place in the answer
        (on SQLite, so does the commit's exception for the pieces a failed commit carried; PostgreSQL
        commits once and raises when that fails)."""
        ...

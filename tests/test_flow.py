"""The circuit breaker toward one Partnero program (bridge/flow.py), on a hand-driven clock."""

from __future__ import annotations

from bridge.flow import MAX_RETRY_AFTER_SECONDS, CircuitBreaker, Verdict, backoff_seconds


def _breaker() -> CircuitBreaker:
    return CircuitBreaker(initial_pause=2.0, max_pause=30.0, threshold=3)


def test_operations_failing_together_count_as_one_failure() -> None:
    breaker = _breaker()
    tickets = [breaker.ticket(0.0) for _ in range(50)]
    for ticket in tickets:
        breaker.record(ticket, Verdict.FAILURE, 1.0)
    assert breaker.failures == 1
    assert breaker.closed


def test_consecutive_waves_open_it_and_the_wave_that_opened_it_is_the_programs() -> None:
    breaker = _breaker()
    assert breaker.record(breaker.ticket(0.0), Verdict.FAILURE, 1.0) is False
    assert breaker.record(breaker.ticket(1.5), Verdict.FAILURE, 2.0) is False
    late = breaker.ticket(2.5)
    same_wave = breaker.ticket(2.6)
    assert breaker.record(late, Verdict.FAILURE, 3.0) is True
    assert not breaker.closed
    assert breaker.snapshot("p", 3.0).state == "open"
    # sent before the breaker opened, failed after: Partnero's failure, not the operation's
    assert breaker.record(same_wave, Verdict.FAILURE, 3.1) is True


def test_one_payment_failing_while_others_succeed_never_opens_it() -> None:
    breaker = _breaker()
    now = 0.0
    for _ in range(20):
        now += 1
        breaker.record(breaker.ticket(now), Verdict.FAILURE, now + 0.5)
        breaker.record(breaker.ticket(now), Verdict.SUCCESS, now + 0.5)
    assert breaker.closed and breaker.failures == 0


def test_a_definite_answer_about_one_request_is_neither_success_nor_failure() -> None:
    breaker = _breaker()
    breaker.record(breaker.ticket(0.0), Verdict.FAILURE, 1.0)
    breaker.record(breaker.ticket(1.5), Verdict.NEUTRAL, 2.0)
    assert breaker.failures == 1


def _open(breaker: CircuitBreaker) -> float:
    for n in range(3):
        breaker.record(breaker.ticket(float(n)), Verdict.FAILURE, n + 0.5)
    return 2.5


def test_one_probe_when_the_pause_ends_and_its_success_closes() -> None:
    breaker = _breaker()
    opened = _open(breaker)
    assert not breaker.probe_due(opened + 1.0)
    assert breaker.probe_due(opened + 2.0)
    probe = breaker.start_probe(opened + 2.0)
    # half-open: no second probe while the first is out
    assert not breaker.probe_due(opened + 10.0)
    assert breaker.snapshot("p", opened + 2.0).state == "half-open"
    breaker.record(probe, Verdict.SUCCESS, opened + 2.1)
    assert breaker.closed and breaker.failures == 0


def test_failed_probes_double_the_pause_but_never_past_the_cap() -> None:
    breaker = _breaker()
    now = _open(breaker)
    pauses = []
    for _ in range(10):
        now = breaker.until
        probe = breaker.start_probe(now)
        assert breaker.record(probe, Verdict.FAILURE, now) is True
        pauses.append(breaker.until - now)
    assert pauses[:4] == [4.0, 8.0, 16.0, 30.0]
    assert max(pauses) == 30.0


def test_a_probe_answered_with_a_client_error_means_partnero_is_up() -> None:
    breaker = _breaker()
    now = _open(breaker) + 2
    breaker.record(breaker.start_probe(now), Verdict.NEUTRAL, now)
    assert breaker.closed


def test_rate_limiting_pauses_for_retry_after_within_a_bound() -> None:
    breaker = _breaker()
    assert breaker.record(breaker.ticket(0.0), Verdict.RATE_LIMITED, 1.0, retry_after=7) is True
    assert breaker.until == 8.0
    breaker = _breaker()
    breaker.record(breaker.ticket(0.0), Verdict.RATE_LIMITED, 1.0, retry_after=10**9)
    assert breaker.until == 1.0 + MAX_RETRY_AFTER_SECONDS


def test_backoff_grows_with_jitter_and_honours_retry_after_as_a_floor() -> None:
    delays = [backoff_seconds(n, 2, 3600) for n in range(1, 8)]
    assert all(1 <= d <= 2 * 2 ** (n - 1) for n, d in zip(range(1, 8), delays, strict=True))
    assert backoff_seconds(10_000, 2, 60) <= 60
    assert backoff_seconds(1, 2, 60, retry_after=45) >= 45

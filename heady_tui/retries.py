"""Retries of outgoing HTTP calls (webhooks, provider cost APIs) on tenacity.

Exponential backoff from `initial_s` (doubling each retry, no jitter: one console, a few calls), or
the server's Retry-After hint when it gave one. The sleep is injected, so tests step time instead
of waiting; that is why this is tenacity and not stamina, which always sleeps on the event loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt, wait_exponential


class Transient(Exception):
    """A failure worth retrying: unreachable, 408, 429 or 5xx. `wait_s` is the server's hint, if any."""

    def __init__(self, problem: str, wait_s: float | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.wait_s = wait_s


def retrying(
    *,
    attempts: int,
    initial_s: float,
    sleep: Callable[[float], Awaitable[None]],
    on_retry: Callable[[Transient, int, float], None],
) -> AsyncRetrying:
    """Up to `attempts` tries of a block that raises Transient to be retried; the last Transient is
    raised again. `on_retry(error, attempt, wait_s)` runs before each wait."""
    exponential = wait_exponential(multiplier=initial_s, exp_base=2)

    def wait(state: RetryCallState) -> float:
        error = _transient(state)
        return error.wait_s if error is not None and error.wait_s is not None else exponential(state)

    def before_sleep(state: RetryCallState) -> None:
        error = _transient(state)
        if error is not None and state.next_action is not None:
            on_retry(error, state.attempt_number, state.next_action.sleep)

    return AsyncRetrying(
        stop=stop_after_attempt(attempts),
        wait=wait,
        retry=retry_if_exception_type(Transient),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )


def _transient(state: RetryCallState) -> Transient | None:
    error = state.outcome.exception() if state.outcome is not None else None
    return error if isinstance(error, Transient) else None

"""A stop signal never loses a reply that already arrived, and abandons one in flight."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_engine import APPROVED, ITEM, Drafter, Reviewer, calls, run, workflow

from assemblyzero.providers import ModelReply, ModelRequest, ProviderError, RateLimited
from assemblyzero.workflow.interrupt import Interrupted, Stop
from assemblyzero.workspace import Workspace


@pytest.fixture
def stop() -> Iterator[Stop]:
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    stopper = Stop()
    stopper.install()
    yield stopper
    for signum, handler in saved.items():
        signal.signal(signum, handler)


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    from conftest import make_workspace

    return Workspace.at(make_workspace(tmp_path / "ws", issues=[ITEM]))


def test_a_signal_after_a_reply_arrived_keeps_it_in_the_checkpoint(ws: Workspace,
                                                                   tmp_path: Path, stop: Stop):
    drafter, reviewer = Drafter(), Reviewer(lambda r: APPROVED)
    flow = workflow(ws, drafter, reviewer, tmp_path / "cp.db")
    flow.stop = stop

    def say(line: str) -> None:  # the draft reply is in hand: now the user hits Ctrl+C
        if line.startswith("draft: reply"):
            os.kill(os.getpid(), signal.SIGINT)

    flow.say = say
    with pytest.raises(Interrupted):
        run(flow)
    assert calls(drafter, reviewer) == 1
    resumed = workflow(ws, Drafter(), Reviewer(lambda r: APPROVED), tmp_path / "cp.db")
    step, state = resumed.checkpoint.load()  # type: ignore[misc]
    assert step == "draft" and state["next"] == "validate"
    result = run(resumed, state)
    assert result.status.value == "done"
    assert calls(resumed.drafter, resumed.reviewer) == 1  # only the review: no draft again


class Stuck:
    """A model call that never returns until released; it signals once it has started."""

    name = "stuck"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.returned = threading.Event()

    def complete(self, request: ModelRequest) -> ModelReply:
        os.kill(os.getpid(), signal.SIGTERM)
        self.release.wait(30)
        self.returned.set()
        return ModelReply("too late")


def test_a_signal_during_a_call_abandons_it_at_once(ws: Workspace, tmp_path: Path, stop: Stop):
    stuck = Stuck()
    flow = workflow(ws, stuck, Reviewer(lambda r: APPROVED), tmp_path / "cp.db")
    flow.stop = stop
    try:
        with pytest.raises(Interrupted) as caught:
            run(flow)
        assert not stuck.returned.is_set()  # at once: the call is still stuck, not waited for
    finally:
        stuck.release.set()
    assert caught.value.signum == signal.SIGTERM
    step, state = flow.checkpoint.load()  # type: ignore[misc]
    assert step == "load" and state["model_calls"] == 0


def test_stop_call_returns_the_value_and_raises_provider_errors(stop: Stop):
    assert stop.call(lambda: 42) == 42
    for error in (ProviderError("anthropic: HTTP 500"), RateLimited("429", retry_after=7.5)):
        error.credential = "team-a"

        def fail(error: ProviderError = error) -> None:
            raise error

        with pytest.raises(ProviderError) as caught:  # raised in the main thread, as it was
            stop.call(fail)
        assert caught.value is error and type(caught.value) is type(error)
        assert caught.value.credential == "team-a"
    assert isinstance(caught.value, RateLimited) and caught.value.retry_after == 7.5
    with pytest.raises(ZeroDivisionError):  # and any other error of the call too
        stop.call(lambda: 1 // 0)
    os.kill(os.getpid(), signal.SIGTERM)
    with pytest.raises(Interrupted):
        stop.call(lambda: 1)

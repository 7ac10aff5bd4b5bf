"""MicroBatcher: requests that arrive while the model is busy share the next call; failures stay per item."""

from __future__ import annotations

import asyncio
import threading

import pytest

from serving.batching import MicroBatcher


class Recorder:
    """A batch function that records each batch and can hold the first call until released."""

    def __init__(self, hold_first: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.release = threading.Event()
        self.started = threading.Event()
        if not hold_first:
            self.release.set()

    def __call__(self, items: list[int]) -> list[object]:
        self.started.set()
        self.release.wait(10)
        self.batches.append(list(items))
        return [ValueError(f"bad {i}") if i < 0 else i * 10 for i in items]


async def wait_for(event: threading.Event) -> None:
    while not event.is_set():
        await asyncio.sleep(0.001)


def test_requests_queued_while_the_model_runs_form_one_batch():
    async def scenario():
        recorder = Recorder(hold_first=True)
        batcher = MicroBatcher(recorder, max_batch_size=64)
        first = asyncio.ensure_future(batcher.submit(1))
        await wait_for(recorder.started)  # the first call is now running alone
        rest = [asyncio.ensure_future(batcher.submit(i)) for i in range(2, 7)]
        await asyncio.sleep(0)
        recorder.release.set()
        results = await asyncio.gather(first, *rest)
        await batcher.aclose()
        return recorder.batches, results

    batches, results = asyncio.run(scenario())
    assert batches == [[1], [2, 3, 4, 5, 6]]
    assert results == [10, 20, 30, 40, 50, 60]


def test_batches_never_exceed_max_batch_size():
    async def scenario():
        recorder = Recorder()
        batcher = MicroBatcher(recorder, max_batch_size=3)
        results = await batcher.submit_many(list(range(8)))
        await batcher.aclose()
        return recorder.batches, results

    batches, results = asyncio.run(scenario())
    assert [len(b) for b in batches] == [3, 3, 2]
    assert results == [i * 10 for i in range(8)]


def test_an_item_failure_reaches_only_its_own_request():
    async def scenario():
        batcher = MicroBatcher(Recorder())
        good, bad = await asyncio.gather(batcher.submit(2), batcher.submit(-1), return_exceptions=True)
        mixed = await batcher.submit_many([3, -2], return_exceptions=True)
        await batcher.aclose()
        return good, bad, mixed

    good, bad, mixed = asyncio.run(scenario())
    assert good == 20
    assert isinstance(bad, ValueError) and str(bad) == "bad -1"
    assert mixed[0] == 30 and isinstance(mixed[1], ValueError)


def test_a_failing_batch_function_fails_every_waiting_request_and_the_next_batch_still_runs():
    calls = []

    def flaky(items):
        calls.append(items)
        if len(calls) == 1:
            raise RuntimeError("model crashed")
        return items

    async def scenario():
        batcher = MicroBatcher(flaky)
        first = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)
        second = await batcher.submit(3)
        await batcher.aclose()
        return first, second

    first, second = asyncio.run(scenario())
    assert all(isinstance(r, RuntimeError) for r in first)
    assert second == 3


def test_on_batch_sees_every_batch_size():
    sizes: list[int] = []

    async def scenario():
        batcher = MicroBatcher(Recorder(), max_batch_size=4, on_batch=sizes.append)
        await batcher.submit_many(list(range(10)))
        await batcher.aclose()

    asyncio.run(scenario())
    assert sizes == [4, 4, 2]


def test_max_batch_size_must_be_positive():
    with pytest.raises(ValueError, match="max_batch_size"):
        MicroBatcher(lambda items: items, max_batch_size=0)

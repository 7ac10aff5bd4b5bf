"""Group concurrent requests into one model call without adding a waiting window.

One worker thread runs the model; while it is busy, new requests queue up, and the next call takes all of
them (up to `max_batch_size`). Under light load every request runs alone at once; under heavy load the
batch grows with the backlog, which is where batching pays (a batch of 32 costs far less than 32 calls).

Why not BentoML's `batchable=True` API: inside one service it is reached through the service's own HTTP
client, a second pass through the whole middleware stack with JSON encoding for every request. Measured
side by side (docs/serving.md) it served less than half the requests, and failed some under concurrency.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: Processes a batch; returns one result per item, or an exception instance for an item that failed alone.
BatchFunction = Callable[[list[T]], Sequence["R | BaseException"]]


class MicroBatcher(Generic[T, R]):
    def __init__(
        self,
        process: BatchFunction,
        *,
        max_batch_size: int = 64,
        on_batch: Callable[[int], object] | None = None,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self._process = process
        self._max_batch_size = max_batch_size
        self._queue: asyncio.Queue[tuple[T, asyncio.Future]] | None = None
        self._task: asyncio.Task | None = None
        # One thread: the model is not re-entrant, and decoding in the same thread bounds memory to one
        # decoded image at a time whatever the concurrency.
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="orbit-infer"
        )
        self._on_batch = on_batch  # e.g. a metrics histogram of batch sizes

    async def submit(self, item: T) -> R:
        return (await self.submit_many([item]))[0]

    async def submit_many(self, items: Sequence[T], *, return_exceptions: bool = False) -> list[R]:
        """Queue items and wait for all of them.

        An item that failed raises its exception, or, with `return_exceptions`, leaves it in its slot.
        """
        loop = asyncio.get_running_loop()
        if self._queue is None or self._task is None or self._task.done():
            self._queue = asyncio.Queue()
            self._task = loop.create_task(self._run(), name="orbit-micro-batcher")
        futures = [loop.create_future() for _ in items]
        for item, future in zip(items, futures, strict=True):
            self._queue.put_nowait((item, future))
        return list(await asyncio.gather(*futures, return_exceptions=return_exceptions))

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            batch = [(item, future) for item, future in batch if not future.done()]  # drop cancelled
            if not batch:
                continue
            if self._on_batch is not None:
                self._on_batch(len(batch))
            try:
                results = await loop.run_in_executor(self._executor, self._process, [i for i, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError(
                        f"batch function returned {len(results)} results for {len(batch)} items"
                    )
            except Exception as exc:  # a failure of the whole batch reaches every waiting request
                results = [exc] * len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=False, cancel_futures=True)

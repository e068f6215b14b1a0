"""Dynamic micro-batching: concurrent async requests become one call of a blocking batch function.

Inspect runs samples concurrently and each calls `generate` on its own; a GPU is only used well
when those calls share one forward pass. Requests wait at most `max_wait_s` for company, a batch
never exceeds `max_batch`, and one batch runs at a time (the model is one device resource) on the
batcher's own worker thread, so models with their own batchers run side by side. The batch function may
return an exception in a request's place: that request alone fails.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Req = TypeVar("Req")
Res = TypeVar("Res")


@dataclass
class BatchStats:
    batches: int = 0
    sizes: list[int] = field(default_factory=list)


class MicroBatcher(Generic[Req, Res]):
    def __init__(
        self,
        run: Callable[[list[Req]], list[Res | BaseException]],
        max_batch: int,
        max_wait_s: float,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self._run = run
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.stats = BatchStats()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch")

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        # Each `inspect eval` runs its own event loop: start fresh state on a new one.
        if self._loop is not loop:
            self._loop = loop
            self._pending: list[tuple[Req, asyncio.Future[Res]]] = []
            self._full = asyncio.Event()
            self._worker: asyncio.Task[None] | None = None

    async def submit(self, request: Req) -> Res:
        loop = asyncio.get_running_loop()
        self._bind(loop)
        future: asyncio.Future[Res] = loop.create_future()
        self._pending.append((request, future))
        if len(self._pending) >= self.max_batch:
            self._full.set()
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._work())
        return await future

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            if len(self._pending) < self.max_batch:
                try:
                    await asyncio.wait_for(self._full.wait(), self.max_wait_s)
                except TimeoutError:
                    pass
            batch = [item for item in self._pending[: self.max_batch] if not item[1].done()]
            del self._pending[: self.max_batch]
            self._full.clear()
            if len(self._pending) >= self.max_batch:
                self._full.set()
            if not batch:
                continue
            self.stats.batches += 1
            self.stats.sizes.append(len(batch))
            try:
                results = await loop.run_in_executor(self._thread, self._run, [request for request, _ in batch])
            except Exception as ex:  # the whole batch failed: every caller gets the error
                for _, future in batch:
                    if not future.done():
                        future.set_exception(ex)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):  # this request alone failed
                    future.set_exception(result)
                else:
                    future.set_result(result)

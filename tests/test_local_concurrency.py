"""How many `hfvlm` requests Inspect lets through at once: each batcher its own connection pool of two batches.

Inspect's default adaptive concurrency starts a pool at 20 requests in flight and shares one pool among every
model whose provider gives the same connection_key(): before, all hfvlm models shared one pool of 20, so a burst
of 32 ran as batches of 20 and 12, and a target, rewriter and judge on hfvlm took turns within those 20.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from inspect_ai import Task
from inspect_ai import eval as inspect_eval
from inspect_ai.dataset import Sample
from inspect_ai.model import ChatMessageUser, ContentText, GenerateConfig, get_model
from inspect_ai.model._model import model_concurrency_key
from inspect_ai.solver import generate

GREEDY = GenerateConfig(max_tokens=2, temperature=0.0)


def own_folder(tiny_vlm: Path, tmp_path: Path, name: str) -> Path:
    """The tiny model under a folder name of this test's own: a load (and pools) of its own."""
    link = tmp_path / name
    link.symlink_to(tiny_vlm, target_is_directory=True)
    return link


def ask(text: str) -> list[ChatMessageUser]:
    return [ChatMessageUser(content=[ContentText(text=text)])]


def burst(models_and_counts: list[tuple[Any, int]]) -> None:
    async def go() -> None:
        await asyncio.gather(
            *(model.generate(ask(f"Question {i}?"), config=GREEDY) for model, n in models_and_counts for i in range(n))
        )

    asyncio.run(go())


def test_a_burst_of_one_batch_runs_as_one_batch(tiny_vlm: Path, tmp_path: Path) -> None:
    # a full batch runs at once: the long wait only keeps a slow machine from splitting it
    model = get_model(f"hfvlm/{own_folder(tiny_vlm, tmp_path, 'a')}", batch_size=32, batch_wait_ms=10000, memoize=False)
    burst([(model, 32)])
    assert model.api.batcher.stats.sizes == [32]  # not [20, 12]: Inspect's adaptive pool started at 20
    assert model.api.max_connections() == 64 and model.config.adaptive_connections is False  # two batches


def test_an_eval_on_a_local_target_runs_a_batch_of_samples_at_once(tiny_vlm: Path, tmp_path: Path) -> None:
    """The default max_samples follows the target's max_connections() (Inspect's static path), not the adaptive
    controller's start of 20."""
    model = get_model(f"hfvlm/{own_folder(tiny_vlm, tmp_path, 'a')}", batch_size=32, batch_wait_ms=10000, memoize=False)
    task = Task(dataset=[Sample(input=f"Question {i}?") for i in range(32)], solver=generate())
    [log] = inspect_eval(task, model=model, max_tokens=2, log_dir=str(tmp_path / "logs"), display="none")
    assert log.status == "success"
    assert model.api.batcher.stats.sizes == [32]


def test_every_batcher_has_a_pool_of_its_own(tiny_vlm: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = (
        get_model(f"hfvlm/{own_folder(tiny_vlm, tmp_path, name)}", batch_size=8, batch_wait_ms=2000, memoize=False)
        for name in ("a", "b")
    )
    alike = get_model(f"hfvlm/{tmp_path / 'a'}", batch_size=8, batch_wait_ms=2000, memoize=False)
    other = get_model(f"hfvlm/{tmp_path / 'a'}", batch_size=4, batch_wait_ms=2000, memoize=False)
    keys = [model_concurrency_key(m.api) for m in (a, b, alike, other)]
    assert keys[0] == keys[2] and len(set(keys)) == 3  # roles sharing a batcher share its pool, none other
    # hold each model's first batch until every request is inside a batcher: 32 with a pool of 16 each, at most
    # 16 (or adaptive's 20) had the two shared one pool
    inside, peak, everyone = [0], [0], threading.Event()
    for model in (a, b):
        batcher = model.api.batcher
        submit, run = batcher.submit, batcher._run

        async def counted(request: Any, submit: Any = submit) -> Any:
            inside[0] += 1
            peak[0] = max(peak[0], inside[0])
            if inside[0] == 32:
                everyone.set()
            try:
                return await submit(request)
            finally:
                inside[0] -= 1

        def held(requests: list[Any], run: Any = run) -> list[Any]:
            everyone.wait(timeout=10)
            return run(requests)

        monkeypatch.setattr(batcher, "submit", counted)
        monkeypatch.setattr(batcher, "_run", held)
    burst([(a, 16), (b, 16)])
    assert peak[0] == 32
    assert a.api.batcher.stats.sizes == b.api.batcher.stats.sizes == [8, 8]


def test_the_users_own_connection_settings_win(tiny_vlm: Path, tmp_path: Path) -> None:
    capped = get_model(
        f"hfvlm/{own_folder(tiny_vlm, tmp_path, 'a')}",
        config=GenerateConfig(max_connections=4),
        batch_size=8,
        batch_wait_ms=50,
        memoize=False,
    )
    assert capped.config.max_connections == 4 and capped.config.adaptive_connections is None
    burst([(capped, 8)])
    assert max(capped.api.batcher.stats.sizes) <= 4 and sum(capped.api.batcher.stats.sizes) == 8
    adaptive = get_model(
        f"hfvlm/{own_folder(tiny_vlm, tmp_path, 'b')}",
        config=GenerateConfig(adaptive_connections=True),
        memoize=False,
    )
    assert adaptive.config.adaptive_connections is True and adaptive.config.max_connections is None

"""What a defense declares about itself, in one registry the reports and conformance tests read.

A defense is declared once, with `@defense(...)` on its solver factory: the same name registers the
Inspect solver (`--solver NAME`) and its `DefenseInfo`, so the two cannot drift apart.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from inspect_ai.solver import Generate, Solver, TaskState, solver

from vlmguard_eval.core.messages import ContextOverflowError, context_overflow
from vlmguard_eval.core.roles import JUDGE_ROLE, check_role_bindings

Factory = TypeVar("Factory", bound=Callable[..., Any])


@dataclass(frozen=True)
class DefenseInfo:
    """What a defense declares about itself."""

    name: str
    summary: str
    extra_calls: str  # e.g. "1 (rewriter)"; a string because some depend on the sample
    roles: tuple[str, ...] = ()  # model roles it calls besides the target
    side_models: tuple[str, ...] = ()  # classifiers, CLIP, reward models loaded locally
    white_box: bool = False  # needs logits/prefix control of a local target
    reference: str = ""
    # solver parameters that name a side model, with its kind: "sequence-classifier", "armorm", "clip" or "causal-lm"
    side_model_args: tuple[tuple[str, str], ...] = ()
    colour: str | None = None  # its colour in every figure (a matplotlib colour); None: one from its name


DEFENSES: dict[str, DefenseInfo] = {}


def register_defense(info: DefenseInfo) -> DefenseInfo:
    if info.name in DEFENSES and DEFENSES[info.name] != info:
        raise ValueError(f"defense {info.name!r} is registered twice with different metadata")
    DEFENSES[info.name] = info
    return info


def defense(summary: str, extra_calls: str, **declared: Any) -> Callable[[Factory], Factory]:
    """Declare a defense: its solver factory becomes an Inspect solver and its metadata is registered,
    both under the factory's own name."""

    def wrap(factory: Factory) -> Factory:
        info = register_defense(
            DefenseInfo(name=factory.__name__, summary=summary, extra_calls=extra_calls, **declared)
        )
        roles = (JUDGE_ROLE, *info.roles)

        @functools.wraps(factory)
        def with_checked_generate(*args: Any, **kwargs: Any) -> Solver:
            solve = factory(*args, **kwargs)

            async def checked(state: TaskState, generate: Generate) -> TaskState:
                check_role_bindings(roles)  # a panel on a role it calls fails here, before the target answers
                return await solve(state, checked_generate(generate, factory.__name__))

            return checked

        return solver(with_checked_generate)

    return wrap


class NoChoicesError(RuntimeError):
    """The target's reply held no completion at all (a served API answered with an empty choice list)."""


def checked_generate(generate: Generate, defense_name: str = "generate") -> Generate:
    """Inspect's generate, with a target reply that is no answer failing the sample by name: no choices
    (Inspect's own error is an IndexError from deep inside), or a context-window overflow, whose text is
    the server's error message (`core.messages.context_overflow`), which would otherwise be scored."""

    async def call(state: TaskState, *args: Any, **kwargs: Any) -> TaskState:
        try:
            state = await generate(state, *args, **kwargs)
        except IndexError:
            if state.output is not None and not state.output.choices:
                raise NoChoicesError(
                    f"the target {state.model} returned no choices (an empty completion list): nothing to answer with"
                ) from None
            raise
        overflow = context_overflow(state.output)
        if overflow is not None:
            raise ContextOverflowError("target", f"{defense_name}: answer", str(state.model), overflow)
        return state

    return call  # type: ignore[return-value]

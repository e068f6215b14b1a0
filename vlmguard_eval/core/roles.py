"""The one model a role names, for every side call (judge, guard, rewriter, detoxifier, teacher, ...).

Inspect lets a role be bound to a list of models (`--model-role grader=a,b`, or a list in a grid), and
`get_model(role=...)` then silently returns the first of them (inspect_ai.model._model.get_model in
0.3.285: "a role bound to a list of models resolves to the first model in the list"). Every call here
uses one model per role, so a list of more than one model is an error naming the role, never a silent cut.
"""

from __future__ import annotations

from collections.abc import Iterable

from inspect_ai._util.error import PrerequisiteError
from inspect_ai.model import Model, get_model, model_roles

# the role every benchmark's judge is bound to (`--model-role grader=...`)
JUDGE_ROLE = "grader"


class RoleBindingError(PrerequisiteError):
    """A role is bound to several models (or to an empty list) where exactly one is needed."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.args = (message,)


def _check_one(role: str, bound: Model | list[Model] | None) -> None:
    if isinstance(bound, list) and len(bound) != 1:
        names = ", ".join(str(model) for model in bound) or "none"
        raise RoleBindingError(
            f"model role '{role}' is bound to {len(bound)} models ({names}); it takes exactly one: "
            f"bind one model to '{role}' and run again for each other model"
        )


def check_role_bindings(roles: Iterable[str]) -> None:
    """Each of `roles` (the judge's and a defense's own) names one model where bound: checked before a sample's
    first call, so a panel bound to the judge's role fails the sample before the target's tokens are spent, not
    at scoring time. Roles the run does not call are not checked."""
    bound = model_roles()
    for role in roles:
        _check_one(role, bound.get(role))


def role_model(role: str) -> Model:
    """The model bound to `role` (required: never the target as a fallback); several models bound to it
    are an error naming the role and the models, since each call here asks one model."""
    _check_one(role, model_roles().get(role))
    return get_model(role=role, required=True)

"""No defense: the target answers the benchmark prompt exactly as given."""

from inspect_ai.solver import Generate, Solver, TaskState, solver

from vlmguard_eval.defense import DefenseInfo, register_defense

INFO = register_defense(
    DefenseInfo(name="none", summary="No defense: plain generation by the target.", extra_calls="0")
)


@solver
def none() -> Solver:
    """Plain generation, the baseline every defense is compared with."""

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        return await generate(state)

    return solve

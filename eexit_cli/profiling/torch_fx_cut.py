"""Cutting a PyTorch model whose forward returns its exits into stages, with torch.fx.

The same semantics as the ONNX cut (``onnx_profiler.cut_stages``): stage k holds the
operations needed for exit k that no earlier exit needs; it reads the model's inputs
and the values earlier stages hand on, and hands on what later stages read.
Parameters, buffers and constants (nodes without inputs) are recomputed in every
stage that needs them instead of being handed on. The stages follow the ``stages``
protocol, ``stage(state) -> (state, exit_output)``; the state is a dict of the values
handed on (the first stage receives the example input itself).
"""

from __future__ import annotations

from typing import Callable

from eexit_cli.errors import InputError

STAGES_HINT = ("give the model a `stages` attribute: N callables stage(state) -> (state, exit_output), "
               "see docs/profiling.md")


def one_line(exc: BaseException) -> str:
    """An exception as ``Type: first line of its message``."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def fx_stages(model, example, spec: str, n_declared: int | None, torch) -> tuple[list[Callable], list[str]]:
    """Trace ``model`` with torch.fx and cut it into one stage per exit.

    Returns the stages (following the ``stages`` protocol; the state is a dict of the
    values handed on) and default exit names.
    """
    import torch.fx as fx

    args = example if isinstance(example, tuple) else (example,)
    try:
        outputs = model(*args)
    except Exception as exc:
        raise InputError(f"{spec}: model(example_input) raised {one_line(exc)}") from None
    if isinstance(outputs, torch.Tensor) or not isinstance(outputs, (tuple, list)):
        raise InputError(
            f"{spec}: model(example_input) returned a {type(outputs).__name__}, not one output per exit; "
            f"return a tuple of the N exit outputs, or {STAGES_HINT}"
        )
    n = len(outputs)
    if n_declared is not None and n != n_declared:
        raise InputError(f"{spec}: model(example_input) returned {n} outputs, but {n_declared} exits are declared")
    if n < 2:
        raise InputError(f"{spec}: model(example_input) returned {n} output; profiling needs at least 2 exits")
    try:
        traced = fx.symbolic_trace(model)
    except Exception as exc:
        raise InputError(f"{spec}: torch.fx cannot trace the model ({one_line(exc)}); {STAGES_HINT}") from None
    graph = traced.graph
    nodes = list(graph.nodes)
    out_node = next(nd for nd in nodes if nd.op == "output")
    results = out_node.args[0]
    if not isinstance(results, (tuple, list)) or len(results) != n or not all(isinstance(r, fx.Node) for r in results):
        raise InputError(f"{spec}: the traced model does not return its {n} exits as separate values; {STAGES_HINT}")
    placeholders = [nd for nd in nodes if nd.op == "placeholder"]
    if len(placeholders) != len(args):
        raise InputError(
            f"{spec}: forward takes {len(placeholders)} inputs, the example input gives {len(args)}; {STAGES_HINT}"
        )
    free = {nd for nd in nodes if nd.op != "placeholder" and not nd.all_input_nodes}

    owner: dict = {}
    for k, exit_node in enumerate(results):
        stack, mine = [exit_node], set()
        while stack:
            nd = stack.pop()
            if nd in owner or nd in mine or nd.op == "placeholder":
                continue
            mine.add(nd)
            stack.extend(nd.all_input_nodes)
        mine -= free
        if not mine and k > 0:
            raise InputError(f"{spec}: exit {k + 1} needs no computation beyond exit {k}'s; the exits are out of order")
        for nd in mine:
            owner[nd] = k

    index = {nd: i for i, nd in enumerate(nodes)}
    stages = []
    for k, exit_node in enumerate(results):
        members = sorted((nd for nd, s in owner.items() if s == k), key=index.__getitem__)
        later = [nd for nd, s in owner.items() if s > k]
        hands_on = sorted({inp for nd in later for inp in nd.all_input_nodes if owner.get(inp) == k},
                          key=index.__getitem__)
        sub = fx.Graph()
        env: dict = {}
        reads: list[str] = []

        def fetch(nd, sub=sub, env=env, reads=reads):
            if nd in env:
                return env[nd]
            if nd in free:
                for inp in nd.all_input_nodes:  # pragma: no cover (free nodes have none)
                    fetch(inp)
                env[nd] = sub.node_copy(nd, lambda x: env[x])
            else:  # a graph input or a value handed on from an earlier stage
                env[nd] = sub.placeholder(nd.name)
                reads.append(nd.name)
            return env[nd]

        for nd in members:
            for inp in nd.all_input_nodes:
                if inp not in env and owner.get(inp) != k:
                    fetch(inp)
            env[nd] = sub.node_copy(nd, lambda x: env[x])
        if exit_node not in env:  # an exit that is a graph input or a constant
            fetch(exit_node)
        sub.output((env[exit_node], tuple(env[nd] for nd in hands_on)))
        module = fx.GraphModule(traced, sub)
        stages.append(_FxStage(module, tuple(reads), tuple(nd.name for nd in hands_on)))
    # the first stage receives the example input: map it to the placeholders' names
    stages[0] = _FxFirstStage(stages[0], tuple(p.name for p in placeholders))
    return stages, [f"exit_{k + 1}" for k in range(n)]


class _FxStage:
    """A cut stage: reads named values from the state dict, adds what it hands on."""

    def __init__(self, module, reads: tuple[str, ...], hands_on: tuple[str, ...]):
        self.module, self.reads, self.hands_on = module, reads, hands_on

    def __call__(self, state: dict):
        out, handed = self.module(*[state[name] for name in self.reads])
        state = dict(state)
        state.update(zip(self.hands_on, handed))
        return state, out


class _FxFirstStage:
    def __init__(self, stage: _FxStage, names: tuple[str, ...]):
        self.stage, self.names = stage, names

    def __call__(self, example):
        args = example if isinstance(example, tuple) else (example,)
        return self.stage(dict(zip(self.names, args)))


__all__ = ["STAGES_HINT", "fx_stages", "one_line"]

"""Cutting an ONNX graph into one stage sub-graph per exit.

Stage k holds the nodes needed for exit k that no earlier exit needs. It reads the
model's inputs and the boundary tensors earlier stages produced, and hands on the
tensors later stages read (a tensor produced in stage 1 and read in stage 3 is handed
on directly). Nodes without inputs (constants) are recomputed in every stage that
needs them rather than handed on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from eexit_cli.errors import InputError


@dataclass(frozen=True)
class StageCut:
    """Stage k of a cut graph: the tensors it reads, its exit and what it hands on."""

    inputs: tuple[str, ...]
    exit: str
    hands_on: tuple[str, ...]  # boundary tensors produced here and read by a later stage


def cut_stages(model, exit_names: Sequence[str], path: str = "<model>") -> list[StageCut]:
    """Where to cut ``model`` between its exits (pure graph analysis, no sub-graphs yet).

    Stage k holds the nodes needed for exit k that no earlier exit needs. A node
    without inputs (a constant) is not handed on: each stage that needs it recomputes
    it. Raises InputError when an exit needs no node of its own (it is computed before
    the previous exit: the exits are out of order).
    """
    graph = model.graph
    nodes = list(graph.node)
    producer = {}
    for i, node in enumerate(nodes):
        for out in node.output:
            if out:
                producer[out] = i
    free = {i for i, node in enumerate(nodes) if not any(node.input)}

    def needed(names, stop: set[int]) -> set[int]:
        seen: set[int] = set()
        stack = [n for n in names]
        while stack:
            name = stack.pop()
            i = producer.get(name)
            if i is None or i in seen or i in stop:
                continue
            seen.add(i)
            stack.extend(x for x in nodes[i].input if x)
        return seen

    owner: dict[int, int] = {}  # node -> stage
    for k, name in enumerate(exit_names):
        mine = needed([name], set(owner)) - free
        if not mine and k > 0:
            raise InputError(
                f"{path}: exit {k + 1} ({name}) needs no computation beyond exit {k}'s; "
                "the exits are out of order (check --outputs), or use --mode prefix"
            )
        for i in mine:
            owner[i] = k
    for i in free:
        owner.setdefault(i, -1)  # recomputed where needed

    graph_inputs = {v.name for v in graph.input} - {t.name for t in graph.initializer}
    n_stages = len(exit_names)
    reads: list[list[str]] = [[] for _ in range(n_stages)]
    hands_on: list[list[str]] = [[] for _ in range(n_stages)]
    for i, node in enumerate(nodes):
        k = owner.get(i)
        if k is None or k < 0:
            continue
        for name in node.input:
            if not name:
                continue
            j = producer.get(name)
            if j is None:
                if name in graph_inputs and name not in reads[k]:
                    reads[k].append(name)
                continue
            src = owner.get(j, -1)
            if src >= 0 and src != k:
                if src > k:  # cannot happen for a valid (acyclic) graph
                    raise InputError(f"{path}: tensor {name!r} is read before it is computed")
                if name not in reads[k]:
                    reads[k].append(name)
                if name not in hands_on[src]:
                    hands_on[src].append(name)
    # an exit read by a later stage is handed on as the exit output itself
    cuts = []
    for k, name in enumerate(exit_names):
        extra = tuple(t for t in hands_on[k] if t != name)
        cuts.append(StageCut(inputs=tuple(reads[k]), exit=name, hands_on=extra))
    return cuts


def stage_models(onnx, model, path: str, cuts: Sequence[StageCut]) -> list:
    """One sub-graph per stage (``onnx.utils.Extractor``), after shape inference when a
    boundary tensor has no type yet."""
    names = {n for c in cuts for n in c.inputs + c.hands_on}
    known = {v.name for v in model.graph.value_info} | {v.name for v in model.graph.input} | {
        v.name for v in model.graph.output}
    if not names <= known:
        try:
            model = onnx.shape_inference.infer_shapes(model)
        except Exception as exc:
            raise InputError(f"{path}: shape inference failed ({exc}); try --mode prefix") from None
        known = {v.name for v in model.graph.value_info} | {v.name for v in model.graph.input} | {
            v.name for v in model.graph.output}
        untyped = sorted(names - known)
        if untyped:
            raise InputError(
                f"{path}: the type of boundary tensor {untyped[0]!r} cannot be inferred, so the graph "
                "cannot be cut between exits; export it with known shapes, or use --mode prefix"
            )
    extractor = onnx.utils.Extractor(model)
    subs = []
    for k, cut in enumerate(cuts):
        try:
            subs.append(extractor.extract_model(list(cut.inputs), [cut.exit, *cut.hands_on]))
        except Exception as exc:
            raise InputError(f"{path}: cannot cut stage {k + 1} (up to {cut.exit!r}) out of the graph ({exc})") from None
    return subs


__all__ = ["StageCut", "cut_stages", "stage_models"]

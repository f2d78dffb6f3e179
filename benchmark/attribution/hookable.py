"""A copy of a model that module-hooking explainers (DeepLIFT, Guided Backprop) can run on.

Captum's DeepLIFT hooks every nonlinear module and stores the input and output of its call on
the module itself; a module called twice per forward pass (torchvision's ResNet blocks call one
`ReLU` two or three times) keeps only its last call, and an in-place ReLU overwrites the very
tensor the hook kept. `hookable_copy` returns a deep copy that computes the same function with
every nonlinear call site its own module and no activation in place; the evaluated model is
never touched.
"""

from __future__ import annotations

import copy
from collections import Counter

import torch
from torch import nn
from torch.fx import GraphModule, symbolic_trace

# The nonlinearities Captum's DeepLIFT and Guided Backprop hook (and any module with `inplace`).
NONLINEAR = (nn.ReLU, nn.ELU, nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.Softmax, nn.MaxPool1d, nn.MaxPool2d,
             nn.MaxPool3d)


def calls_per_module(model: nn.Module, x: torch.Tensor) -> Counter[nn.Module]:
    """How often each submodule runs in one forward pass on `x`."""
    counts: Counter[nn.Module] = Counter()
    handles = [m.register_forward_pre_hook(lambda m, _args: counts.update([m])) for m in model.modules()]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return counts


def split_call_sites(parent: nn.Module, reused: set[nn.Module]) -> GraphModule:
    """`parent` traced with torch.fx, each call of a module in `reused` retargeted to its own copy."""
    traced = symbolic_trace(parent)
    seen: Counter[str] = Counter()
    for node in traced.graph.nodes:
        if node.op != "call_module":
            continue
        module = traced.get_submodule(node.target)
        if module not in reused:
            continue
        seen[node.target] += 1
        if seen[node.target] > 1:  # the first call keeps the original module
            name = f"{node.target.replace('.', '_')}_call{seen[node.target]}"
            traced.add_submodule(name, copy.deepcopy(module))
            node.target = name
    traced.recompile()
    return traced


def hookable_copy(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """A deep copy of `model` (same outputs) with no in-place activations and every nonlinear
    module called at most once per forward pass. Raises ValueError when a reused module's
    parent cannot be traced by torch.fx."""
    twin = copy.deepcopy(model)
    for module in twin.modules():
        if getattr(module, "inplace", False) is True:
            setattr(module, "inplace", False)
    counts = calls_per_module(twin, example)
    reused: set[nn.Module] = {m for m, n in counts.items() if n > 1 and isinstance(m, NONLINEAR)}
    if not reused:
        return twin
    parents = {}
    for name, module in twin.named_modules():
        for child in module.children():
            if child in reused:
                parents[name] = module
    for name, parent in sorted(parents.items(), key=lambda item: -item[0].count(".")):
        try:
            rewritten = split_call_sites(parent, reused)
        except Exception as err:  # torch.fx cannot trace data-dependent control flow
            raise ValueError(f"module {name or type(parent).__name__!r} calls a nonlinearity more than once and "
                             f"cannot be traced to give each call its own module ({type(err).__name__})") from None
        if name:
            owner, _, attr = name.rpartition(".")
            setattr(twin.get_submodule(owner) if owner else twin, attr, rewritten)
        else:
            twin = rewritten
    return twin

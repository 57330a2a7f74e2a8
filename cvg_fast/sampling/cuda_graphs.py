"""Fixed-shape generator calls replayed as CUDA graphs during generation.

Why: a sampling run makes thousands of identical calls (the upscaler on a full
group of windows; level 1 on a full time chunk, its ConvGRU steps included) of
many small kernels each; on a GPU their launch overhead, not the math, sets
the speed. A CUDA graph records one call's kernels once and replays them with
one launch.

`GraphedCall(fn)` keeps one graph per call signature (tensor shapes and dtypes,
the non-tensor arguments, the autocast state): a sampling run sees few (full
groups, the last ragged group; the first, middle and last level-1 chunk), and
past `max_graphs` signatures it runs eagerly. A replay copies the arguments
into the graph's static inputs and returns CLONES of its static outputs (the
next replay overwrites them, and the stream code keeps slices of outputs
around). A capture that fails (an op that cannot be captured) warns once and
that signature runs eagerly from then on.

Capture runs under `torch.inference_mode` in generate(); autocast must run with
`cache_enabled=False` (a cached weight cast made during capture would be freed
when the autocast region ends, under the graph's feet): `_batch_chunks` does so.
Not run on this project's CI (no GPU): its copy-in/clone-out logic is tested with a
stand-in graph that re-runs the function on the static inputs (tests/test_generate_stream.py).
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch
from torch.utils._pytree import tree_flatten, tree_map, tree_unflatten


class _CudaGraph:
    """torch.cuda.CUDAGraph behind the two calls GraphedCall needs (replaceable in tests)."""

    def __init__(self):
        self.graph = torch.cuda.CUDAGraph()

    def capture(self, fn: Callable[[], object]) -> object:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # warm-up off the capture: lazy init, autotuning
            for _ in range(2):
                fn()
        torch.cuda.current_stream().wait_stream(stream)
        with torch.cuda.graph(self.graph):
            return fn()

    def replay(self) -> None:
        self.graph.replay()


class GraphedCall:
    """fn(*args, **kwargs) -> tensors, replayed from one captured graph per signature."""

    def __init__(self, fn: Callable, max_graphs: int = 4, graph_factory=_CudaGraph):
        self.fn = fn
        self.max_graphs = max_graphs
        self.graph_factory = graph_factory
        self.graphs: dict = {}  # signature -> (static leaves, static output, graph) or None
        self.replays = 0

    @staticmethod
    def _signature(leaves, spec) -> tuple:
        parts = []
        for leaf in leaves:
            if isinstance(leaf, torch.Tensor):
                parts.append(("T", tuple(leaf.shape), leaf.dtype, leaf.device))
            else:
                parts.append(leaf)
        kind = "cuda"
        return (str(spec), tuple(parts), torch.is_autocast_enabled(kind),
                torch.get_autocast_dtype(kind))

    def __call__(self, *args, **kwargs):
        leaves, spec = tree_flatten((args, kwargs))
        key = self._signature(leaves, spec)
        if key not in self.graphs:
            if len(self.graphs) >= self.max_graphs:
                return self.fn(*args, **kwargs)
            self.graphs[key] = self._capture(leaves, spec)
        entry = self.graphs[key]
        if entry is None:  # capture failed for this signature
            return self.fn(*args, **kwargs)
        static, out, graph = entry
        for s, leaf in zip(static, leaves):
            if isinstance(s, torch.Tensor):
                s.copy_(leaf)
        graph.replay()
        self.replays += 1
        return tree_map(lambda t: t.clone() if isinstance(t, torch.Tensor) else t, out)

    def _capture(self, leaves, spec):
        static = [leaf.clone() if isinstance(leaf, torch.Tensor) else leaf for leaf in leaves]
        s_args, s_kwargs = tree_unflatten(static, spec)
        graph = self.graph_factory()
        try:
            out = graph.capture(lambda: self.fn(*s_args, **s_kwargs))
        except Exception as e:  # an op that cannot be captured: this signature runs eagerly
            warnings.warn(f"CUDA graph capture failed, running this call eagerly: "
                          f"{type(e).__name__}: {e}", stacklevel=3)
            return None
        return static, out, graph


def graphed_window_call(level: int, module: torch.nn.Module) -> GraphedCall:
    """Cascade.stream's `window_call`: level 1's chunk call and every upscaler's window
    call, each through its own GraphedCall."""
    return GraphedCall(module)

"""Peak bytes of the tensors a call keeps alive: exact accounting, not timing.

Why: "memory does not grow with the video length" is a claim about which tensors are
alive at once, and a process's RSS answers it only roughly (allocator caches, arenas,
the encoder's buffers, the interpreter). This counts exactly what torch allocates:

    with LiveTensorTracker("cpu") as tr:
        generate(cascade, frames=1024)
    tr.peak_bytes      # most bytes of tensor storage alive at once inside the block
    tr.current_bytes   # bytes of those storages still alive now

CPU: a `TorchDispatchMode` sees the output tensors of every aten op (custom ops
registered with torch.ops included; autocast's casts and composite ops arrive as the
aten ops they run), records each output's untyped storage once, keyed by its data
pointer, with a weak reference (`StorageWeakRef`: it does not keep the storage alive),
and drops it once the reference has expired. A view shares its base's storage and adds
nothing; a storage counts whole (`nbytes()`), as the allocator gave it.

What it measures is what the block allocates: tensors created before entering (model
parameters, inputs) are not counted, even if the block holds them; memory allocated
outside torch ops (numpy arrays, `torch.from_numpy`, an op's internal scratch space)
is not seen, and neither are ops run on other threads (dispatch modes are per thread;
generate's writer thread only handles numpy frames). Peak is exact at op granularity: it
is checked after every op's outputs are recorded, with every freed storage removed first.

Cost: about 1.3x the time of a small CPU generate() (tiny preset, 64-1,024 frames); the
check costs a pass over the live entries only when the running total (freed storages
not yet swept included) passes the peak.

CUDA: the caching allocator counts for us: `max_memory_allocated() - memory_allocated()`
at entry after `reset_peak_memory_stats()` (all tensors on the device, not only the
block's: the same "what the block adds" reading whenever nothing else runs on it).
"""

from __future__ import annotations

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class _StorageTracker(TorchDispatchMode):
    """Records the storages of op outputs; bytes alive now and at most (CPU tensors)."""

    def __init__(self):
        super().__init__()
        # data_ptr -> (weak ref to the storage, its bytes, storage identity)
        self.live: dict[int, tuple[StorageWeakRef, int, int]] = {}
        self.by_cdata: dict[int, int] = {}  # storage identity -> its data_ptr key
        self.upper = 0  # bytes of every recorded entry, freed ones not yet swept included
        self.peak = 0

    def sweep(self) -> int:
        """Drop entries whose storage was freed; the exact bytes alive now."""
        dead = [k for k, (ref, _, _) in self.live.items() if ref.expired()]
        for k in dead:
            self._forget(k)
        return self.upper

    def _forget(self, key: int) -> None:
        _, nbytes, cdata = self.live.pop(key)
        self.upper -= nbytes
        if self.by_cdata.get(cdata) == key:
            del self.by_cdata[cdata]

    def _record(self, t: torch.Tensor, inputs) -> int:
        """Record t's storage unless already recorded or it is an input's; the bytes added.

        inputs() -> the data pointers of the op's input storages (asked only when needed):
        an output in one of them is a view or an in-place result, not an allocation.
        """
        if t.device.type != "cpu" or type(t) not in (torch.Tensor, torch.nn.Parameter):
            return 0  # other devices, fake/meta/subclass tensors: nothing host-allocated to count
        st = t.untyped_storage()
        nbytes, key = st.nbytes(), st.data_ptr()
        if nbytes == 0 or key == 0:
            return 0
        if key not in self.live and key in inputs():
            return 0  # aliases a storage made before the block (views of it, in-place ops)
        cdata = st._cdata
        old = self.live.get(key)
        if old is not None:
            if not old[0].expired():
                if old[1] != nbytes and old[2] == cdata:  # same storage, resized in place
                    self.live[key] = (old[0], nbytes, cdata)
                    self.upper += nbytes - old[1]
                    return max(nbytes - old[1], 0)
                return 0  # a view of (or memory shared with) a storage already counted
            self._forget(key)  # that storage was freed; this one reuses its address
        moved = self.by_cdata.get(cdata)
        if moved is not None and moved in self.live and not self.live[moved][0].expired():
            self._forget(moved)  # the same storage reallocated at another address (resize_)
        self.live[key] = (StorageWeakRef(st), nbytes, cdata)
        self.by_cdata[cdata] = key
        self.upper += nbytes
        return nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        seen: list[set[int]] = []

        def inputs() -> set[int]:
            if not seen:
                seen.append({x.untyped_storage().data_ptr() for x in tree_leaves((args, kwargs))
                             if isinstance(x, torch.Tensor) and x.device.type == "cpu"
                             and type(x) in (torch.Tensor, torch.nn.Parameter)})
            return seen[0]

        added = 0
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor):
                added += self._record(leaf, inputs)
        # `upper` overestimates what is alive (freed storages not yet swept): only when
        # it passes the peak can a new peak have been reached, and only then is a sweep
        # (a pass over the live entries) needed to know the exact figure.
        if added and self.upper > self.peak:
            self.peak = max(self.peak, self.sweep())
        return out


class LiveTensorTracker:
    """Context manager: peak and current bytes of the tensors allocated inside it.

    device: where the block computes ("cpu" or a CUDA device). See the module docstring
    for what is and is not counted. Works under torch.inference_mode, no_grad and
    autocast (enter it inside or outside them). Readable during and after the block.
    """

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self._mode: _StorageTracker | None = None
        self._base = 0  # CUDA: bytes allocated at entry
        self._cuda_peak: int | None = None  # CUDA: fixed at exit

    def __enter__(self) -> "LiveTensorTracker":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            self._cuda_peak = None
        else:
            self._mode = _StorageTracker()
            self._mode.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self._cuda_peak = self._cuda_stat(torch.cuda.max_memory_allocated)
        elif self._mode is not None:
            self._mode.__exit__(*exc)

    def _cuda_stat(self, fn) -> int:
        return max(int(fn(self.device)) - self._base, 0)

    @property
    def peak_bytes(self) -> int:
        """Most bytes alive at once among the storages allocated inside the block."""
        if self.device.type == "cuda":
            return self._cuda_peak if self._cuda_peak is not None else self._cuda_stat(
                torch.cuda.max_memory_allocated)
        return self._mode.peak if self._mode is not None else 0

    @property
    def current_bytes(self) -> int:
        """Bytes of the storages allocated inside the block that are still alive."""
        if self.device.type == "cuda":
            return self._cuda_stat(torch.cuda.memory_allocated)
        return self._mode.sweep() if self._mode is not None else 0

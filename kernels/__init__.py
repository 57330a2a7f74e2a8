"""Triton kernels of cvg_fast, installed as the subpackage `cvg_fast.kernels`.

Each module holds @triton.jit kernels and thin launchers taking torch tensors.
They import without Triton (each module exposes `HAS_TRITON`); the public ops
in `cvg_fast.ops` choose between them and the other backends.
"""

"""cvg-fast: Cascaded Video Generation (Castrejon, Ballas & Courville) built for speed.

Public entry points (imported lazily so `import cvg_fast` stays cheap):
    load_cascade(run_dir)           -> Cascade of trained levels
    generate(cascade, frames=...)   -> uint8 (N, F, H, W, 3) or .mp4 files
    get_preset(name)                -> CascadeConfig ("ucf101", "kinetics600", "bdd100k", "tiny")
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["generate", "load_cascade", "get_preset", "CvgError", "__version__"]

from cvg_fast.errors import CvgError


def __getattr__(name: str):
    if name in ("generate", "load_cascade"):
        from cvg_fast import sampling

        return getattr(sampling, name)
    if name == "get_preset":
        from cvg_fast.config import get_preset

        return get_preset
    raise AttributeError(f"module 'cvg_fast' has no attribute {name!r}")

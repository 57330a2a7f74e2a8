"""Shared fixtures: a small synthetic dataset of real .mp4 files and a tiny config."""

import os

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory):
    """A small synthetic dataset (real .mp4 files) shared by the training tests."""
    from cvg_fast.data import write_synthetic_dataset

    root = tmp_path_factory.mktemp("synth")
    data = write_synthetic_dataset(root / "data", num_classes=2, videos_per_class=4, frames=24,
                                   size=32, fps=8, progress=False)
    assert len(list(data.glob("*/*.mp4"))) == 8, "the synthetic dataset is incomplete"
    return data


def narrow_tiny(name: str = "tiny"):
    """A preset's structure (frames, sizes, windows) with narrow, cheap networks."""
    from cvg_fast.config import get_preset

    cfg = get_preset(name)
    cfg.train.batch_size = 4
    cfg.train.num_workers = 0
    cfg.train.bn_recalibration_batches = 1
    for lv in cfg.levels:
        lv.g_ch = lv.d_ch = 8
    return cfg


@pytest.fixture
def tiny_cfg():
    cfg = narrow_tiny()
    cfg.train.log_every = 1
    return cfg


def run_in_triton_interpreter(test_file: str, k_expr: str, min_passed: int) -> None:
    """Rerun `test_file`'s cases selected by `k_expr` under TRITON_INTERPRET=1 in a subprocess
    (the variable must be set before Triton kernels are defined) and assert that at least
    `min_passed` ran and passed, none failed or skipped."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", test_file, "-q", "-p", "no:cacheprovider", "-k", k_expr],
        cwd=Path(__file__).resolve().parents[1], env=env, capture_output=True, text=True,
        timeout=300)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    passed = int(re.search(r"(\d+) passed", summary).group(1))
    assert passed >= min_passed and "failed" not in summary and "skipped" not in summary, summary

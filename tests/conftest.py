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

"""Data-parallel training on CPU with gloo: synced BN statistics, gradient averaging, torchrun."""

import contextlib
import os
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def gloo_group(rank: int, world: int, port: int):
    """Inside an mp.spawn worker: this process in a localhost gloo group of `world`."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        yield
    finally:
        dist.barrier()
        dist.destroy_process_group()


def _worker(rank, world, port, x, grad_out, result):
    with gloo_group(rank, world, port):
        from cvg_fast.nn import SyncBatchNorm
        from cvg_fast.training.distributed import average_gradients

        torch.manual_seed(0)
        bn = SyncBatchNorm(3)
        n = x.shape[0] // world
        xs = x[rank * n:(rank + 1) * n].clone().requires_grad_(True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            y = bn(xs)
            y.backward(grad_out[rank * n:(rank + 1) * n])
        # a warning here would print on every process at every training step
        assert not caught, [str(w.message) for w in caught]
        # DDP averages parameter gradients of per-rank losses; the global loss is their mean
        for p in bn.parameters():
            p.grad *= world
        average_gradients(bn, world)
        result[rank] = (y.detach(), xs.grad.detach(), bn.weight.grad.clone(),
                        bn.running_mean.clone(), bn.running_var.clone())


def test_sync_batchnorm_equals_full_batch_bn():
    torch.manual_seed(0)
    x = torch.randn(8, 3, 2, 5, 5)  # (N, C, T, H, W): works on clips too
    g = torch.randn_like(x)
    ref = torch.nn.BatchNorm3d(3)
    xr = x.clone().requires_grad_(True)
    yr = ref(xr)
    yr.backward(g)
    manager = mp.Manager()
    result = manager.dict()
    mp.spawn(_worker, args=(2, _free_port(), x, g, result), nprocs=2, join=True)
    y = torch.cat([result[0][0], result[1][0]])
    gx = torch.cat([result[0][1], result[1][1]])
    torch.testing.assert_close(y, yr.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gx, xr.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(result[0][2], ref.weight.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(result[0][3], ref.running_mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(result[1][4], ref.running_var, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_torchrun_two_processes_train_and_resume(synth_data, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    base = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
            "--master_port", str(_free_port()), str(ROOT / "train" / "level.py"),
            "--level", "1", "--data", str(synth_data), "--out", str(tmp_path / "run"),
            "--batch-size", "2", "--g-ch", "8", "--d-ch", "8", "--num-workers", "0",
            "--no-progress", "--device", "cpu"]
    p = subprocess.run(base + ["--steps", "2"], capture_output=True, text=True, env=env,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    from cvg_fast.models.checkpoint import checkpoint_path, load_checkpoint

    state = load_checkpoint(checkpoint_path(tmp_path / "run", 1))
    assert state["step"] == 2 and state["world"] == 2
    base[5] = str(_free_port())
    p = subprocess.run(base + ["--steps", "3", "--resume"], capture_output=True, text=True,
                       env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert load_checkpoint(checkpoint_path(tmp_path / "run", 1))["step"] == 3
    # what the user reads: one summary line for the job, no per-step warnings from any rank
    assert p.stdout.count("level 1: 3 steps in") == 1, p.stdout
    assert "deprecated" not in p.stdout + p.stderr, (p.stdout + p.stderr)[-2000:]


def test_ranks_wait_on_a_file_not_a_collective(tmp_path):
    import threading

    from cvg_fast.errors import CvgError
    from cvg_fast.training import distributed as D

    assert len(D.launch_token()) == 16 and D.launch_token() != D.launch_token()  # 1 process
    ready = tmp_path / ".ready"
    timer = threading.Timer(0.3, D.publish, args=(ready,))
    timer.start()
    D.wait_for(ready, "indexing", poll_s=0.02)  # returns once rank 0 has published
    timer.join()
    failed = tmp_path / ".failed"
    D.publish(failed, error="/data: no video files found")
    with pytest.raises(CvgError, match="rank 0 failed indexing: /data: no video files found"):
        D.wait_for(failed, "indexing")
    with pytest.raises(CvgError, match="never appeared"):
        D.wait_for(tmp_path / ".never", "indexing", poll_s=0.01, timeout_s=0.05)


def _one_process_trainer_in_a_group(rank, world, port, result):
    with gloo_group(rank, world, port):
        from conftest import narrow_tiny
        from cvg_fast.errors import CvgError
        from cvg_fast.training import LevelTrainer
        from cvg_fast.training.distributed import DistInfo

        try:
            LevelTrainer(narrow_tiny(), 1, None, Path(f"/nonexistent/{rank}"), None, DistInfo())
            result[rank] = "built"
        except CvgError as exc:
            result[rank] = str(exc)


def test_a_one_process_trainer_inside_a_process_group_is_refused():
    """It would hang at its first synchronised BN, waiting for processes that never come."""
    result = mp.Manager().dict()
    mp.spawn(_one_process_trainer_in_a_group, args=(2, _free_port(), result), nprocs=2,
             join=True)
    for rank in (0, 1):
        assert "given world 1 inside a process group of 2" in result[rank], result[rank]

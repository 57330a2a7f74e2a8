"""Overlapped (bucketed, hook-launched) gradient averaging equals the flat all-reduce."""

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn as nn

from test_distributed import _free_port, gloo_group


class _Net(nn.Module):
    """Convs of several sizes (several buckets), a channels-last conv (strided .grad) and a
    parameter no backward reaches (its .grad stays None on every process)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 16, 3, padding=1)
        self.b = nn.Conv2d(16, 16, 3, padding=1).to(memory_format=torch.channels_last)
        self.unused = nn.Linear(4, 4)
        self.c = nn.Conv2d(16, 1, 1)

    def forward(self, x):
        return self.c(torch.relu(self.b(torch.relu(self.a(x))))).mean()


def _worker(rank, world, port, bucket_mb, result):
    with gloo_group(rank, world, port):
        from cvg_fast.training.distributed import average_gradients
        from cvg_fast.training.grad_sync import OverlappedGradSync

        torch.manual_seed(0)
        flat_net = _Net()
        lap_net = _Net()
        lap_net.load_state_dict(flat_net.state_dict())
        sync = OverlappedGradSync(lap_net, world, bucket_mb=bucket_mb)
        out = {"buckets": len(sync.buckets)}
        for step in range(2):  # twice: the buckets re-arm after finish()
            x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(10 * step + rank))
            for net in (flat_net, lap_net):
                net.zero_grad(set_to_none=True)
            loss_f = flat_net(x)
            loss_f.backward()
            mean_f = average_gradients(flat_net, world, extra=loss_f.detach())
            loss_o = lap_net(x)
            loss_o.backward()
            mean_o = sync.finish(extra=loss_o.detach())
            out[step] = (mean_f, mean_o,
                         {k: p.grad for k, p in flat_net.named_parameters()},
                         {k: p.grad for k, p in lap_net.named_parameters()})
        result[rank] = out
        sync.close()


@pytest.mark.parametrize("bucket_mb", [25.0, 1e-9], ids=["one_bucket", "bucket_per_param"])
def test_overlapped_equals_flat(bucket_mb):
    result = mp.Manager().dict()
    mp.spawn(_worker, args=(2, _free_port(), bucket_mb, result), nprocs=2, join=True)
    assert result[0]["buckets"] == (1 if bucket_mb > 1 else 8)
    for step in range(2):
        per_rank = [result[r][step] for r in range(2)]
        for mean_f, mean_o, flat, lap in per_rank:
            assert torch.equal(mean_f, mean_o)  # the averaged loss, as the guard reads it
            assert flat.keys() == lap.keys()
            for k in flat:
                if k.startswith("unused"):
                    assert flat[k] is None and lap[k] is None, k
                else:  # the same sums divided by the same world: bit-equal
                    assert torch.equal(flat[k], lap[k]), k
        # averaged: both processes hold the same gradients
        for k in per_rank[0][3]:
            if not k.startswith("unused"):
                assert torch.equal(per_rank[0][3][k], per_rank[1][3][k]), k


def test_one_process_installs_nothing():
    from cvg_fast.training.grad_sync import OverlappedGradSync

    net = _Net()
    sync = OverlappedGradSync(net, world=1)
    assert sync.buckets == [] and sync._handles == []
    loss = net(torch.randn(1, 3, 8, 8))
    loss.backward()
    extra = loss.detach()
    assert sync.finish(extra=extra) is extra


@pytest.mark.parametrize("requested, device, world, expected", [
    ("auto", "cpu", 2, "flat"),      # measured: gloo's thread competes with backward on CPU
    ("auto", "cuda", 2, "overlap"),  # NCCL's stream runs beside backward's kernels
    ("overlap", "cpu", 2, "overlap"),
    ("flat", "cuda", 8, "flat"),
    ("auto", "cuda", 1, None),       # one process: nothing to average
    ("overlap", "cpu", 1, None),
])
def test_grad_sync_mode(requested, device, world, expected):
    from cvg_fast.training.grad_sync import grad_sync_mode

    assert grad_sync_mode(requested, torch.device(device), world) == expected


def test_grad_sync_mode_rejects_unknown_names():
    from cvg_fast.config import get_preset
    from cvg_fast.errors import CvgError
    from cvg_fast.training.grad_sync import grad_sync_mode

    with pytest.raises(ValueError, match="grad_sync must be"):
        grad_sync_mode("ring", torch.device("cpu"), 2)
    cfg = get_preset("tiny")
    cfg.train.grad_sync = "ring"
    with pytest.raises(CvgError, match="grad_sync must be 'auto', 'overlap' or 'flat'"):
        cfg.validate()

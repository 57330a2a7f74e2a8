"""The PyAV loader's sharding: ranks draw disjoint, complete epochs."""

import pytest


@pytest.mark.parametrize("world,batch,n", [(1, 4, 12), (2, 3, 12), (3, 2, 13), (4, 5, 37)])
def test_pyav_sampler_shards_are_disjoint_and_complete_per_epoch(world, batch, n):
    """The PyAV loader's StepSampler: over ranks, every epoch's items are each video exactly
    once (up to the epoch's ragged end), no video twice within an epoch across ranks."""
    from cvg_fast.training.data import StepSampler

    samplers = [StepSampler(n, batch, rank, world, seed=5) for rank in range(world)]
    per_step = world * batch
    steps = 3 * n // per_step + 2
    seen: dict[int, list[int]] = {}  # epoch -> videos drawn in it, all ranks
    for step in range(steps):
        for rank, s in enumerate(samplers):
            for j in range(batch):
                pos = (step * world + rank) * batch + j
                seen.setdefault(pos // n, []).append(s.item(step, j)[0])
    for epoch, videos in seen.items():
        assert len(videos) == len(set(videos)), f"epoch {epoch}: a video twice across ranks"
        if len(videos) == n:
            assert sorted(videos) == list(range(n))
    assert sum(len(v) == n for v in seen.values()) >= 2  # at least two whole epochs checked

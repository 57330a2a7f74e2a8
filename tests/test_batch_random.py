"""BatchRandom: a sample's draws depend on its global position, not on the batch split."""

import pytest
import torch

from cvg_fast.models import BatchRandom
from cvg_fast.models.discriminators import SpatialDiscriminator
from cvg_fast.training.data import StepSampler, first_position


def _draws(rnd: BatchRandom, n: int):
    """A step's sequence: a window start, noise, then a [real; fake] frame choice."""
    return rnd.randint(5, n), rnd.randn(n, 3, 2), SpatialDiscriminator.sample_frames(
        2 * n, 6, 2, rnd, torch.device("cpu"))


def test_split_batches_draw_what_the_whole_batch_draws():
    key = (7, "step", 3)
    whole = _draws(BatchRandom(key, range(8, 12), "cpu"), 4)
    halves = [_draws(BatchRandom(key, range(a, a + 2), "cpu"), 2) for a in (8, 10)]
    starts = torch.cat([h[0] for h in halves])
    noise = torch.cat([h[1] for h in halves])
    assert torch.equal(whole[0], starts) and torch.equal(whole[1], noise)
    # D's 2N rows: sample i owns rows i (real) and N + i (fake)
    real = torch.cat([h[2][:2] for h in halves])
    fake = torch.cat([h[2][2:] for h in halves])
    assert torch.equal(whole[2], torch.cat([real, fake]))
    # and the draws do depend on the position and the key
    assert not torch.equal(whole[1], _draws(BatchRandom(key, range(9, 13), "cpu"), 4)[1])
    assert not torch.equal(whole[1], _draws(BatchRandom((7, "step", 4), range(8, 12), "cpu"),
                                            4)[1])


def test_shared_generator_is_the_same_for_every_part():
    a = BatchRandom((1, "step", 0), range(0, 2), "cpu")
    b = BatchRandom((1, "step", 0), range(2, 4), "cpu")
    assert torch.equal(torch.rand(3, generator=a.shared), torch.rand(3, generator=b.shared))


def test_state_replays_the_draws():
    rnd = BatchRandom((1, "bn0", 5), range(3), "cpu")
    state = rnd.get_state()
    first = rnd.randn(3, 4)
    rnd.set_state(state)
    assert torch.equal(first, rnd.randn(3, 4))


def test_rows_must_be_a_multiple_of_the_batch():
    with pytest.raises(ValueError, match="multiple of the batch"):
        BatchRandom((0,), range(3), "cpu").randn(4, 2)


def test_sampler_window_starts_are_the_trainers_first_draw():
    """The loader cuts real windows where the trainer's own first draw says (LevelViews)."""
    step, world, batch, k = 5, 2, 3, 7
    for rank in range(world):
        sampler = StepSampler(100, batch, rank, world, seed=11, window_starts=k)
        got = [sampler.item(step, j)[2] for j in range(batch)]
        first = first_position(step, rank, world, batch)
        want = BatchRandom((11, "step", step), range(first, first + batch), "cpu").randint(k, batch)
        assert got == want.tolist()

"""Generation at any length in constant memory: chunked level 1, batched windows, the writer
thread, memory accounting and the CUDA-graph wrapper's replay logic."""

import av
import numpy as np
import pytest
import torch

from cvg_fast.config import get_preset
from cvg_fast.errors import CvgError
from cvg_fast.live_tensors import LiveTensorTracker
from cvg_fast.models import frame_noise, video_noise
from cvg_fast.models.cascade import Cascade, build_generator
from cvg_fast.sampling import generate
from cvg_fast.sampling.cuda_graphs import GraphedCall


def _random_cascade(seed=0, classes=3, g_ch=8):
    """The tiny preset with random weights and non-trivial BN statistics (eval mode)."""
    torch.manual_seed(seed)
    cfg = get_preset("tiny")
    for lv in cfg.levels:
        lv.g_ch = g_ch
    gens = [build_generator(cfg, level, classes) for level in (1, 2)]
    for g in gens:
        for m in g.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
        if hasattr(g, "residual_gain"):  # a learned branch that shows
            g.residual_gain.data.fill_(0.05)
            g.noise_gain.data.fill_(0.5)
    return Cascade(cfg, gens, classes).eval()


@pytest.fixture(scope="module")
def cascade():
    return _random_cascade()


def _float_video(c, n, frames1, chunk_frames=None, max_batch=None, overlap=0.0, seed=0):
    ids = list(range(n))
    z = video_noise(seed, ids, c.level_cfg(1).z_dim)
    y = torch.tensor([i % c.num_classes for i in ids])
    with torch.inference_mode():
        return torch.cat(list(c.stream(
            z, y, frames1, lambda lv, a, b, s: frame_noise(seed, ids, lv, a, b, s),
            overlap=overlap, chunk_frames=chunk_frames, max_batch=max_batch)), dim=1)


@pytest.mark.parametrize("chunk_frames,max_batch,overlap",
                         [(1, 1, 0.0), (3, 2, 0.0), (5, 3, 0.5), (7, 8, 0.25), (64, 5, 0.5)])
def test_chunked_batched_stream_equals_one_pass(cascade, chunk_frames, max_batch, overlap):
    # 23 level-1 frames: not a multiple of the 4-frame window, of the chunks or of the batches
    ref = _float_video(cascade, 2, 23, overlap=overlap)  # one pass, one window at a time
    got = _float_video(cascade, 2, 23, chunk_frames, max_batch, overlap)
    assert got.shape == ref.shape == (2, 46, 3, 32, 32)
    torch.testing.assert_close(got, ref, atol=2e-5, rtol=0)
    # and the videos are not trivially equal to each other (a mixing bug would pass above)
    assert (ref[0] - ref[1]).abs().mean() > 1e-2


def test_generate_is_the_same_for_any_chunking_batching_and_precision_layout(cascade):
    kw = dict(num_videos=3, frames=45, seed=3, progress=False, amp="none", channels_last=False)
    ref = generate(cascade, chunk_frames=100, max_batch=1, batch_size=3, **kw)
    assert ref.shape == (3, 45, 32, 32, 3)
    for chunk_frames, max_batch, batch_size in [(1, 16, 2), (3, 5, 1), (8, 2, 3)]:
        got = generate(cascade, chunk_frames=chunk_frames, max_batch=max_batch,
                       batch_size=batch_size, **kw)
        diff = np.abs(got.astype(int) - ref.astype(int))
        assert diff.max() <= 1 and diff.mean() < 1e-3, (chunk_frames, max_batch, batch_size)
    # channels-last (fp32) takes other kernels: still the same video
    cl = generate(cascade, chunk_frames=5, max_batch=4, **{**kw, "channels_last": True})
    assert np.abs(cl.astype(int) - ref.astype(int)).mean() < 1e-2


def test_written_files_have_exactly_the_frames_asked_and_match_memory(cascade, tmp_path):
    kw = dict(num_videos=2, frames=37, seed=1, progress=False, chunk_frames=3, max_batch=3)
    paths, stats = generate(cascade, out=tmp_path, return_stats=True, **kw)
    arr = generate(cascade, **kw)
    assert stats.chunk_frames == 3 and stats.max_batch == 3
    for i, p in enumerate(paths):
        with av.open(str(p)) as c:
            frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
        assert frames.shape == (37, 32, 32, 3)
        luma = np.array([0.299, 0.587, 0.114])
        assert np.abs(frames @ luma - arr[i] @ luma).mean() < 4  # codec loss only
    assert sorted(q.name for q in tmp_path.iterdir()) == sorted(p.name for p in paths)


def _peak_bytes(c, frames, out):
    with LiveTensorTracker("cpu") as tr:
        generate(c, num_videos=2, frames=frames, out=out, progress=False, chunk_frames=8,
                 max_batch=4)
    return tr.peak_bytes


def test_peak_live_tensor_bytes_do_not_grow_with_length(cascade, tmp_path):
    short = _peak_bytes(cascade, 64, tmp_path / "a")
    long = _peak_bytes(cascade, 1024, tmp_path / "b")
    assert short > 0
    assert abs(long - short) / short < 0.10, (short, long)


def test_one_pass_level1_memory_grows_with_length(cascade):
    """The tracker can see growth: the old one-pass level 1 holds every frame's activations."""
    def peak(frames1):
        with LiveTensorTracker("cpu") as tr:
            _float_video(cascade, 2, frames1, chunk_frames=None, max_batch=4)
        return tr.peak_bytes

    assert peak(256) > 3 * peak(32)


def test_writer_error_surfaces_and_leaves_no_file(cascade, tmp_path, monkeypatch):
    from cvg_fast.data import video_io

    calls = []

    def broken_write(self, frames):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return original(self, frames)

    original = video_io.VideoWriter.write
    monkeypatch.setattr(video_io.VideoWriter, "write", broken_write)
    with pytest.raises(OSError, match="No space left"):
        generate(cascade, num_videos=2, frames=64, out=tmp_path, progress=False,
                 chunk_frames=2, max_batch=2)
    assert list(tmp_path.iterdir()) == []  # no final file, no partial file


def test_compute_error_mid_video_leaves_no_file(cascade, tmp_path, monkeypatch):
    gen = cascade.generators[1]
    original, calls = type(gen).forward, []

    def failing(self, *a, **k):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("simulated failure in the upscaler")
        return original(self, *a, **k)

    monkeypatch.setattr(type(gen), "forward", failing)
    with pytest.raises(RuntimeError, match="simulated"):
        generate(cascade, num_videos=2, frames=64, out=tmp_path, progress=False,
                 chunk_frames=2, max_batch=2)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kw,match", [({"chunk_frames": 0}, "chunk_frames"),
                                      ({"max_batch": -1}, "max_batch"),
                                      ({"max_batch": 2.5}, "max_batch"),
                                      ({"cuda_graphs": True}, "CUDA")])
def test_bad_arguments_are_one_line_errors(cascade, kw, match):
    with pytest.raises(CvgError, match=match):
        generate(cascade, frames=8, progress=False, **kw)


def test_auto_max_batch_is_sized_and_capped(cascade):
    from cvg_fast.sampling.generate import CPU_MAX_ROWS

    _, stats = generate(cascade, frames=8, progress=False, return_stats=True)
    assert 1 <= stats.max_batch <= CPU_MAX_ROWS
    assert stats.chunk_frames == 64  # CHUNK_PIXELS at 16px


class _FakeGraph:
    """Stand-in for a CUDA graph: capture runs fn once and keeps its output tensors; replay
    re-runs fn on the same static inputs and writes into those SAME output tensors, as a
    CUDA graph does."""

    def capture(self, fn):
        self.fn = fn
        self.out = fn()
        return self.out

    def replay(self):
        new = self.fn()
        for o, n in zip(torch.utils._pytree.tree_leaves(self.out),
                        torch.utils._pytree.tree_leaves(new)):
            o.copy_(n)


def test_graphed_call_copies_inputs_in_and_clones_outputs_out():
    calls = []

    def fn(x, y=None, scale=1):
        calls.append(x.shape)
        return (x * scale + (0 if y is None else y), [x.sum()])

    g = GraphedCall(fn, max_graphs=2, graph_factory=_FakeGraph)
    a, b = torch.randn(3), torch.randn(3)
    out_a = g(a, scale=2)
    out_b = g(b, scale=2)  # replay: must not overwrite out_a
    torch.testing.assert_close(out_a[0], a * 2)
    torch.testing.assert_close(out_b[0], b * 2)
    torch.testing.assert_close(out_b[1][0], b.sum())
    assert g.replays == 2 and len(g.graphs) == 1
    g(a, scale=3)  # another non-tensor argument: another graph
    g(torch.randn(4), scale=2)  # past max_graphs: eager
    assert len(g.graphs) == 2
    torch.testing.assert_close(g(b, y=a, scale=2)[0], b * 2 + a)  # eager, still right


def test_frames_are_encoded_on_the_writer_thread_while_compute_goes_on(cascade, tmp_path,
                                                                       monkeypatch):
    import threading

    from cvg_fast.data import video_io

    events = []  # ("write" | "window", thread name) in the order they happen
    original_write = video_io.VideoWriter.write
    gen = cascade.generators[1]
    original_forward = type(gen).forward

    def write(self, frames):
        events.append(("write", threading.current_thread().name))
        return original_write(self, frames)

    def forward(self, *a, **k):
        events.append(("window", threading.current_thread().name))
        return original_forward(self, *a, **k)

    monkeypatch.setattr(video_io.VideoWriter, "write", write)
    monkeypatch.setattr(type(gen), "forward", forward)
    generate(cascade, num_videos=2, frames=96, out=tmp_path, progress=False, chunk_frames=4,
             max_batch=2)
    writes = [i for i, (kind, _) in enumerate(events) if kind == "write"]
    windows = [i for i, (kind, _) in enumerate(events) if kind == "window"]
    assert {name for kind, name in events if kind == "write"} == {"cvg-video-writer"}
    assert {name for kind, name in events if kind == "window"} == {"MainThread"}
    assert writes[0] < windows[-1]  # encoding started before the last window was computed


@pytest.mark.parametrize("up", [False, True])
def test_sampling_fast_paths_equal_the_training_paths(up):
    """Under inference mode a GBlock runs its 1x1 skip before nearest upsampling and the
    conditional BN folds into one multiply-add: the same block output to float rounding."""
    from cvg_fast.nn.resblocks import GBlock

    torch.manual_seed(0)
    block = GBlock(8, 4, dims=2, up=up, num_classes=3)
    for bn in (block.bn1, block.bn2):
        bn.bn.running_mean.uniform_(-1, 1)
        bn.bn.running_var.uniform_(0.5, 2)
        bn.gain.weight.data.uniform_(0.5, 1.5)
        bn.bias.weight.data.uniform_(-0.5, 0.5)
    block.eval()
    x, y = torch.randn(6, 8, 5, 5), torch.tensor([0, 1, 2, 0, 1, 2])
    with torch.no_grad():
        ref = block(x, y)
    with torch.inference_mode():
        fast = block(x, y)
    assert fast.shape == ref.shape == (6, 4, 10 if up else 5, 10 if up else 5)
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)

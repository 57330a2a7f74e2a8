"""Video quality metrics: Fréchet distances and IS over pluggable video feature networks.

    from cvg_fast.metrics import load_i3d, frechet_distance, evaluate_run
    i3d = load_i3d("i3d_pretrained_400.pt")       # or StyleGAN-V's i3d_torchscript.pt
    logits = i3d.logits(x)                         # x (N, T, 3, 224, 224) in [-1, 1] -> (N, 400)

One file per metric or network: `frechet` (FD, IS, streaming statistics), `i3d`,
`synth_evaluator` (the built-in network for the synthetic set), `motion` (speed, flicker
and optical flow per 16-frame window, as ratios to real), `registry` (metric names),
`suite` (real statistics cache + scoring), `sources` (what is scored), `run_eval`
(`cvg eval`). Feature networks share `feature_net.VideoFeatureNet`.
"""

from cvg_fast.metrics.feature_net import VideoFeatureNet
from cvg_fast.metrics.frechet import FeatureStats, frechet_distance, inception_score
from cvg_fast.metrics.registry import METRIC_HELP, MetricSpec, parse_metric

__all__ = [
    "FeatureStats", "METRIC_HELP", "MetricSpec", "VideoFeatureNet", "evaluate_run",
    "frechet_distance", "inception_score", "load_i3d", "load_synth_evaluator", "parse_metric",
]


def __getattr__(name: str):
    # heavier pieces load on first use, so `import cvg_fast.metrics` stays cheap
    if name == "load_i3d":
        from cvg_fast.metrics.i3d import load_i3d

        return load_i3d
    if name == "load_synth_evaluator":
        from cvg_fast.metrics.synth_evaluator import load_synth_evaluator

        return load_synth_evaluator
    if name == "evaluate_run":
        from cvg_fast.metrics.run_eval import evaluate_run

        return evaluate_run
    raise AttributeError(f"module 'cvg_fast.metrics' has no attribute {name!r}")

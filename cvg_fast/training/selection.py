"""Model selection after each evaluation: which number is the run's metric, which way is
better, and when to stop early (--patience).

The paper trains "with early stopping when evaluation metrics stop improving". The best
checkpoint is kept by `LevelTrainer.save_best` (best.pt + best.json); the count of
evaluations without improvement is derived from best.json's step, so a resumed run counts
on from where the interrupted one was without any extra state.
"""

from __future__ import annotations

from cvg_fast.errors import CvgError

_NOT_METRICS = ("step", "eval_seconds")


def run_metric(result: dict) -> tuple[str | None, float | None, bool]:
    """(name, value, lower_is_better) of the run's metric in an `evaluate()` result: its
    first metric entry. FVD-type metrics (and names the registry does not know) are lower-
    is-better; Inception Score and class accuracy higher. (None, None, True) if it has none."""
    names = [k for k in result if k not in _NOT_METRICS]
    if not names:
        return None, None, True
    from cvg_fast.metrics.registry import parse_metric  # here: training imports no metrics

    name = names[0]
    try:
        lower = parse_metric(name, 1, 2).kind == "fvd"
    except CvgError:
        lower = True
    value = result[name]
    return name, (None if value is None else float(value)), lower


def evaluations_since_best(step: int, eval_every: int, best: dict | None,
                           metric: str | None) -> int:
    """Evaluations (every `eval_every` steps) after the best one, up to the one at `step`;
    all of them when there is no best of `metric` yet."""
    since = best["step"] if best is not None and best.get("metric") == metric else 0
    return step // eval_every - since // eval_every

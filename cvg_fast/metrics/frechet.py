"""Fréchet distance and Inception Score, and streaming feature statistics.

FD(N(mu1, S1), N(mu2, S2)) = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^{1/2}), computed in
float64 with `scipy.linalg.sqrtm` as the FID/FVD references do. A (near-)singular
product gets the usual retry with eps * I added to both covariances, said in a warning.

`FeatureStats` accumulates count, sum and the sum of outer products in float64 as
batches arrive, so the mean and covariance of 2,048 (or 2 million) feature vectors
never need all of them in memory at once.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

__all__ = ["FeatureStats", "frechet_distance", "inception_score"]


def _sqrtm(m: np.ndarray) -> np.ndarray:
    """scipy.linalg.sqrtm without its accuracy chatter (the caller checks finiteness)."""
    from scipy import linalg

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = linalg.sqrtm(m)
    return out[0] if isinstance(out, tuple) else out


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Fréchet distance between two Gaussians given (D,) means and (D, D) covariances."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"frechet_distance: shapes do not match: mu {mu1.shape} / {mu2.shape}, "
                         f"sigma {s1.shape} / {s2.shape}")
    diff = mu1 - mu2
    covmean = _sqrtm(s1.dot(s2))
    if not np.isfinite(covmean).all():
        warnings.warn(f"frechet_distance: the covariance product is singular; adding {eps:g} * I "
                      f"to both covariances", RuntimeWarning, stacklevel=2)
        offset = np.eye(s1.shape[0]) * eps
        covmean = _sqrtm((s1 + offset).dot(s2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            m = np.max(np.abs(covmean.imag))
            raise ValueError(f"frechet_distance: imaginary component {m:.3g} in the matrix square "
                             f"root; the covariances are not valid")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def inception_score(probs, splits: int = 10) -> tuple[float, float]:
    """IS = exp(E_x KL(p(y|x) || p(y))) of probabilities (N, K): (mean, std) over `splits`."""
    p = np.asarray(probs.cpu() if torch.is_tensor(probs) else probs, np.float64)
    if p.ndim != 2 or len(p) == 0:
        raise ValueError(f"inception_score expects probabilities (N, K), got shape {p.shape}")
    splits = max(1, min(splits, len(p)))
    scores = []
    for part in np.array_split(p, splits):
        py = part.mean(axis=0, keepdims=True)
        kl = part * (np.log(np.clip(part, 1e-12, None)) - np.log(np.clip(py, 1e-12, None)))
        scores.append(np.exp(kl.sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))


class FeatureStats:
    """Streaming float64 mean and covariance of feature vectors (D,)."""

    def __init__(self, dim: int):
        self.dim = int(dim)
        self.count = 0
        self.sum = np.zeros(self.dim, np.float64)
        self.sum_outer = np.zeros((self.dim, self.dim), np.float64)

    def update(self, feats) -> None:
        """Add a batch of features (N, D)."""
        f = np.asarray(feats.detach().cpu() if torch.is_tensor(feats) else feats, np.float64)
        if f.ndim != 2 or f.shape[1] != self.dim:
            raise ValueError(f"FeatureStats({self.dim}): got features of shape {f.shape}")
        self.count += f.shape[0]
        self.sum += f.sum(axis=0)
        self.sum_outer += f.T @ f

    def mean_cov(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean (D,) and unbiased covariance (D, D), as np.cov(features, rowvar=False)."""
        if self.count < 2:
            raise ValueError(f"FeatureStats: need at least 2 feature vectors, have {self.count}")
        mu = self.sum / self.count
        cov = (self.sum_outer - self.count * np.outer(mu, mu)) / (self.count - 1)
        return mu, cov

    # plain arrays: saved with np.savez, never pickled
    def state(self) -> dict[str, np.ndarray]:
        return {"count": np.asarray(self.count), "sum": self.sum, "sum_outer": self.sum_outer}

    @classmethod
    def from_state(cls, state) -> "FeatureStats":
        s = cls(len(state["sum"]))
        s.count, s.sum, s.sum_outer = int(state["count"]), np.asarray(state["sum"]), np.asarray(
            state["sum_outer"])
        return s

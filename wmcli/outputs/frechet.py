"""The Fréchet distance between two Gaussians fitted to feature sets (the distance behind FID and FVD).

d^2 = |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2), in float64. The matrix square
roots come from symmetric eigendecompositions (eigenvalues clipped at 0), which stay real and
stable for singular covariances, unlike a general sqrtm of S1 S2. The trace term is symmetric
in S1 and S2, and the result is clipped at 0.
"""

from __future__ import annotations

import numpy as np


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance (unbiased) of (N, D) features, in float64."""
    x = np.asarray(features, dtype=np.float64)
    return x.mean(axis=0), np.cov(x, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    r1 = _sqrt_psd(s1)
    cross = _sqrt_psd(r1 @ s2 @ r1)  # (S1^1/2 S2 S1^1/2)^1/2
    d = float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(cross))
    return max(d, 0.0)


def frechet_distance_of_features(a: np.ndarray, b: np.ndarray) -> float:
    return frechet_distance(*gaussian_stats(a), *gaussian_stats(b))

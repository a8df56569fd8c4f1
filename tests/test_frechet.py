"""Fréchet distance: zero for identical sets, closed forms for known Gaussians, symmetric."""

from __future__ import annotations

import numpy as np
import pytest

from wmcli.outputs.frechet import frechet_distance, frechet_distance_of_features


def test_identical_sets_give_zero():
    x = np.random.default_rng(0).normal(size=(500, 16))
    assert frechet_distance_of_features(x, x) == pytest.approx(0.0, abs=1e-8)


def test_closed_forms():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    # Equal covariances: only the means count.
    s = np.diag([1.0, 2.0, 3.0])
    assert frechet_distance(mu1, s, mu2, s) == pytest.approx(5.0, abs=1e-6)
    # Diagonal covariances: sum (sqrt(a) - sqrt(b))^2 over the diagonal.
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.25])
    want = 5.0 + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(want, abs=1e-6)
    # Commuting covariances with a shared rotation: the same formula in the eigenbasis.
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))
    got = frechet_distance(mu1, q @ np.diag(a) @ q.T, mu2, q @ np.diag(b) @ q.T)
    assert got == pytest.approx(want, abs=1e-6)
    # One dimension: (m1 - m2)^2 + (s1 - s2)^2.
    assert frechet_distance([0.0], [[4.0]], [3.0], [[1.0]]) == pytest.approx(9.0 + 1.0, abs=1e-9)


def test_symmetric_and_non_negative_with_singular_covariances():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(20, 64))  # fewer samples than dimensions: singular covariances
    b = rng.normal(size=(20, 64)) * 1.5 + 0.2
    d_ab, d_ba = frechet_distance_of_features(a, b), frechet_distance_of_features(b, a)
    assert d_ab == pytest.approx(d_ba, rel=1e-9) and d_ab > 0
    assert frechet_distance_of_features(a, a) >= 0

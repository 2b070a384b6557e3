import numpy as np

from sparp_ros.geometry.scale import robust_umeyama, scale_from_depth, umeyama
from scipy.spatial.transform import Rotation


def _similarity(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-0.5, 0.5, (500, 3))
    R = Rotation.random(random_state=seed).as_matrix()
    s, t = 0.237, np.array([0.1, -0.2, 0.9])
    return X, s * X @ R.T + t, s, R, t


def test_umeyama_recovers_similarity():
    X, Y, s, R, t = _similarity()
    s2, R2, t2 = umeyama(X, Y)
    assert abs(s2 - s) < 1e-9 and np.allclose(R2, R) and np.allclose(t2, t)


def test_robust_umeyama_ignores_outliers_and_noise():
    X, Y, s, R, t = _similarity(1)
    rng = np.random.default_rng(1)
    Y = Y + rng.normal(0, 0.001, Y.shape)
    Y[:50] += rng.uniform(-0.3, 0.3, (50, 3))       # 10 % gross outliers (depth holes, edges)
    s2, _, _, keep = robust_umeyama(X, Y)
    assert abs(s2 / s - 1) < 0.02
    assert keep[:50].mean() < 0.2 and keep[50:].mean() > 0.9


def test_scale_from_depth_reports_depth_source():
    X, Y, s, _, _ = _similarity(2)
    est = scale_from_depth([X, X], [Y, Y * 1.0])
    assert est.source == "depth" and abs(est.scale / s - 1) < 1e-6
    assert scale_from_depth([X[:5]], [Y[:5]]) is None

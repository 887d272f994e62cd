"""Classical linear unmixing and its evaluation: VCA, FCLS, spectral angle distance with Hungarian
matching, abundance RMSE. The reference against which KARMA's physics branch is judged.

VCA: Nascimento & Bioucas-Dias, "Vertex Component Analysis", IEEE TGRS 43(4), 2005.
FCLS: Heinz & Chang, IEEE TGRS 39(3), 2001 (non-negative, sum-to-one least squares), solved as
NNLS with the sum-to-one row weighted by ``delta`` relative to the endmembers' scale, so the
abundances do not depend on the data's units (reflectance, ×10000, raw digital numbers).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment, nnls


def vca(pixels: np.ndarray, endmembers: int, seed: int = 0) -> np.ndarray:
    """pixels: (bands, N) -> (bands, M) endmembers chosen among the pixels."""
    bands, n = pixels.shape
    rng = np.random.default_rng(seed)
    mean = pixels.mean(axis=1, keepdims=True)
    centred = pixels - mean
    u = np.linalg.svd(centred @ centred.T / n)[0][:, :endmembers]
    projected = u.T @ centred
    power_y = (pixels**2).sum() / n
    power_x = (projected**2).sum() / n + (mean**2).sum()
    snr = 10 * np.log10(max(power_x - endmembers / bands * power_y, 1e-12) / max(power_y - power_x, 1e-12))
    if snr < 15 + 10 * np.log10(endmembers):  # low SNR: project on the (M-1)-dim affine subspace
        d = endmembers - 1
        x = projected[:d]
        reconstructed = u[:, :d] @ x + mean
        c = np.sqrt((x**2).sum(axis=0)).max()
        y = np.vstack([x, c * np.ones((1, n))])
    else:
        u = np.linalg.svd(pixels @ pixels.T / n)[0][:, :endmembers]
        x = u.T @ pixels
        reconstructed = u @ x
        y = x / (x.mean(axis=1) @ x)
    indices = np.zeros(endmembers, dtype=int)
    simplex = np.zeros((endmembers, endmembers))
    simplex[-1, 0] = 1
    for i in range(endmembers):
        w = rng.random((endmembers, 1))
        f = w - simplex @ np.linalg.pinv(simplex) @ w
        f /= np.linalg.norm(f)
        indices[i] = np.argmax(np.abs(f.T @ y))
        simplex[:, i] = y[:, indices[i]]
    return reconstructed[:, indices]


def fcls(pixels: np.ndarray, endmembers: np.ndarray, delta: float = 1e3) -> np.ndarray:
    """pixels (bands, N), endmembers (bands, M) -> abundances (M, N), non-negative, summing to ~1.

    Pixels and endmembers are divided by the endmembers' RMS value first: the sum-to-one row then
    weighs ``delta`` times a typical band whatever the units (Heinz & Chang's δ)."""
    scale = float(np.sqrt(np.mean(np.square(endmembers)))) or 1.0
    system = np.vstack([delta * np.ones((1, endmembers.shape[1])), endmembers / scale])
    return np.stack([nnls(system, np.concatenate([[delta], y / scale]))[0] for y in pixels.T], axis=1)


def spectral_angles(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(bands, M) × (bands, K) -> (M, K) angles in radians."""
    a_n = a / np.linalg.norm(a, axis=0, keepdims=True)
    b_n = b / np.linalg.norm(b, axis=0, keepdims=True)
    return np.arccos(np.clip(a_n.T @ b_n, -1.0, 1.0))


def match_endmembers(estimated: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hungarian matching by spectral angle: (order of estimated columns, per-pair angles)."""
    angles = spectral_angles(reference, estimated)
    rows, cols = linear_sum_assignment(angles)
    return cols, angles[rows, cols]


def abundance_rmse(estimated: np.ndarray, reference: np.ndarray) -> float:
    """Root mean square difference of (M, N) abundance matrices (already matched)."""
    return float(np.sqrt(((estimated - reference) ** 2).mean()))

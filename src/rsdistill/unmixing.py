"""Classical linear unmixing and its evaluation: endmember extraction (VCA, VCA restarts, N-FINDR,
NMF), FCLS, spectral angle distance with Hungarian matching, abundance RMSE. The reference against
which KARMA's physics branch is judged.

VCA: Nascimento & Bioucas-Dias, "Vertex Component Analysis", IEEE TGRS 43(4), 2005.
N-FINDR: Winter, "N-FINDR: an algorithm for fast autonomous spectral end-member determination in
hyperspectral data", Proc. SPIE 3753, 1999 (the simplex of largest volume among the pixels).
NMF: Lee & Seung, Nature 401, 1999 (multiplicative updates, scikit-learn's ``NMF``), pixels ≈ E·A
with E, A ≥ 0 (no sum-to-one and no volume term: alone it finds a cone, not a simplex).
FCLS: Heinz & Chang, IEEE TGRS 39(3), 2001 (non-negative, sum-to-one least squares), solved as
NNLS with the sum-to-one row weighted by ``delta`` relative to the endmembers' scale, so the
abundances do not depend on the data's units (reflectance, ×10000, raw digital numbers).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment, nnls

from rsdistill.errors import InputError


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


def vca_restarts(pixels: np.ndarray, endmembers: int, seed: int = 0, restarts: int = 10) -> np.ndarray:
    """The best of ``restarts`` VCA draws (seeds ``seed·restarts`` …) by FCLS reconstruction RMSE of
    the pixels: chosen on the data alone, never on a reference. (bands, N) -> (bands, M)."""
    draws = [vca(pixels, endmembers, seed=seed * restarts + r) for r in range(restarts)]
    return min(draws, key=lambda e: reconstruction_rmse(pixels, e))


def nfindr(pixels: np.ndarray, endmembers: int, seed: int = 0, max_sweeps: int = 10) -> np.ndarray:
    """N-FINDR (Winter 1999): in the (M−1)-dim PCA subspace, start from M random pixels (``seed``) and
    replace an endmember by a pixel whenever that enlarges the simplex, sweep after sweep, until no
    swap helps. (bands, N) -> (bands, M) endmembers chosen among the pixels.

    The volume with column i replaced by pixel y is |det[1; E]| with that column, which is linear in
    [1; y]: all pixels' volumes for position i are one product with row i of det·inv([1; E])."""
    n = pixels.shape[1]
    mean = pixels.mean(axis=1, keepdims=True)
    axes = np.linalg.svd(pixels - mean, full_matrices=False)[0][:, : endmembers - 1]
    lifted = np.vstack([np.ones((1, n)), axes.T @ (pixels - mean)])  # (M, N): [1; reduced pixel]
    chosen = np.random.default_rng(seed).choice(n, endmembers, replace=False)
    for _ in range(max_sweeps):
        swapped = False
        for i in range(endmembers):
            simplex = lifted[:, chosen]
            volume = abs(np.linalg.det(simplex))
            if volume == 0:  # a degenerate start: any pixel off the current hyperplane enlarges it
                cofactors = np.linalg.svd(np.delete(simplex, i, axis=1).T)[2][-1]
            else:
                cofactors = np.linalg.det(simplex) * np.linalg.inv(simplex)[i]
            volumes = np.abs(cofactors @ lifted)
            best = int(np.argmax(volumes))
            if volumes[best] > volume * (1 + 1e-9) and best not in chosen:
                chosen[i], swapped = best, True
        if not swapped:
            break
    return pixels[:, chosen]


def nmf(pixels: np.ndarray, endmembers: int, seed: int = 0, iterations: int = 200) -> np.ndarray:
    """Endmembers of a non-negative factorisation pixels ≈ E·A (scikit-learn ``NMF``, multiplicative
    updates, its default 200 iterations) started from the best of 10 VCA draws and their FCLS
    abundances: plain NMF has no volume term, so from a generic start (NNDSVDa) it settles on a cone
    around the data rather than its vertices. Negative values (noise below zero reflectance) are
    clipped to 0. Each endmember is rescaled so that the abundances sum to one on average (NMF's
    scale is arbitrary; FCLS needs the mixing scale). (bands, N) -> (bands, M)."""
    import warnings

    from sklearn.decomposition import NMF
    from sklearn.exceptions import ConvergenceWarning

    data = np.clip(pixels, 0, None)
    start = np.clip(vca_restarts(data, endmembers, seed=seed), 1e-6, None)
    weights = np.ascontiguousarray(fcls(data, start).T) + 1e-6
    factor = NMF(n_components=endmembers, init="custom", solver="mu", max_iter=iterations)
    with warnings.catch_warnings():  # a fixed iteration budget is part of the method
        warnings.simplefilter("ignore", ConvergenceWarning)
        abundances = factor.fit_transform(data.T, W=weights, H=np.ascontiguousarray(start.T))
    scale = nnls(abundances, np.ones(len(abundances)))[0]  # a_j·w_j summing to ~1 over j
    return factor.components_.T / np.where(scale > 0, scale, 1.0)


EXTRACTORS = {"vca": vca, "vca_restarts": vca_restarts, "nfindr": nfindr, "nmf": nmf}
EXTRACTOR_NAMES = {"vca": "VCA", "vca_restarts": "VCA best of 10", "nfindr": "N-FINDR", "nmf": "NMF"}


def extract_endmembers(method: str, pixels: np.ndarray, endmembers: int, seed: int = 0) -> np.ndarray:
    """(bands, M) endmembers of ``pixels`` (bands, N) by one of ``EXTRACTORS``."""
    if method not in EXTRACTORS:
        raise InputError(f"unknown endmember extraction {method!r}; choose one of {', '.join(EXTRACTORS)}")
    return EXTRACTORS[method](pixels, endmembers, seed=seed)


def reconstruction_rmse(pixels: np.ndarray, endmembers: np.ndarray, abundances: np.ndarray | None = None) -> float:
    """RMS of pixels − E·A over every band and pixel, A = FCLS(pixels, E) unless given: how well a
    simplex explains the data."""
    abundances = fcls(pixels, endmembers) if abundances is None else abundances
    return float(np.sqrt(np.mean((pixels - endmembers @ abundances) ** 2)))


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

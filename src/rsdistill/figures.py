"""Figures of a pretraining run: what a person checks first.

True-colour composites (input, masked input, reconstruction) of a few held-out tiles, the spectra
of a few masked pixels (true vs reconstructed), and for KARMA the learned endmember spectra.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from rsdistill.tokens import patchify, unpatchify  # noqa: E402

TRUE_COLOUR_NM = (640.0, 550.0, 470.0)


def saved(fig, path, title: str = "", dpi: int = 100) -> Path:
    """Lay out ``fig`` (with ``title`` above, if any), write it to ``path`` (folders made) and close it."""
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def true_colour_bands(wavelengths, bands: int) -> list[int]:
    """Indices of the bands nearest red/green/blue; without wavelengths, an RGB image's own three
    bands, or three spread bands."""
    if wavelengths is None and bands == 3:
        return [0, 1, 2]
    if wavelengths is None:
        return [bands * 3 // 4, bands // 2, bands // 4]
    wl = np.asarray(wavelengths)
    return [int(np.argmin(np.abs(wl - target))) for target in TRUE_COLOUR_NM]


def stretch(rgb: np.ndarray) -> np.ndarray:
    """2-98 % percentile stretch to [0, 1] for display."""
    low, high = np.percentile(rgb, 2), np.percentile(rgb, 98)
    return np.clip((rgb - low) / max(high - low, 1e-6), 0, 1)


def reconstruction_figure(task, images: torch.Tensor, path, tiles: int = 3) -> Path:
    """images: (N, C, H, W) normalised held-out tiles. Writes a PNG and returns its path."""
    model, h, preprocessing = task.model, task.hparams, task.preprocessing
    with torch.no_grad():
        out = model(images[:tiles], h.mask_ratio, h.mask_score, h.mask_noise)
    height, width = images.shape[2:]
    p = h.patch_size
    truth = preprocessing.denormalise(images[:tiles]).cpu().numpy()
    target = patchify(images[:tiles], p)
    composite = torch.where(out["mask"][..., None].bool(), out["pred"], target)  # visible patches from the input, as in MAE
    recon = preprocessing.denormalise(unpatchify(composite, p, height, width)).cpu().numpy()
    pixel_mask = unpatchify(out["mask"][..., None].expand_as(out["pred"]), p, height, width)[:, 0].cpu().numpy() > 0
    bands = true_colour_bands(preprocessing.wavelengths, images.shape[1])
    wavelengths = np.asarray(preprocessing.wavelengths) if preprocessing.wavelengths is not None else np.arange(images.shape[1])
    has_mixing = "mixture" in out
    columns = 4 + has_mixing
    figure, axes = plt.subplots(len(truth), columns, figsize=(3.2 * columns, 3 * len(truth)), squeeze=False)
    for i in range(len(truth)):
        rgb_true = stretch(truth[i][bands].transpose(1, 2, 0))
        masked = rgb_true.copy()
        masked[pixel_mask[i]] = 0.5
        panels = [(rgb_true, "input"), (masked, f"masked ({h.mask_score})"), (stretch(recon[i][bands].transpose(1, 2, 0)), "reconstruction + visible")]
        for axis, (image, title) in zip(axes[i], panels):
            axis.imshow(image)
            axis.set_title(title)
            axis.set_axis_off()
        rows, cols = np.nonzero(pixel_mask[i])
        spectra_axis = axes[i][3]
        for k in range(min(3, rows.size)):
            r, c = rows[k * rows.size // 3], cols[k * rows.size // 3]
            line, = spectra_axis.plot(wavelengths, truth[i][:, r, c], lw=1)
            spectra_axis.plot(wavelengths, recon[i][:, r, c], "--", color=line.get_color(), lw=1)
        spectra_axis.set_title("masked pixels: true (—) vs recon (--)")
        spectra_axis.set_xlabel("wavelength (nm)" if preprocessing.wavelengths is not None else "band")
        if has_mixing:
            endmembers = preprocessing.denormalise(model.mixing.endmembers.detach().cpu(), channel_axis=0).numpy()
            axes[i][4].plot(wavelengths, endmembers)
            axes[i][4].set_title("learned endmembers")
    return saved(figure, path, dpi=90)


def unmixing_figure(arrays: dict[str, np.ndarray], names: list[str], path, title: str) -> Path:
    """Top row: each material's endmember spectrum (reference, VCA, KARMA), each scaled to its own
    maximum (SAD compares shapes, and reference libraries are often max-normalised). Below: the
    abundance maps of the reference, VCA + FCLS, KARMA and KARMA endmembers + FCLS, one column per
    material, on a common 0-1 scale. ``arrays``: ``unmixing_run``'s npz content."""
    rows = [(label, key) for label, key in (("reference", "reference_abundances"), ("VCA + FCLS", "vca_abundances"),
                                             ("KARMA", "karma_abundances"), ("KARMA E + FCLS", "karma_fcls_abundances"))
            if key in arrays]
    count = len(names)
    fig, axes = plt.subplots(1 + len(rows), count, figsize=(2.6 * count, 2.4 * (1 + len(rows))), squeeze=False)
    for j, name in enumerate(names):
        ax = axes[0, j]
        for label, key, style in (("reference", "reference_endmembers", "k-"), ("VCA", "vca_endmembers", "b--"),
                                  ("KARMA", "karma_endmembers", "r-")):
            spectrum = arrays[key][:, j]
            ax.plot(spectrum / max(np.abs(spectrum).max(), 1e-12), style, lw=1, label=label)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("band", fontsize=7)
        ax.tick_params(labelsize=6)
        for i, (label, key) in enumerate(rows, start=1):
            axes[i, j].imshow(arrays[key][:, :, j], vmin=0, vmax=1, cmap="viridis")
            axes[i, j].set_xticks([]), axes[i, j].set_yticks([])
            if j == 0:
                axes[i, j].set_ylabel(label, fontsize=8)
    axes[0, 0].legend(fontsize=6)
    return saved(fig, path, title, dpi=110)


def r_schedule_figure(metrics_csv, path, stages: tuple[str, ...], thresholds: tuple[float, float]) -> Path | None:
    """Mask-CDKD's r = L_T_MAE / L_S_MAE per logged step with the stage it put training in (from a
    run's ``metrics.csv``: ``train/r``, ``train/stage`` as an index into ``stages``), and the
    schedule's two thresholds; None when nothing was logged yet."""
    import csv

    with open(metrics_csv, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r.get("train/r") not in (None, "")]
    if not rows:
        return None
    steps = np.array([float(r["step"]) for r in rows])
    ratio, stage = np.array([float(r["train/r"]) for r in rows]), np.array([float(r["train/stage"]) for r in rows])
    fig, top = plt.subplots(figsize=(7, 3.2))
    top.plot(steps, ratio, "k-", lw=1, label="r = L_T / L_S")
    for value, style in zip(thresholds, ("b:", "r:")):
        top.axhline(value, color=style[0], ls=":", lw=1)
    top.set_xlabel("step")
    top.set_ylabel("r")
    right = top.twinx()
    right.step(steps, stage, "g-", where="post", lw=1.5, label="stage")
    right.set_yticks(range(len(stages)), stages)
    right.set_ylim(-0.3, len(stages) - 0.7)
    top.legend(loc="upper left", fontsize=7)
    return saved(fig, path, dpi=110)


def scene_figure(scene, path, labels: np.ndarray | None = None, class_names: dict[int, str] | None = None,
                 title: str = "", pixels: int = 6, seed: int = 0) -> Path:
    """A quick look at a scene (an ``io.Scene``, e.g. a ``SceneSource.preview``): a true-colour
    composite picked by wavelength (or three bands, said so in the panel title), no-data pixels in
    magenta; the label map (H, W) with its class names, if given; and spectra against wavelength
    (or band number): the class means with labels, else ``pixels`` random valid pixels."""
    cube, valid, wavelengths = scene.cube, scene.valid, scene.wavelengths
    bands = true_colour_bands(wavelengths, cube.shape[2])
    if wavelengths is not None:
        what = "true colour: " + ", ".join(f"{wavelengths[b]:.0f}" for b in bands) + " nm"
    elif cube.shape[2] == 3:
        what = "the file's three bands as RGB"
    else:
        what = f"no wavelengths: bands {bands[0] + 1}, {bands[1] + 1}, {bands[2] + 1} as RGB"
    rgb = stretch(cube[:, :, bands][valid]) if valid.any() else None
    image = np.zeros((*valid.shape, 3))
    if rgb is not None:
        image[valid] = rgb
    image[~valid] = (1.0, 0.0, 1.0)
    panels = 3 if labels is not None else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.0 * panels, 4.6))
    axes[0].imshow(image, interpolation="nearest")
    axes[0].set_title(f"{what}\nno data (magenta): {100 * (1 - valid.mean()):.1f} %", fontsize=8)
    x = wavelengths if wavelengths is not None else np.arange(1, cube.shape[2] + 1)
    spectra_ax = axes[-1]
    good = ~scene.bad_bands if scene.bad_bands is not None else np.ones(cube.shape[2], bool)
    if labels is not None:
        ids = [int(c) for c in np.unique(labels[valid & (labels > 0)])]
        colours = plt.get_cmap("tab20", max(len(ids), 1))
        coloured = np.ones((*labels.shape, 3))
        for k, c in enumerate(ids):
            coloured[labels == c] = colours(k)[:3]
            spectrum = np.where(good, cube[(labels == c) & valid].mean(axis=0), np.nan)
            name = (class_names or {}).get(c, f"class {c}")
            spectra_ax.plot(x, spectrum, color=colours(k), lw=1, label=f"{name} ({int(((labels == c) & valid).sum())} px)")
        axes[1].imshow(coloured, interpolation="nearest")
        axes[1].set_title("labels (white: unlabelled)", fontsize=8)
        spectra_ax.set_title("class mean spectra", fontsize=8)
    else:
        rows, cols = np.nonzero(valid)
        for k in np.random.default_rng(seed).choice(len(rows), min(pixels, len(rows)), replace=False) if len(rows) else []:
            spectra_ax.plot(x, np.where(good, cube[rows[k], cols[k]], np.nan), lw=1, label=f"pixel ({rows[k]}, {cols[k]})")
        spectra_ax.set_title(f"{min(pixels, len(rows))} random valid pixels", fontsize=8)
    spectra_ax.set_xlabel("wavelength (nm)" if wavelengths is not None else "band")
    spectra_ax.set_ylabel("value as stored")
    spectra_ax.grid(alpha=0.3)
    if spectra_ax.get_legend_handles_labels()[0]:
        spectra_ax.legend(fontsize=6)
    for ax in axes[:-1]:
        ax.set_xticks([]), ax.set_yticks([])
    return saved(fig, path, title, dpi=100)

"""A human-readable summary of any supported file: what ``rsdistill info`` prints."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rsdistill.errors import InputError
from rsdistill.io.matlab import grid_of, inspect_mat, load_mat_variables
from rsdistill.io.npy import load_npy
from rsdistill.io.readers import open_scene, read_label_map
from rsdistill.io.scene import LabelMap, Scene, Window, as_label_array, looks_like_class_map
from rsdistill.io.unmixing_reference import describe_reference, find_reference_keys, read_reference


def describe_file(path, key: str | None = None, time_index: int | None = None, sensor: str | None = None) -> list[str]:
    """Lines describing the cube or label map in ``path`` (see ``rsdistill info --help``)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    notes: list[str] = []
    suffix = path.suffix.lower()
    if suffix == ".mat":
        variables = load_mat_variables(path)
        contents = inspect_mat(path, key, variables)
        reference = _reference_lines(path, variables, contents.cube)
        if contents.cube is None and contents.labels is None:
            listing = ", ".join(f"{k} {'×'.join(map(str, s))}" for k, s in contents.variables.items())
            content = [] if reference else ["content      no image cube or label map"]
            return [f"file         {path}", "format       MATLAB .mat", *content, f"variables    {listing}", *reference]
        if contents.cube is None:
            return _label_lines(read_label_map(path, key=contents.label_key))
    elif suffix == ".npy":
        array = load_npy(path)
        if array.ndim == 4 and time_index is None:
            notes.append(f"time series of {array.shape[0]} acquisitions; showing acquisition 0 (choose with --time-index)")
            time_index = 0
        if looks_like_class_map(np.squeeze(array)):
            return _label_lines(LabelMap(as_label_array(array, str(path)), str(path), ".npy"))
    source = open_scene(path, key=key, time_index=time_index, sensor=sensor, empty_bands="bad")
    if source.bands == 1 and looks_like_class_map(source.read_raw(Window(0, 0, source.height, source.width))[:, :, 0]):
        return _label_lines(read_label_map(path))
    scene = source.read()
    if suffix == ".mat" and contents.labels is not None:
        scene = scene.with_labels(LabelMap(as_label_array(contents.labels, str(path)), str(path)))
        notes.append(f"label map: variable {contents.label_key!r}")
    return describe_scene(scene, notes) + (reference if suffix == ".mat" else [])


def _reference_lines(path: Path, variables: dict[str, np.ndarray], cube) -> list[str]:
    """An unmixing reference's lines when the .mat holds one (checked against its cube if any)."""
    grid = cube.shape[:2] if cube is not None else grid_of(variables)
    try:
        if find_reference_keys(variables, path=path) is None:
            return []
        return describe_reference(read_reference(path, variables, cube, grid=grid), grid)
    except InputError as error:  # an ambiguous reference does not hide the cube
        return [f"unmixing     {error}"]


def _georeference_lines(crs, transform) -> list[str]:
    if crs is None and transform is None:
        return ["crs          none (not georeferenced)"]
    units = ""
    if crs is not None:
        units = f" {crs.linear_units}" if crs.is_projected else " degrees"
    name = crs.to_string() if crs is not None else "none"
    return [f"crs          {name}", f"pixel size   {abs(transform.a):g} × {abs(transform.e):g}{units}"]


def describe_scene(scene: Scene, notes: list[str] = ()) -> list[str]:
    height, width, bands = scene.shape
    good = ~scene.bad_bands
    values = scene.cube[scene.valid][:, good]
    value_range = f"[{values.min():.6g}, {values.max():.6g}] over valid pixels and good bands" if values.size else "none: no valid pixel"
    nodata = int((~scene.valid).sum())
    bad = np.flatnonzero(scene.bad_bands)
    lines = [
        f"file         {scene.path}",
        f"format       {scene.format}",
        "content      image cube",
        f"shape        {height} × {width} × {bands} (H × W × B)",
        f"dtype        {scene.dtype}",
        f"values       {value_range}",
        f"nodata       {nodata} pixel(s) of {height * width}" + (f" (nodata value {scene.nodata:g})" if scene.nodata is not None else ""),
        f"bad bands    {len(bad)}" + (f": {_ranges(bad)}" if len(bad) else ""),
    ]
    if scene.wavelengths is None:
        lines.append("wavelengths  unknown (no wavelength metadata; give --sensor or wavelengths)")
    else:
        wl = scene.wavelengths
        text = f"wavelengths  {wl.min():.1f} – {wl.max():.1f} nm"
        if scene.fwhm is not None:
            text += f", FWHM {scene.fwhm.min():.1f} – {scene.fwhm.max():.1f} nm"
        lines.append(text)
    lines += _georeference_lines(scene.crs, scene.transform)
    if scene.labels is not None:
        lines += _class_lines(scene.labels)
    return lines + [f"note         {n}" for n in list(notes) + scene.notes]


def _label_lines(label_map: LabelMap) -> list[str]:
    labels = label_map.labels
    lines = [
        f"file         {label_map.path}",
        f"format       {label_map.format}",
        "content      label map",
        f"shape        {labels.shape[0]} × {labels.shape[1]} (H × W)",
    ]
    return lines + _georeference_lines(label_map.crs, label_map.transform) + _class_lines(labels)


def _class_lines(labels: np.ndarray) -> list[str]:
    counts = LabelMap(labels).class_counts()
    lines = [f"classes      {len(counts)} ({sum(counts.values())} labelled pixels, {int((labels == 0).sum())} unlabelled = 0)"]
    return lines + [f"  class {c:>3}  {n} px" for c, n in counts.items()]


def _ranges(indices: np.ndarray) -> str:
    """'129-134, 200' for [129, ..., 134, 200]."""
    parts, start = [], indices[0]
    for previous, current in zip(indices, list(indices[1:]) + [None]):
        if current is None or current != previous + 1:
            parts.append(f"{start}" if start == previous else f"{start}-{previous}")
            start = current
    return ", ".join(parts)

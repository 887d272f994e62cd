"""What each data verb does with its parsed arguments (printing only; the work lives in the library)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rsdistill.data.statistics import band_statistics
from rsdistill.io.describe import describe_file, describe_scene
from rsdistill.io.readers import open_scene
from rsdistill.spectral import band_alignment, describe_alignment, get_sensor, sensor_names
from rsdistill.spectral.sensors import Sensor


def info(args) -> None:
    print("\n".join(describe_file(args.path, key=args.key, time_index=args.time_index, sensor=args.sensor)))


def sensors(args) -> None:
    for name in sensor_names():
        sensor = get_sensor(name)
        centres = sensor.centers
        print(f"{name:10} {len(sensor):4d} bands  {centres.min():7.1f}-{centres.max():7.1f} nm  "
              f"{int((~sensor.valid).sum())} flagged bad  {sensor.description}")


def _sensor_or_scene(name: str) -> Sensor:
    if Path(name).is_file():
        source = open_scene(name)
        if source.meta.wavelengths is None:
            open_scene(name).read().require_wavelengths()
        return Sensor.from_wavelengths(Path(name).name, source.meta.wavelengths, source.meta.fwhm, source.meta.bad_bands)
    return get_sensor(name)


def align(args) -> None:
    source, target = _sensor_or_scene(args.source), _sensor_or_scene(args.target)
    weights = band_alignment(source, target, args.method)
    print(f"{source.name} ({len(source)} bands) -> {target.name} ({len(target)} bands), method {args.method}")
    print("\n".join(describe_alignment(weights, source, target)))


def stats(args) -> None:
    result = band_statistics(args.paths, tile=args.tile, key=args.key, time_index=args.time_index)
    out = result.save(args.out)
    valid = np.array(result.count)
    print(f"{result.bands} bands, {int(valid.max())} valid pixels, {len(result.bad_bands)} bad bands -> {out}")


def quickstart(args) -> None:
    from rsdistill.data.synthetic import make_synthetic_scene

    if args.path is None:
        synthetic = make_synthetic_scene(sensor=args.sensor, seed=args.seed)
        print(f"synthetic {args.sensor} scene: materials {', '.join(synthetic.materials)}")
        print("\n".join(describe_scene(synthetic.scene)))
    else:
        print("\n".join(describe_file(args.path)))

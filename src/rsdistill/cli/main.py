"""``rsdistill``: one entry point, one verb per job.

Data verbs (``info``, ``sensors``, ``align``, ``stats``) and the ``quickstart`` are jsonargparse
subcommands. Training verbs (``fit``, ``validate``, ``test``, ``predict``) are added by the tasks
through LightningCLI, with the same ``-c recipe.yaml`` conventions.
"""

from __future__ import annotations

import sys

from jsonargparse import ArgumentParser

from rsdistill.errors import InputError


def _info_parser() -> ArgumentParser:
    parser = ArgumentParser(description="Describe a scene or label file: format, shape, dtype, value range, "
                            "nodata, bad bands, wavelengths, CRS and pixel size, and classes with pixel counts.")
    parser.add_argument("path", help=".mat (v5/v7.3), ENVI (.hdr or data file), GeoTIFF/PNG/JPEG, or .npy")
    parser.add_argument("--key", default=None, help=".mat variable to read (found automatically otherwise)")
    parser.add_argument("--time_index", "--time-index", type=int, default=None, help="acquisition of a (T,H,W,B) .npy stack")
    parser.add_argument("--sensor", default=None, help="registered sensor giving wavelengths to a file that has none")
    return parser


def _sensors_parser() -> ArgumentParser:
    return ArgumentParser(description="List the registered sensors and their bands.")


def _align_parser() -> ArgumentParser:
    parser = ArgumentParser(description="Show which source bands make each target band (band_alignment).")
    parser.add_argument("--source", required=True, help="sensor name or a scene file (its own bands and bad-band list)")
    parser.add_argument("--target", required=True, help="sensor name or a scene file")
    parser.add_argument("--method", default="mean", choices=["mean", "srf", "nearest"], help="how to fill the matrix")
    return parser


def _stats_parser() -> ArgumentParser:
    parser = ArgumentParser(description="Per-band mean/std over the valid pixels of one or more files, "
                            "computed in one streaming pass; written as JSON for normalisation.")
    parser.add_argument("paths", nargs="+", help="scene files with the same band count")
    parser.add_argument("--out", required=True, help="output JSON file")
    parser.add_argument("--tile", type=int, default=256, help="tile size of the streaming pass (memory bound)")
    parser.add_argument("--key", default=None, help=".mat variable holding the cube")
    parser.add_argument("--time_index", "--time-index", type=int, default=None, help="acquisition of a (T,H,W,B) .npy stack")
    return parser


def _quickstart_parser() -> ArgumentParser:
    parser = ArgumentParser(description="The main job on the embedded synthetic scene (or a scene you name).")
    parser.add_argument("path", nargs="?", default=None, help="a scene file; the synthetic scene when omitted")
    parser.add_argument("--sensor", default="enmap", help="sensor of the synthetic scene")
    parser.add_argument("--seed", type=int, default=0)
    return parser


VERBS = {
    "info": (_info_parser, "describe a scene or label file"),
    "sensors": (_sensors_parser, "list the registered sensors"),
    "align": (_align_parser, "band alignment between two sensors"),
    "stats": (_stats_parser, "per-band mean/std for normalisation"),
    "quickstart": (_quickstart_parser, "the main job on the synthetic scene or a scene you name"),
}


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="rsdistill",
        description="Label-free pretraining and knowledge distillation for multispectral and hyperspectral imagery.",
    )
    subcommands = parser.add_subcommands(dest="verb")
    for name, (make, summary) in VERBS.items():
        subcommands.add_subcommand(name, make(), help=summary)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    try:
        config = parser.parse_args(argv)
        from rsdistill.cli import verbs

        getattr(verbs, config.verb)(config[config.verb])
    except InputError as error:
        print(f"rsdistill: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

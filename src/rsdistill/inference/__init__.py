"""Whole scenes through a trained model: maps block by block or window by window (halo, blends,
GeoTIFF writes, class-map codes) and the scores of those maps on labelled tiles."""

from rsdistill.inference.mapping import classify_scene, segment_scene

__all__ = ["classify_scene", "segment_scene"]

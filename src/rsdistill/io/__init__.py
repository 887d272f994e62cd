"""Reading and writing scenes: .mat (v5, v7.3), ENVI, GeoTIFF, .npy."""

from rsdistill.io.geotiff import write_geotiff
from rsdistill.io.readers import open_scene, read_label_map, read_scene
from rsdistill.io.scene import LabelMap, Scene, Window, tile_windows
from rsdistill.io.source import SceneSource

__all__ = ["LabelMap", "Scene", "SceneSource", "Window", "open_scene", "read_label_map", "read_scene", "tile_windows", "write_geotiff"]

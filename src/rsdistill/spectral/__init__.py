"""Sensors (band centres, widths, validity) and band alignment between sensors."""

from rsdistill.spectral.alignment import ALIGNMENT_METHODS, band_alignment, describe_alignment
from rsdistill.spectral.sensors import Band, Sensor, get_sensor, sensor_names

__all__ = ["ALIGNMENT_METHODS", "Band", "Sensor", "band_alignment", "describe_alignment", "get_sensor", "sensor_names"]

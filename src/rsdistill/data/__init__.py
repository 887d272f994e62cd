"""Data: synthetic scenes, band statistics, and (later) datasets that cut scenes into samples."""

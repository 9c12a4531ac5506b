"""Command-line exporters: `python -m export.saved_model` (TF Serving) and `python -m export.tflite` (phones).

The library code they run is in `colorgan.export`.
"""

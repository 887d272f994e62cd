"""Deployment: a trained model as an ONNX file that runs alone (``onnx_export``: raw values in,
the card in its metadata; fp32, fp16 or int8), run by onnxruntime (``runtime``), and checked
against PyTorch on real inputs (``parity``)."""

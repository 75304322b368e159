"""What every ONNX graph rewrite here shares: the opset the exports write."""

OPSET = 18  # the newest opset tf2onnx 1.17 writes; torch exports use the same

"""The inference check: is a port the same function as the torch reference?

check.py       one catalogue model, torch_impl against Keras, tf_impl and the ONNX exports
layerwise.py   two models of any frameworks compared layer by layer (parity.compare)
precision.py   fp16/bf16 inference parity; lowprecision.py its building blocks
selftest.py    planted bugs, each caught at the layer it was planted in
commands.py    `parity check`, `diagnose` and `selftest`

The seeded, calibrated weights (calibrate.py), the tolerance policy (tolerance.py) and the
input sizes (inputs.py) stay at parity/'s ground floor: training and the adapters use them too.
"""

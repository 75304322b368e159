"""Exporting catalogue models to ONNX through their adapters.

workers    fp32 exports from canonical state, in child processes where big
guard      exports whose death cannot take the caller down
commands   `parity export`
"""

"""The models: one module per architecture family, each registering its ModelSpecs on import,
and the table they register in (registry.py, which loads the families on first use)."""

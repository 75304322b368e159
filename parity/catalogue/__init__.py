"""The catalogue: families/ (one module per architecture family, each registering its
ModelSpecs on import, through parity/registry.py) and commands.py (`parity list`,
`summary` and `convert`: the models, their canonical weights and weight files)."""

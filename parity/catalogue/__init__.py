"""One module per architecture family; each registers its ModelSpecs on import."""

"""Old path of parity.inference.layerwise (compare two models layer by layer), kept as a
re-export until the README's Changes section says otherwise."""
from .inference.layerwise import *  # noqa: F403

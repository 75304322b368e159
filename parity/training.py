"""Old path of parity.train.step (the step interface), kept as a re-export until the README's
Changes section says otherwise."""
from .train.step import *  # noqa: F403

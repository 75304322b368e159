"""Old path of parity.train.check and parity.train.judge (`parity train-check` and its judge),
kept as a re-export until the README's Changes section says otherwise."""
from .train.check import *  # noqa: F403
from .train.judge import *  # noqa: F403

"""Old path of parity.adapters.step and parity.train.loop (the step interface, train_steps), kept
as a re-export until the README's Changes section says otherwise."""
from .adapters.step import *  # noqa: F403
from .train.loop import *  # noqa: F403

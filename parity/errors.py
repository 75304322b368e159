"""Errors with messages that name the model, the layer and the shape, and the exit codes."""

# Exit codes (docs/cli.md): every command, every sweep.
EXIT_PASS, EXIT_FAIL, EXIT_ERROR = 0, 1, 2
# What a command reports in one line (exit 2); anything else is a crash and shows its traceback.
KNOWN_ERRORS = (KeyError, ValueError, FileNotFoundError, RuntimeError, ImportError, MemoryError, OSError)


def describe(exc) -> str:
    """The one line an error prints as."""
    if type(exc) is KeyError and exc.args:  # KeyError's str() is the repr of its message
        return str(exc.args[0])
    return str(exc) if isinstance(exc, KNOWN_ERRORS) and str(exc) else f"{type(exc).__name__}: {exc}"


def unknown_choice(kind: str, word: str, choices) -> str:
    """"unknown model 'resnet5' (did you mean 'resnet50'?)": the one-line message for a
    misspelt name, with the closest choices when any is close."""
    import difflib
    close = difflib.get_close_matches(word, list(choices), n=3, cutoff=0.6)
    return f"unknown {kind} {word!r}" + (f" (did you mean {' or '.join(map(repr, close))}?)" if close else "")


class ParityError(Exception):
    """Base class for cnn-parity errors."""


class StateDictError(ParityError, KeyError):
    """Missing, unexpected or misshaped weights; lists every offending key."""

    def __init__(self, model: str, missing=(), unexpected=(), mismatched=()):
        self.model, self.missing, self.unexpected, self.mismatched = model, list(missing), list(unexpected), list(mismatched)
        lines = [f"{model}: the weights do not fit the model"]
        if self.missing:
            lines.append(f"  missing keys ({len(self.missing)}): {_short(self.missing)}")
        if self.unexpected:
            lines.append(f"  unexpected keys ({len(self.unexpected)}): {_short(self.unexpected)}")
        lines += [f"  {key} ~ {closest}? (the closest unexpected key: a rename)"
                  for key, closest in closest_keys(self.missing, self.unexpected)]
        for key, want, got in self.mismatched[:10]:
            lines.append(f"  shape mismatch at {key}: model has {tuple(want)}, weights have {tuple(got)}")
        if len(self.mismatched) > 10:
            lines.append(f"  ... and {len(self.mismatched) - 10} more shape mismatches")
        super().__init__("\n".join(lines))

    def __str__(self):  # KeyError would repr() the message
        return self.args[0]


class WeightFileError(ParityError, ValueError):
    """A weight file that cannot be read: corrupt, truncated, wrong format or unsafe."""


class InputError(ParityError, ValueError):
    """An input tensor that the model cannot take."""


def closest_keys(keys, others) -> list[tuple[str, str]]:
    """(key, the one of `others` closest to it) where one is close: a rename's suggestion."""
    import difflib
    pairs = [(key, difflib.get_close_matches(key, others, n=1, cutoff=0.5)) for key in keys]
    return [(key, found[0]) for key, found in pairs if found]


def _short(keys, limit=8):
    shown = ", ".join(keys[:limit])
    return shown + (f", ... (+{len(keys) - limit})" if len(keys) > limit else "")

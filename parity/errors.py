"""Errors with messages that name the model, the layer and the shape."""


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


def _short(keys, limit=8):
    shown = ", ".join(keys[:limit])
    return shown + (f", ... (+{len(keys) - limit})" if len(keys) > limit else "")

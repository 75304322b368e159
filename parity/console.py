"""Printing a message as written: names, paths and install hints hold brackets ("[data]",
"runs/[exp]") that rich would read as markup and drop."""


def say(console, text: str, style: str | None = None) -> None:
    """Print `text` verbatim (no markup, no highlighting, no wrapping), optionally in one style."""
    from rich.text import Text
    console.print(Text(str(text), style=style or ""), highlight=False, soft_wrap=True)

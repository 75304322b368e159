"""The `parity` command line: main() and the parser, assembled from each subpackage's
register(subparsers) (weights, inference, onnx, bench, train); no handler lives here."""
import argparse
import os
import sys

from . import __version__
from .catalogue.registry import MODELS_FROM
from .errors import EXIT_ERROR, EXIT_PASS, KNOWN_ERRORS, describe, unknown_choice

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(argv=None) -> int:
    """0: everything checked passed; 1: a parity failure; 2: an error (bad usage, a missing
    framework that was asked for, a model or target that could not run, a crash)."""
    from . import frameworks
    argv, modules = _models_from(sys.argv[1:] if argv is None else list(argv))
    sys.path.append(os.getcwd())  # models of one's own, from where the command runs (after the installed ones)
    args = _parse(_parser(), argv)  # usage errors exit 2 here
    frameworks.set_quiet(not (args.verbose or frameworks.verbose_requested()))
    from rich.console import Console
    # soft_wrap: a message stays one line whatever the width (tables still fit it); redirected
    # output gets 120 columns for its tables.
    console = Console(width=None if sys.stdout.isatty() else 120, soft_wrap=True)
    handed_down = os.environ.get(MODELS_FROM)  # --models-from sets it for this command's children
    try:
        _import_models(modules)
        return args.func(args, console) or EXIT_PASS
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - a crash must exit 2, never 1 (a parity failure)
        err = Console(stderr=True, soft_wrap=True)
        if args.verbose or not isinstance(exc, KNOWN_ERRORS):
            import traceback
            err.print(traceback.format_exc(), markup=False, highlight=False)
        from rich.text import Text  # the message as written: "[data]" in a hint is not markup
        err.print(Text.assemble(("error:", "red"), " ", describe(exc)), highlight=False)
        return EXIT_ERROR
    finally:
        if handed_down is None:
            os.environ.pop(MODELS_FROM, None)
        else:
            os.environ[MODELS_FROM] = handed_down


def _models_from(argv):
    """(argv without them, the modules of every --models-from MODULE, before or after the command)."""
    rest, modules, words = [], [], iter(argv)
    for word in words:
        if word == "--models-from":
            modules.append(next(words, ""))
        elif word.startswith("--models-from="):
            modules.append(word.partition("=")[2])
        else:
            rest.append(word)
    return rest, modules


def _import_models(modules):
    """Import each module that registers models."""
    if not modules:
        return
    from .catalogue import registry
    for module in modules:
        if not module:
            raise ValueError("--models-from needs a module name (e.g. --models-from mypkg.models)")
        registry.import_models(module)


def _parse(parser, argv):
    """argparse, plus: no command prints the help (exit 0), and an unknown option is reported by
    the subcommand's own usage, with the closest of its options."""
    if not argv:
        parser.print_help()
        raise SystemExit(EXIT_PASS)
    args, extra = parser.parse_known_args(argv)
    if extra:
        sub = _subcommands(parser)[args.command]
        options = [o for action in sub._actions for o in action.option_strings]
        bad_options = [unknown_choice("option", e.split("=")[0], options) for e in extra if e.startswith("-")]
        sub.error("; ".join(bad_options) or f"unexpected arguments {' '.join(extra)}")  # an option's value: not news
    return args


def _subcommands(parser) -> dict:
    """{name: the subcommand's parser}."""
    return next(a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def _command_groups():
    """Each subpackage's register(subparsers), in the order `parity --help` lists them."""
    from .bench import register_cli as bench
    from .inference.commands import register as inference
    from .export.commands import register as onnx
    from .train.commands import register as train
    from .weights.commands import register as weights
    return weights, inference, onnx, bench, train


def _parser():
    p = argparse.ArgumentParser(prog="parity", description="Prove three hand-written CNN implementations equal.")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="keep TensorFlow's start-up log lines (also PARITY_VERBOSE=1)")
    p.add_argument("--version", action="version", version=f"parity (cnn-parity) {__version__}")
    p.add_argument("--models-from", action="append", metavar="MODULE",
                   help="import MODULE first, which registers models (parity.register_model); repeatable, "
                        "before or after the command")
    sub = p.add_subparsers(dest="command", required=True)

    for register in _command_groups():
        register(sub)
    return p


if __name__ == "__main__":
    sys.exit(main())

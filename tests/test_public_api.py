"""Every public name README.md and docs/ use resolves in a fresh interpreter.

In a test process something has usually imported the submodule already, which hides an
`AttributeError` a user meets after a plain `import parity`."""
import json
import re
import subprocess
import sys
from pathlib import Path

import parity

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
DOTTED = re.compile(r"\bparity(?:\.[A-Za-z_]\w*)+")
FROM_IMPORT = re.compile(r"\bfrom (parity(?:\.\w+)*) import (\w+(?:, *\w+)*)")

# Resolves each name in a fresh process: a name under parity.__all__ by attribute access
# alone after `import parity` (what the README does), any other `parity.module.name` by
# importing its module first.
RESOLVE = """
import importlib, json, sys
import parity
failures = []
for dotted in json.loads(sys.argv[1]):
    parts = dotted.split(".")
    try:
        if parts[1] in parity.__all__:
            obj = parity
            for part in parts[1:]:
                obj = getattr(obj, part)
        else:
            for cut in range(len(parts), 0, -1):
                try:
                    obj = importlib.import_module(".".join(parts[:cut]))
                    break
                except ModuleNotFoundError:
                    continue
            for part in parts[cut:]:
                obj = getattr(obj, part)
    except Exception as exc:
        failures.append(f"{dotted}: {type(exc).__name__}: {exc}")
print(json.dumps(failures))
"""


def without_changes(text: str) -> str:
    """README's Changes section names the old paths on purpose."""
    return re.sub(r"\n## Changes\n.*?(?=\n## |\Z)", "\n", text, flags=re.S)


def names_used_in_docs():
    names = set()
    for path in DOCS:
        text = without_changes(path.read_text())
        names.update(DOTTED.findall(text))
        for module, imported in FROM_IMPORT.findall(text):
            names.update(f"{module}.{name.strip()}" for name in imported.split(","))
    return sorted(n for n in names if not n.endswith((".py", ".md")))


def test_docs_name_the_top_level_api():
    names = names_used_in_docs()
    for expected in ("parity.compare", "parity.weights.from_keras_applications", "parity.check", "parity.build"):
        assert expected in names


def test_every_public_name_in_the_docs_resolves_in_a_fresh_interpreter():
    out = subprocess.run([sys.executable, "-c", RESOLVE, json.dumps(names_used_in_docs())], check=True,
                         capture_output=True, text=True, cwd=REPO)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_the_readme_import_pattern_works_without_importing_submodules():
    code = ("import sys, parity; from_ka = parity.weights.from_keras_applications; cmp = parity.compare; "
            "assert callable(from_ka) and callable(cmp); assert 'parity.inference.layerwise' not in sys.modules; "
            "bad = [m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_compare_has_the_documented_signature():
    import inspect
    parameters = inspect.signature(parity.compare).parameters
    assert list(parameters)[:3] == ["reference", "candidate", "inputs"]
    assert {"tolerance", "layerwise"} <= set(parameters)


def test_the_public_api_is_typed():
    import inspect
    root = REPO / "parity"
    assert (root / "py.typed").exists()
    functions = [getattr(parity, n) for n in parity.__all__ if inspect.isfunction(getattr(parity, n))]
    functions += [parity.weights.from_keras_applications, parity.registry.get, parity.registry.names]
    untyped = []
    for function in functions:
        signature = inspect.signature(function)
        missing = [p for p in signature.parameters.values() if p.annotation is inspect.Parameter.empty]
        if missing or signature.return_annotation is inspect.Signature.empty:
            untyped.append(f"{function.__module__}.{function.__name__}: {[p.name for p in missing]}")
    assert len(functions) >= 12 and not untyped, untyped


def test_the_old_module_paths_are_the_new_objects():
    """parity.training, parity.train_check and parity.layerwise stay, as re-exports, until
    README's Changes section retires them (issue 33, landings 2 and 3)."""
    from parity import layerwise, train_check, training
    from parity.inference import layerwise as inference_layerwise
    from parity.adapters import step
    from parity.train import check, judge, loop
    assert (training.train_steps, training.Hyper, training.DropoutMasks) == (loop.train_steps, step.Hyper,
                                                                             step.DropoutMasks)
    assert (train_check.train_check, train_check.Float64Check) == (check.train_check, check.Float64Check)
    assert (train_check.cancelled, train_check.GRAD_POLICY) == (judge.cancelled, judge.GRAD_POLICY)
    assert (layerwise.compare, layerwise.Comparison) == (inference_layerwise.compare, inference_layerwise.Comparison)

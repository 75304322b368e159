"""parity/'s imports, walked from the source (issue 33): no import circle between its files
(function-level imports included), none between its folders (an import running back up),
no private name taken from another file, and no `*_impl` package imported outside
parity/adapters/, the one door to the implementations."""
import ast
from pathlib import Path

PARITY = Path(__file__).resolve().parents[1] / "parity"
IMPLEMENTATIONS = ("torch_impl", "keras_impl", "tf_impl")


def module_name(path: Path) -> str:
    parts = path.relative_to(PARITY.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_of(path: Path) -> str:
    name = module_name(path)
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def imports(path: Path):
    """(imported module, [names taken from it]) for every import statement in the file."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_of(path).split(".")
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            yield module, [alias.name for alias in node.names]


def graph() -> dict:
    """{parity module: {parity modules it imports}}; `from pkg import sub` counts sub, and pkg
    only when a name that is not a submodule is taken from it too."""
    files = {module_name(p): p for p in PARITY.rglob("*.py")}
    edges = {}
    for name, path in files.items():
        targets = set()
        for module, names in imports(path):
            submodules = {f"{module}.{n}" for n in names if f"{module}.{n}" in files}
            targets |= submodules
            if module in files and (not names or len(submodules) < len(names)):
                targets.add(module)
        edges[name] = targets - {name}
    return edges


def rooms(edges: dict) -> dict:
    """The imports between parity/'s rooms: each subpackage and top-level module is one; the
    package's own __init__ (the public API) is one too."""
    def room(module):
        return module.split(".")[1] if "." in module else "parity/__init__"
    between = {}
    for module, targets in edges.items():
        between.setdefault(room(module), set()).update(room(t) for t in targets if room(t) != room(module))
    return between


def circles(edges: dict) -> list:
    """Strongly connected groups of more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def package_inits(edges: dict) -> set:
    """A package's __init__ importing its own submodules, and those importing the package's
    names, is how a package shows its face; it is not counted as a circle."""
    return {name for name in edges if (PARITY.parent / name.replace(".", "/") / "__init__.py").exists()}


def test_no_import_circle_between_parity_files():
    edges = graph()
    inits = package_inits(edges)
    without_faces = {m: {t for t in targets if t not in inits} for m, targets in edges.items() if m not in inits}
    assert circles(without_faces) == []


def test_the_walk_sees_a_planted_circle():
    """The check can fail: a two-module loop and a three-module loop are found."""
    assert circles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c"]]


def test_no_folder_imports_one_above_it():
    """Rooms stack in floors: a circle between rooms is an import running back up (the
    catalogue <-> registry, adapters <-> train.step and onnx <-> adapters ones are gone)."""
    assert circles(rooms(graph())) == []


def test_the_room_walk_sees_a_planted_upward_import():
    edges = graph()
    edges["parity.catalogue.registry"] = edges["parity.catalogue.registry"] | {"parity.inference.check"}
    assert any({"catalogue", "inference"} <= set(group) for group in circles(rooms(edges)))


def test_no_private_name_is_imported_from_another_file():
    taken = [f"{module_name(path)}: {module}.{name}"
             for path in PARITY.rglob("*.py") for module, names in imports(path)
             if module and module.startswith("parity") for name in names
             if name.startswith("_") and not name.startswith("__")]
    assert taken == []


def test_only_the_adapters_import_the_implementations():
    reached = [f"{module_name(path)}: {module}" for path in PARITY.rglob("*.py") if "adapters" not in path.parts
               for module, _ in imports(path) if module and module.split(".")[0] in IMPLEMENTATIONS]
    assert reached == []

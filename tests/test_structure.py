"""The shape of the package: what the CLI loads, who imports whom, where errors live."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import imgtrain
from imgtrain import errors

SRC = Path(imgtrain.__file__).parent


def test_help_and_the_cli_module_do_not_load_torch():
    code = (
        "import sys, contextlib, io\nfrom imgtrain.cli import main\n"
        "for argv in ([], ['train'], ['score'], ['serve'], ['transform', 'init'], ['convert']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        assert main(argv + ['--help']) == 0\n"
        "print(sorted(m for m in ('torch', 'torchvision', 'PIL', 'numpy') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_no_library_module_imports_the_cli():
    for path in SRC.rglob("*.py"):
        if path.parent.name == "cli" or path.name == "__main__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [a.name for a in node.names]
                assert "cli" not in {n.rpartition(".")[2] for n in names}, f"{path} imports the CLI"


def test_every_error_class_lives_in_errors_and_is_exported():
    defined = {
        name
        for name, value in vars(errors).items()
        if inspect.isclass(value) and issubclass(value, errors.ImgtrainError)
    }
    assert set(errors.__all__) == defined
    assert defined <= set(imgtrain.__all__)
    assert all(getattr(imgtrain, name) is getattr(errors, name) for name in defined)
    for path in SRC.rglob("*.py"):
        if path.name == "errors.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                bases = {getattr(b, "id", getattr(b, "attr", "")) for b in node.bases}
                assert not bases & defined, f"{path}: error class {node.name} outside errors.py"


def test_no_function_is_over_sixty_lines():
    long = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno >= 60:
                long.append(f"{path.relative_to(SRC)}:{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long


def _module_name(path: Path) -> str:
    parts = ["imgtrain", *path.relative_to(SRC).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(path: Path) -> set[str]:
    """The imgtrain modules `path` imports when it is imported (imports inside functions are left out)."""
    package = _module_name(path).split(".") if path.name == "__init__.py" else _module_name(path).split(".")[:-1]
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.level:
            base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("imgtrain"):
            found.add(node.module)
    return found


def test_no_import_circle():
    """Module-level imports between imgtrain's modules form no cycle (a package's __init__ may import its own
    modules: that is how it exports them)."""
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph = {
        name: {m for m in _top_level_imports(path) if m in modules and m != name} for name, path in modules.items()
    }
    for name, path in modules.items():
        if path.name == "__init__.py":  # importing a package's own module from inside it is not a circle
            graph[name] = {m for m in graph[name] if not m.startswith(name + ".")}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                raise AssertionError(
                    "import circle: " + " -> ".join(trail[trail.index(nxt) :] + [node, nxt])
                    if nxt in trail
                    else f"import circle through {node} -> {nxt}"
                )
            if nxt not in state:
                visit(nxt, trail + [node])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def test_every_module_is_named_in_the_architecture_document():
    """docs/architecture.md says what each module owns: every module under src/ has its name there, in the section
    of its package (`data/`, `training/`, ...; top-level modules under "Top level")."""
    text = (SRC.parents[1] / "docs" / "architecture.md").read_text()
    sections: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("Top level"):
            current = ""
        elif line.startswith("`") and "/` " in line.split("—")[0] + " ":
            current = line[1 : line.index("/`")]
        if current is not None:
            sections[current] = sections.get(current, "") + line + "\n"
    missing = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name in ("__init__.py", "__main__.py"):
            continue
        parts = path.relative_to(SRC).parts
        package = parts[0] if len(parts) > 1 else ""
        if f"`{path.stem}`" not in sections.get(package, ""):
            missing.append(str(path.relative_to(SRC)))
    assert not missing, f"not named in docs/architecture.md: {missing}"


def test_no_module_is_over_four_hundred_lines():
    """A module over 400 lines holds more than one concern (issue 26): split it by concern, not by length."""
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long

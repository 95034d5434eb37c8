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
    code = ("import sys, contextlib, io\nfrom imgtrain.cli import main\n"
            "for argv in ([], ['train'], ['score'], ['serve'], ['transform', 'init'], ['convert']):\n"
            "    with contextlib.redirect_stdout(io.StringIO()):\n"
            "        assert main(argv + ['--help']) == 0\n"
            "print(sorted(m for m in ('torch', 'torchvision', 'PIL', 'numpy') if m in sys.modules))")
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
    defined = {name for name, value in vars(errors).items()
               if inspect.isclass(value) and issubclass(value, errors.ImgtrainError)}
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

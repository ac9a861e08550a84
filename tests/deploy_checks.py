"""Checks shared by the deployment tests (Compose and Kubernetes): commands and the modules they run."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path


def defines(module: str, attr: str) -> bool:
    """Whether ``module`` has ``attr``, read without importing it: importing may read the settings.

    A top-level definition counts, and so does a module ``__getattr__`` that names it (built on access).
    """
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, f"module {module} not found"
    source = Path(spec.origin).read_text()
    tree = ast.parse(source)
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return attr in names or ("__getattr__" in names and f'"{attr}"' in source)


def option(command: list[str], name: str) -> str:
    assert name in command, f"{name} missing from {command}"
    return command[command.index(name) + 1]

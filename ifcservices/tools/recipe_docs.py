"""What the ifcpatch recipes are and take, read from the recipes themselves.

Built-in recipes are described by ``ifcpatch.extract_docs`` (signature, type hints, docstring); custom
ones (``<Name>.py`` files with a ``Patcher`` class in ``IFCFLOW_IFCPATCH_RECIPE_DIR``) the same way,
with ``ifcpatch.parse_docstring`` on their ``__init__`` docs. Each recipe is shown as ifcpipeline listed
it (``name``, ``description``, ``is_custom``, ``parameters``, ``output_type``), its parameters with
``name``, ``type``, ``required``, ``default`` and ``description``, plus what the checks need
(``types``, ``enum_items``, ``generic_type``, ``filter_glob``, ``path_role``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import io
import sys
import typing
from pathlib import Path
from types import ModuleType
from typing import Any

import ifcpatch

from contracts.patch_args import path_role

_BOILERPLATE = ("file", "logger")


def builtin_names() -> list[str]:
    folder = Path(ifcpatch.__file__).parent / "recipes"
    return sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_"))


def custom_names(folder: Path | None) -> list[str]:
    if folder is None or not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith(("_", ".")))


def load_custom(folder: Path, name: str) -> ModuleType:
    """The custom recipe module ``<folder>/<name>.py`` (its folder importable, for its own helpers)."""
    spec = importlib.util.spec_from_file_location(f"ifcflow_custom_recipes.{name}", folder / f"{name}.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {name}.py")
    module = importlib.util.module_from_spec(spec)
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    spec.loader.exec_module(module)
    return module


def _type_names(hint: Any) -> tuple[list[str], str | None, list[Any] | None]:
    """(type names, generic container name, Literal values) of a type hint."""
    generic = None
    origin = typing.get_origin(hint)
    if origin in (list, tuple, set) or (origin is not None and getattr(origin, "__name__", "") == "Sequence"):
        generic = getattr(origin, "__name__", "list")
        args = typing.get_args(hint)
        hint = args[0] if args else Any
        origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return ["Literal"], generic, list(typing.get_args(hint))
    if origin is typing.Union or type(hint).__name__ == "UnionType":
        return [getattr(a, "__name__", str(a)) for a in typing.get_args(hint)], generic, None
    if hint is Any:
        return ["Any"], generic, None
    return [getattr(hint, "__name__", str(hint))], generic, None


def _display(types: list[str], generic: str | None) -> str:
    if types == ["Any"]:
        text = "Any"
    elif len(types) == 2 and "NoneType" in types:
        text = f"Optional[{next(t for t in types if t != 'NoneType')}]"
    elif len(types) > 1:
        text = f"Union[{', '.join(types)}]"
    else:
        text = types[0]
    return f"{generic}[{text}]" if generic else text


def _parameter(name: str, doc: dict[str, Any], signature_param: inspect.Parameter) -> dict[str, Any]:
    raw = doc.get("type", "Any")
    types = raw if isinstance(raw, list) else [raw]
    generic = doc.get("generic_type")
    parameter: dict[str, Any] = {
        "name": name,
        "type": _display(types, generic),
        "required": signature_param.default is inspect.Parameter.empty,
        "description": " ".join(str(doc.get("description", "")).split()),
        "types": [] if types == ["Literal"] else types,
    }
    if "default" in doc:
        parameter["default"] = doc["default"]
    for key in ("enum_items", "generic_type", "filter_glob"):
        if key in doc:
            parameter[key] = doc[key]
    role = path_role(name, "filter_glob" in doc)
    if role:
        parameter["path_role"] = role
    return parameter


def _docs_of_class(cls: type) -> dict[str, Any]:
    """What ``ifcpatch.extract_docs`` gives for a class outside ifcpatch's own recipe folder."""
    method = cls.__init__  # type: ignore[misc]
    inputs: dict[str, dict[str, Any]] = {}
    hints = typing.get_type_hints(method)
    for name, param in inspect.signature(method).parameters.items():
        if name == "self" or name in _BOILERPLATE or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        doc: dict[str, Any] = {"name": name, "description": ""}
        if isinstance(param.default, str | float | int | bool):
            doc["default"] = param.default
        if name in hints:
            types, generic, literal = _type_names(hints[name])
            doc["type"] = "Literal" if literal is not None else (types if len(types) > 1 else types[0])
            if literal is not None:
                doc["enum_items"] = literal
            if generic:
                doc["generic_type"] = generic
        inputs[name] = doc
    text = inspect.getdoc(method)
    parsed = ifcpatch.parse_docstring(text) if text else None
    if parsed is not None:
        for name, description in parsed["param"].items():
            if name in inputs:
                inputs[name]["description"] = description
        for name, glob in parsed["filter_glob"].items():
            if name in inputs:
                inputs[name]["filter_glob"] = glob
    return {"description": parsed["description"] if parsed else "", "output": parsed["output"] if parsed else None,
            "inputs": inputs, "class_": cls}


def _first_paragraph(text: str, fallback: str) -> str:
    return " ".join(text.split("\n\n", 1)[0].split(":param", 1)[0].split()) or fallback


def describe(name: str, *, custom_dir: Path | None = None) -> dict[str, Any] | None:
    """The recipe ``name`` as the listing shows it (custom when ``custom_dir`` is given), or None."""
    try:
        if custom_dir is not None:
            cls = load_custom(custom_dir, name).Patcher
            docs: Any = _docs_of_class(cls)
        else:
            with contextlib.redirect_stdout(io.StringIO()):  # extract_docs prints what it cannot load
                docs = ifcpatch.extract_docs(name, "Patcher", "__init__", _BOILERPLATE)
            if docs is None:
                return None
            cls = docs["class_"]
    except Exception:  # a recipe that cannot even be imported here: listed without parameters
        return {"name": name, "description": "could not be loaded on this server", "is_custom": custom_dir is not None,
                "parameters": [], "output_type": None, "loadable": False}
    signature = inspect.signature(cls.__init__)
    parameters = [_parameter(n, d, signature.parameters[n]) for n, d in docs["inputs"].items()
                  if n in signature.parameters]
    fallback = f"{'Custom' if custom_dir is not None else 'Built-in'} IfcPatch recipe"
    return {
        "name": name,
        # ifcpipeline's: the docstring's first paragraph (its summary line); the rest is "details".
        "description": _first_paragraph(inspect.getdoc(cls.__init__) or "", fallback),
        "details": " ".join(str(docs["description"] or "").split()),
        "is_custom": custom_dir is not None,
        "parameters": parameters,
        "output_type": docs.get("output"),
        "loadable": True,
    }


def listing(include_builtin: bool, include_custom: bool, custom_dir: Path | None) -> dict[str, Any]:
    """``POST /patch/recipes/list``'s answer."""
    recipes: list[dict[str, Any]] = []
    if include_builtin:
        recipes += [r for n in builtin_names() if (r := describe(n)) is not None]
    if include_custom and custom_dir is not None:
        recipes += [r for n in custom_names(custom_dir) if (r := describe(n, custom_dir=custom_dir)) is not None]
    builtin = sum(1 for r in recipes if not r["is_custom"])
    return {
        "success": True,
        "recipes": recipes,
        "total_count": len(recipes),
        "builtin_count": builtin,
        "custom_count": len(recipes) - builtin,
    }

"""Every project import resolves, including the ones inside functions that only run on a rare path (a refused
promotion, a failed notification), and every `module.NAME` a file reads from a project module exists.
A rename that misses one of them fails here in seconds instead of deep inside a pipeline test."""

import ast
import importlib
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("catalog", "compliance_assets", "contracts", "partitions", "resources", "sensors", "synthetic", "tests", "scripts", "bench")
FILES = sorted(p for pkg in PACKAGES if (ROOT / pkg).is_dir() for p in (ROOT / pkg).rglob("*.py"))


def project_module(name: str):
    """The module `name` if it is one of ours and importable as a module, else None."""
    if name.split(".")[0] not in PACKAGES:
        return None
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError:
        return None


def unresolved(path: pathlib.Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    modules, missing = {}, []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] in PACKAGES:
            module = importlib.import_module(node.module)  # an ImportError here is a finding too
            for alias in node.names:
                submodule = project_module(f"{node.module}.{alias.name}")
                if submodule is not None:
                    modules[alias.asname or alias.name] = submodule
                elif alias.name != "*" and not hasattr(module, alias.name):
                    missing.append(f"line {node.lineno}: {node.module} has no {alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                module = project_module(alias.name)
                if module is not None and alias.asname:
                    modules[alias.asname] = module
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load) and isinstance(node.value, ast.Name):
            module = modules.get(node.value.id)
            if module is not None and not hasattr(module, node.attr):
                missing.append(f"line {node.lineno}: {node.value.id}.{node.attr} (module {module.__name__})")
    return missing


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_project_import_and_module_attribute_resolves(path):
    assert unresolved(path) == []

"""The layering the architecture promises, checked on the source: the lake resource is the only code that does
Delta I/O or knows the lake's folder layout."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PRODUCT = ("catalog", "compliance_assets", "partitions", "resources", "sensors")
LAKE = ROOT / "resources" / "lake.py"
DELTA_MODULES = ("delta", "deltalake")
LAYOUT = ("/tables/", "/checkpoints/", "tables/", "checkpoints/")


def product_files():
    return sorted(p for pkg in PRODUCT for p in (ROOT / pkg).rglob("*.py") if p != LAKE)


def test_only_the_lake_resource_imports_delta():
    offenders = []
    for path in product_files():
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names if n.split(".")[0] in DELTA_MODULES]
    assert offenders == []


def test_only_the_lake_resource_spells_the_lake_layout_or_reads_delta_with_spark():
    offenders = []
    for path in product_files():
        tree = ast.parse(path.read_text())
        docstrings = {id(n.body[0].value) for n in ast.walk(tree) if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef)) and ast.get_docstring(n)}
        for node in ast.walk(tree):
            if id(node) in docstrings:
                continue
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and any(part in node.value for part in LAYOUT):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value[:60]!r}")
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "format":
                if node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value == "delta":  # spark.read/write.format("delta")
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} .format('delta')")
    assert offenders == []


def package_of(module: str) -> str:
    """A module's package for the layering: compliance_assets' domains (ingest, ml, ...) and the top-level packages."""
    parts = module.split(".")
    if parts[0] == "compliance_assets" and len(parts) > 2:
        return ".".join(parts[:2])
    return module if parts[0] == "compliance_assets" else parts[0]


def import_graph() -> dict[str, set[str]]:
    modules = {}
    for pkg in PRODUCT + ("contracts",):
        for path in (ROOT / pkg).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            modules[name.removesuffix(".__init__")] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and package_of(target) != package_of(name):
                    graph.setdefault(package_of(name), set()).add(package_of(target))
    return graph


def test_no_import_cycles_between_packages():
    graph = import_graph()
    cycles = []
    for start in graph:
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    cycles.append(" -> ".join(path + [start]))
                elif nxt not in path:
                    stack.append((nxt, path + [nxt]))
    assert sorted(set(cycles))[:5] == []


# docs/architecture.md's picture, top to bottom: a package imports only packages in lower layers
LAYERS = (
    ("compliance_assets.definitions",),
    ("compliance_assets.jobs", "compliance_assets.serving", "compliance_assets.streaming"),
    ("compliance_assets.monitoring", "compliance_assets.realtime"),
    ("compliance_assets.reporting",),
    ("compliance_assets.ml",),
    ("compliance_assets.ingest", "compliance_assets.investigations"),
    ("compliance_assets.operations", "compliance_assets.transforms", "compliance_assets.synthetic"),
    ("compliance_assets.metadata",),
    ("resources", "partitions"),
    ("catalog",),
    ("contracts",),
)


def test_each_package_imports_only_the_layers_below_it_as_docs_architecture_draws_them():
    layer = {package: i for i, packages in enumerate(LAYERS) for package in packages}
    graph = import_graph()
    assert set(graph) - {"compliance_assets"} <= set(layer), "a package missing from LAYERS and docs/architecture.md"
    upward = [f"{a} -> {b}" for a, targets in graph.items() for b in targets if a in layer and layer.get(b, -1) <= layer[a]]
    assert upward == []

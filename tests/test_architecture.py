"""The dependency rule of docs/architecture.md, read from the source's own import statements."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("hw", "sw", "sim")


def module_name(path):
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path):
    """Every module ``path`` imports, at any depth of the file (function-level included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


MODULES = {module_name(path): imports_of(path)
           for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def top(name):
    return name.split(".")[0]


def offenders(prefix, forbidden):
    return sorted((module, name) for module, names in MODULES.items()
                  if module == prefix or module.startswith(prefix + ".")
                  for name in names if any(name == f or name.startswith(f + ".")
                                           for f in forbidden))


def test_the_tree_is_read():
    assert {"hw.config", "hw.accelerator", "sw.twin.gemm", "sim.cli.main"} <= set(MODULES)


def test_hw_imports_neither_torch_nor_the_other_packages():
    assert offenders("hw", ["torch", "sw", "sim", "cocotb"]) == []


def test_sw_never_imports_amaranth_or_sim():
    assert offenders("sw", ["amaranth", "sim", "cocotb"]) == []


@pytest.mark.parametrize("module", ["hw.config", "hw.register_map", "hw.validation"])
def test_the_plain_python_hardware_modules_import_no_amaranth(module):
    assert not any(top(name) == "amaranth" for name in MODULES[module])


def test_the_twin_imports_only_the_plain_hardware_modules_torch_and_itself():
    allowed_hw = {"hw.config", "hw.register_map", "hw.validation"}
    bad = []
    for module, names in MODULES.items():
        if not module.startswith("sw.twin"):
            continue
        for name in names:
            if top(name) == "hw" and not any(name == a or name.startswith(a + ".")
                                             for a in allowed_hw):
                bad.append((module, name))
            if top(name) == "sw" and not (name.startswith("sw.twin")
                                          or name.startswith("sw.parameter_checks")):
                bad.append((module, name))
    assert bad == []


def test_only_the_cli_imports_the_cli():
    assert [(module, name) for module, names in MODULES.items()
            if not module.startswith("sim.cli") for name in names
            if name.startswith("sim.cli")] == []


def test_no_import_cycles():
    graph = {module: {name for name in names if name in MODULES and name != module}
             for module, names in MODULES.items()}
    state, cycle = {}, []

    def visit(node, stack):
        state[node] = "open"
        for successor in sorted(graph[node]):
            if state.get(successor) == "open":
                cycle.append(stack[stack.index(successor):] + [successor])
            elif successor not in state:
                visit(successor, stack + [successor])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycle == []

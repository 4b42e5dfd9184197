"""The packages form layers, each importing only from the ones below it, and no two modules import each other:
core < data, models < metrics < runs < analysis < jobs < cli in the package brnpa, with the root's scripts
(trainVal.py, processResults.py, ...) above all. Every import statement counts, also one inside a function."""
import ast
import os
import subprocess

from helpers import REPO_ROOT

LAYERS = {"core": 0, "data": 1, "models": 1, "metrics": 2, "runs": 3, "analysis": 4, "jobs": 5, "cli": 6}
TOP = max(LAYERS.values()) + 1  # the brnpa package itself, and the scripts at the repository's root


def module_imports():
    """{module: set of the repository's modules it imports} of every tracked module outside tests/ and bench/."""
    tracked = subprocess.run(["git", "ls-files", "*.py"], cwd=REPO_ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    paths = {name[:-3].replace("/", ".").removesuffix(".__init__"): name for name in tracked
             if not name.startswith(("tests/", "bench/")) and os.path.isfile(os.path.join(REPO_ROOT, name))}
    graph = {}
    for module, path in paths.items():
        with open(os.path.join(REPO_ROOT, path)) as file:
            tree = ast.parse(file.read(), path)
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module)
                imported.update(f"{node.module}.{alias.name}" for alias in node.names)
        graph[module] = {name for name in imported if name in paths and name != module}
    return graph


def layer(module):
    """The layer of a module of the package (brnpa.<layer>....); TOP for brnpa itself and the root's scripts."""
    parts = module.split(".")
    return LAYERS.get(parts[1], TOP) if parts[0] == "brnpa" and len(parts) > 1 else TOP


def test_no_module_imports_one_above_it():
    graph = module_imports()
    assert {"brnpa.runs.args", "brnpa.metrics.curves", "brnpa.core.model_ids"} <= set(graph)  # it sees the package
    upward = sorted((module, used) for module, uses in graph.items() for used in uses if layer(used) > layer(module))
    assert not upward, f"imports of a higher layer: {upward}"


def test_no_two_modules_import_each_other():
    graph = module_imports()
    mutual = sorted((first, second) for first, uses in graph.items() for second in uses
                    if first < second and first in graph.get(second, ()))
    assert not mutual, mutual

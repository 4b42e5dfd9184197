"""The packages form layers, each importing only from the ones below it, and no two modules import each other:
core < data, models < metrics < runs < analysis < jobs, with the entry points (trainVal.py, processResults.py,
...) above all. Every import statement counts, also one inside a function."""
import ast
import os
import subprocess

from helpers import REPO_ROOT

LAYERS = {"core": 0, "data": 1, "models": 1, "metrics": 2, "runs": 3, "analysis": 4, "jobs": 5}
TOP = max(LAYERS.values()) + 1  # the entry points and scripts at the repository's root


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
    return LAYERS.get(module.split(".")[0], TOP)


def test_no_module_imports_one_above_it():
    graph = module_imports()
    assert {"runs.args", "metrics.curves", "core.model_ids"} <= set(graph)  # the scan sees the packages
    upward = sorted((module, used) for module, uses in graph.items() for used in uses if layer(used) > layer(module))
    assert not upward, f"imports of a higher layer: {upward}"


def test_no_two_modules_import_each_other():
    graph = module_imports()
    mutual = sorted((first, second) for first, uses in graph.items() for second in uses
                    if first < second and first in graph.get(second, ()))
    assert not mutual, mutual

"""The README's recipes for a new head and a new saliency source, pasted into a scratch copy of the repository as
the README says (each code block where its text puts it) and run through the contract tests, so that a recipe
that no longer works fails here."""
import os
import re
import shutil
import subprocess
import sys

from helpers import REPO_ROOT


def readme_blocks():
    with open(os.path.join(REPO_ROOT, "README.md")) as file:
        return re.findall(r"```python\n(.*?)```", file.read(), re.S)


def block_with(blocks, text):
    found = [block for block in blocks if text in block]
    assert len(found) == 1, f"the README should have one code block with {text!r}, it has {len(found)}"
    return found[0]


def paste(path, anchor, text, replace=False):
    """Put text into the file before the line `anchor` (or in its place with replace)."""
    with open(path) as file:
        source = file.read()
    assert source.count(anchor) == 1, f"{anchor!r} is not once in {path}"
    source = source.replace(anchor, text.rstrip("\n") + ("" if replace else "\n" + anchor))
    with open(path, "w") as file:
        file.write(source)


def scratch_copy(tmp_path):
    """The tracked files of the repository, copied."""
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True,
                             check=True).stdout.split("\n")
    root = tmp_path / "repo"
    for name in filter(None, tracked):
        if os.path.isfile(os.path.join(REPO_ROOT, name)):
            os.makedirs(root / os.path.dirname(name), exist_ok=True)
            shutil.copy2(os.path.join(REPO_ROOT, name), root / name)
    return root


def apply_recipes(root, blocks):
    """The head recipe (models/heads.py, model_ids.py, the two hand-worked lines of tests/unit/test_tables.py)
    and the source recipe (metrics/saliency.py), as the README places each block."""
    head = block_with(blocks, "class CAMHead(Head):")
    head_class, heads_line = head.split("\n\nHEADS = ")
    paste(root / "models" / "heads.py", "HEADS = {", head_class + "\n\n")
    with open(root / "models" / "heads.py") as file:
        source = file.read()
    old_line = next(line for line in source.splitlines() if line.startswith("HEADS = {"))
    paste(root / "models" / "heads.py", old_line, "HEADS = " + heads_line, replace=True)
    paste(root / "model_ids.py", "MODEL_IDS = {\n", "MODEL_IDS = {\n" + block_with(blocks, '"cam": ["--head", "cam"'),
          replace=True)
    by_hand = block_with(blocks, '    "cam": [[1., 2.], [3., 4.]],')
    for table in ("COMBINED_BY_HAND = {\n", "SALIENCY_BY_HAND = {\n"):
        paste(root / "tests" / "unit" / "test_tables.py", table, table + by_hand, replace=True)
    paste(root / "metrics" / "saliency.py", 'OWN_MAPS = "own_maps"',
          block_with(blocks, "def build_cell_occlusion(inputs):") + "\n\n")
    paste(root / "metrics" / "saliency.py", "SOURCES = {source.name: source for source in [\n",
          "SOURCES = {source.name: source for source in [\n" + block_with(blocks, 'SaliencySource("cellocclusion"'),
          replace=True)


def test_the_head_and_source_recipes_pass_the_contract_tests(tmp_path):
    root = scratch_copy(tmp_path)
    apply_recipes(root, readme_blocks())
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "tests/unit/test_tables.py", "-k", "cam or cellocclusion"], cwd=root, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    passed = re.search(r"(\d+) passed", result.stdout)
    assert passed and int(passed.group(1)) >= 5, result.stdout[-2000:]  # the head's and the source's contract tests

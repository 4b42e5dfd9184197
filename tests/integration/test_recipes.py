"""The recipes of docs/EXTENDING.md, pasted into a scratch copy of the repository where the document says (the
comment line `<!-- paste into FILE before|after|replacing the line: ANCHOR [; tested as: NAME] -->` above each
code block) and run through the contract tests, so that a recipe that no longer works fails here. Every code
block of the document must say where it goes."""
import os
import re
import shutil
import subprocess
import sys

from helpers import REPO_ROOT

MARKER = re.compile(r"<!-- paste into (?P<file>\S+) (?P<where>before|after|replacing) the line: (?P<anchor>.*?)"
                    r"(?: ; tested as: (?P<name>\S+))? -->")


def recipes(text):
    """[(markers, code)] of every ```python block of the text, markers the paste comments right above it."""
    found = []
    for match in re.finditer(r"((?:<!-- .*? -->\n)*)```python\n(.*?)```", text, re.S):
        markers = [MARKER.fullmatch(line) for line in match.group(1).splitlines()]
        assert markers and all(markers), f"this code block does not say where it goes:\n{match.group(2)}"
        found.append((markers, match.group(2)))
    assert len(found) == text.count("```python"), "a code block of docs/EXTENDING.md is not preceded by its place"
    return found


def paste(path, where, anchor, code):
    """Put code before, after or in place of the one line of the file that starts with anchor (a top-level block
    pasted before a line is followed by two blank lines)."""
    with open(path) as file:
        lines = file.read().split("\n")
    at = [index for index, line in enumerate(lines) if line.startswith(anchor)]
    assert len(at) == 1, f"{path} should have one line starting with {anchor!r}, it has {len(at)}"
    code = code.rstrip("\n").split("\n")
    index = at[0]
    if where == "before":
        lines[index:index] = code + ["", ""]
    elif where == "after":
        lines[index + 1:index + 1] = code
    else:
        lines[index:index + 1] = code
    with open(path, "w") as file:
        file.write("\n".join(lines))


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


def apply_recipes(root, text):
    """Paste every block of the document; returns the names its markers say the contract tests must cover."""
    names = []
    for markers, code in recipes(text):
        for marker in markers:
            paste(root / marker["file"], marker["where"], marker["anchor"], code)
            names += [marker["name"]] if marker["name"] else []
    return names


def test_the_recipes_pass_the_contract_tests(tmp_path):
    root = scratch_copy(tmp_path)
    with open(os.path.join(REPO_ROOT, "docs", "EXTENDING.md")) as file:
        names = apply_recipes(root, file.read())
    assert len(names) >= 3  # a head, a source and a curve at least
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider",
                             "tests/unit/test_tables.py"], cwd=root, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    for name in names:  # each new entry went through its contract tests
        assert re.search(rf"^PASSED \S+\[{re.escape(name)}\]$", result.stdout, re.M), f"no contract test ran {name}"

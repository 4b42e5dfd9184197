"""The documents against the code: every option a document names exists, every default it states is the
option's default, and statements that once contradicted the code do not come back."""
import glob
import importlib
import os
import re

import pytest

from helpers import REPO_ROOT

DOCUMENTS = ["README.md", *sorted(os.path.relpath(path, REPO_ROOT)
                                  for path in glob.glob(os.path.join(REPO_ROOT, "docs", "*.md")))]
# Options of other programs that the documents show in commands (torchrun, PostgreSQL's createuser and createdb).
OTHER_PROGRAMS = {"nproc_per_node", "standalone", "owner", "pwprompt"}
# The entry points whose parsers hold the options a user types.
PARSERS = ["processResults", "run_models", "plot_maps", "brnpa.data.synthetic", "brnpa.data.prepare_cub"]


def document(name):
    with open(os.path.join(REPO_ROOT, name), encoding="utf-8") as file:
        return file.read()


def option_defaults():
    """{option name: its defaults (a list)} over trainVal.py's option table and the other entry points'
    parsers."""
    from brnpa.runs.args import OPTIONS
    defaults = {name: [option.default] for name, option in OPTIONS.items()}
    for module in PARSERS:
        for action in importlib.import_module(module).build_parser()._actions:
            for flag in action.option_strings:
                if flag.startswith("--"):
                    defaults.setdefault(flag[2:], []).append(action.default)
    return defaults


def bench_options():
    """The options of the bench/ scripts, read from their add_argument calls."""
    names = set()
    for path in glob.glob(os.path.join(REPO_ROOT, "bench", "*.py")):
        with open(path) as file:
            names |= set(re.findall(r'add_argument\(\s*"--([a-z_0-9]+)"', file.read()))
    return names


def test_every_option_a_document_names_exists():
    known = set(option_defaults()) | bench_options() | OTHER_PROGRAMS | {"help", "config"}
    unknown = {(name, option) for name in DOCUMENTS
               for option in re.findall(r"(?<![\w-])--([a-z][a-z_0-9]*)", document(name)) if option not in known}
    assert not unknown, sorted(unknown)


def literal(text):
    """A default as a document writes it (100, 0.5, True, none), as the option's value, or None if it is not one."""
    if text in ("True", "False"):
        return text == "True"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return None


def test_every_default_a_document_states_is_the_options_default():
    """'`--name` (VALUE' and '`--name` (default VALUE' state a default; the value must be the option's."""
    defaults = option_defaults()
    stated = 0
    for name in DOCUMENTS:
        for option, value in re.findall(r"`--([a-z_0-9]+)`\s+\((?:default:?\s+)?([^\s,;)]+)", document(name)):
            if option in defaults and literal(value) is not None:
                stated += 1
                assert literal(value) in defaults[option], (name, option, value, defaults[option])
    assert stated >= 10  # the pattern still finds the documents' statements


# Statements that contradicted the code once: (file, text that must not be in it).
CONTRADICTIONS = [
    ("processResults.py", "Welch t-test matrices"),
    ("paper_table.sh", "computes DAUC and IAUC"),
    ("docs/RESULTS.md", "five post-hoc"),
    ("docs/USAGE.md", "7 scores"),
    ("trainVal.py", "DAUC / IAUC curves"),
    ("pyproject.toml", "DAUC / IAUC"),
    ("brnpa/runs/args.py", "perturbation tasks: DAUC / IAUC, single-step"),
    ("README.md", "unknown id prints the list"),
    ("README.md", "Four kinds of test need a tool beside\nPython"),
    ("docs/USAGE.md", "its per-image scores (DAUC, IAUC, DC, IC, AD, IIC, ADD)"),
    ("docs/METHOD.md", "the mean over the images of DAUC, IAUC, DC,\nIC, AD, IIC and ADD"),
]


@pytest.mark.parametrize("name,text", CONTRADICTIONS)
def test_a_contradiction_does_not_come_back(name, text):
    assert text not in document(name)


def test_the_licence_the_readme_states_is_in_the_repository():
    assert "CC BY-NC-SA 4.0" in document("README.md") and "CC BY-NC-SA 4.0" in document("LICENSE")


def test_usage_has_a_section_for_every_command():
    usage = document("docs/USAGE.md")
    for command in ("demo.sh", "paper_table.sh", "run_models.py", "plot_maps.py", "processResults.py", "train.sh",
                    "get_scores.sh"):
        assert re.search(rf"^#+ .*{re.escape(command)}", usage, re.MULTILINE), command


def heading_anchor(heading):
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("name", ["README.md", "docs/USAGE.md", "docs/METHOD.md"])
def test_every_link_of_a_table_of_contents_reaches_a_heading(name):
    text = document(name)
    anchors = {heading_anchor(heading) for heading in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}
    contents = next(line for line in text.splitlines() if line.startswith("**Contents:**"))
    links = re.findall(r"\]\(#([^)]+)\)", contents)
    assert links and set(links) <= anchors, sorted(set(links) - anchors)


def test_the_readme_shows_before_it_tells():
    """Its first 60 lines hold the picture, the install and demo commands with their times, the table of the
    metrics and the table of contents."""
    first = "\n".join(document("README.md").splitlines()[:60])
    assert "![" in first and "pics/maps.png" in first and os.path.exists(os.path.join(REPO_ROOT, "pics", "maps.png"))
    assert re.search(r"pip install -r requirements.txt +# .*\d+ (s|min)", first)
    assert re.search(r"\./demo\.sh +# .*\d+ (s|min)", first)
    assert "| metric | what it measures | better | defined by | command |" in first and "**Contents:**" in first

"""What `pip install .` puts in a user's environment: one top-level package, brnpa, with the report's page
files, and one console command, brnpa, which runs from any folder."""
import glob
import os
import shutil
import subprocess
import sys
import zipfile

from helpers import REPO_ROOT


def test_pip_installs_one_package_and_one_command(tmp_path):
    source = tmp_path / "source"
    for name in subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True,
                               check=True).stdout.split():
        if os.path.isfile(os.path.join(REPO_ROOT, name)):
            os.makedirs(source / os.path.dirname(name), exist_ok=True)
            shutil.copy(os.path.join(REPO_ROOT, name), source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "wheel")], check=True, capture_output=True)
    wheel = glob.glob(str(tmp_path / "wheel" / "*.whl"))[0]
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = archive.read(next(name for name in names if name.endswith("entry_points.txt"))).decode()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"brnpa"}
    assert {"brnpa/analysis/report/page.js", "brnpa/analysis/report/page.css"} <= set(names)
    assert "brnpa = brnpa.cli:main" in entry_points
    # installed beside this environment's libraries, and run from a folder that is not the repository
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--no-deps", "-q", wheel], check=True, capture_output=True)
    for command, expected in (("results", "processResults.py"), ("train", "trainVal.py")):
        shown = subprocess.run([str(venv / "bin" / "brnpa"), command, "--help"], cwd=tmp_path, capture_output=True,
                               text=True)
        assert shown.returncode == 0 and expected in shown.stdout, shown.stderr[-2000:]
    unknown = subprocess.run([str(venv / "bin" / "brnpa"), "trian"], cwd=tmp_path, capture_output=True, text=True)
    assert unknown.returncode == 1 and "COMMAND is one of: train, results (got 'trian')" in unknown.stderr

"""The README's "Your own data": its folder layout, config file and commands, run as written on a folder made
here (paths put in place of /path/to/, a smaller network and one epoch added for time, the results moved out
of the repository)."""
import os
import re
import subprocess

from helpers import REPO_ROOT, script_env

SPEED = "resnet_chan = 8\nbatch_size = 8\nmax_batch_size_single_pass = 8\nval_batch_size = 16\nnum_workers = 0\n"


def readme_blocks(section):
    """The code blocks of a section of the README, in order."""
    with open(os.path.join(REPO_ROOT, "README.md"), encoding="utf-8") as file:
        text = file.read()
    start = text.index(f"## {section}\n")
    end = text.index("\n## ", start + 1)
    return re.findall(r"```\n(.*?)```", text[start:end], re.DOTALL)


def test_your_own_data_as_the_readme_says(tmp_path):
    from brnpa.data.synthetic import make_synthetic
    layout, config, commands = readme_blocks("Your own data")
    root = f"{tmp_path}/"
    data = tmp_path / "my_data"
    make_synthetic(str(data), "birds", class_nb=3, train_per_class=10, test_per_class=3, img_size=64, seed=4)
    for line in layout.splitlines():  # the folders the README shows are the ones made
        assert os.path.isdir(os.path.dirname(line.split()[0].replace("/path/to/", root)).replace("/<class>", ""))
    (tmp_path / "birds.config").write_text(config.replace("epochs = 10", "epochs = 1") + SPEED)
    results = ["--results_dir", str(tmp_path / "results")]
    outputs = []
    for command in commands.strip().splitlines():
        extra = results + (["--vis_dir", str(tmp_path / "vis")] if "processResults" in command else [])
        completed = subprocess.run(command.replace("/path/to/", root) + " " + " ".join(extra), shell=True,
                                   cwd=REPO_ROOT, env=script_env(), capture_output=True, text=True)
        assert completed.returncode == 0, (command, completed.stderr[-2000:])
        outputs.append(completed.stdout)
    assert (tmp_path / "results" / "birds" / "attMetrDel_cnn.npy").exists()
    table = outputs[-1]
    assert "DAUC ↓" in table and "MPRT ρ ↓" in table and "energy in part" in table  # the masks were found

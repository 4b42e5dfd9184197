"""Helpers shared by the tests: the tiny configuration, tiny models and the way scripts are launched."""
import os
import subprocess
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TINY_CONFIG = """[default]
exp_id = e2e
dataset_train = tiny_train
dataset_val = tiny_train
dataset_test = tiny_test
class_nb = 3
train_prop = 0.75
img_size = 32
backbone = resnet18
resnet_chan = 8
resnet_stride = 1
optim = Adam
lr = 0.003
use_scheduler = False
batch_size = 8
max_batch_size_single_pass = 4
val_batch_size = 16
epochs = 2
max_worse_epoch_nb = 5
num_workers = 0
att_metrics_img_nb = 4
att_metrics_batch_size = 6
"""


def tiny_options(**overrides):
    """trainVal.py's resolved options with a tiny model (resnet18 of width 8, 32 px, 5 classes, low-res maps)."""
    from args import build_parser, resolve_derived
    from args import with_changes
    options = build_parser().parse_args([])
    values = dict(backbone="resnet18", resnet_chan=8, class_nb=5, stride_lay3=2, stride_lay4=2, img_size=32,
                  cuda=False)
    options = with_changes(options, **{**values, **overrides})
    if "head" not in overrides:
        options.head = None
    return resolve_derived(options)


def tiny_model(**overrides):
    """The model of tiny_options(**overrides), built through the model table like a run builds it."""
    from models.net import build_model
    from runtime import model_config
    return build_model(model_config(tiny_options(**overrides)))


def script_env(config=None):
    """The environment for launching a script: this test session's interpreter first on PATH (the scripts
    call python3), and CONFIG when given."""
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    if config is not None:
        env["CONFIG"] = str(config)
    return env


def run_script(script, *argv, config=None, check=True):
    """Run one of the repository's shell scripts (from '/', to show no path depends on the working folder)."""
    completed = subprocess.run([os.path.join(REPO_ROOT, script), *map(str, argv)], env=script_env(config),
                               capture_output=True, text=True, cwd="/")
    if check:
        assert completed.returncode == 0, completed.stderr[-3000:]
    return completed


def run_python(script, *argv, config=None):
    """Run one of the repository's Python entry points with this session's interpreter."""
    return subprocess.run([sys.executable, os.path.join(REPO_ROOT, script), *map(str, argv)],
                          env=script_env(config), capture_output=True, text=True, cwd="/")

"""Names of the result files and atomic writes.

Everything lives in <results_dir>/<exp_id>/ (exp_dir):
    <model_id>.ini                       resolved configuration of the run (and its run id)
    model<model_id>_best.pth             best checkpoint (by validation accuracy)
    model<model_id>_metrics.csv          per-epoch train / validation metrics
    model<model_id>_epoch<E>_test.csv    test accuracy, loss, sparsity, run id (E = best epoch)
    attMaps<model_id>_epoch<E>_test.npy  uint8 (N, M, h, w) test attention maps
    norm<model_id>_epoch<E>_test.npy     uint8 (N, 1, h, w) test feature norms
    <model_id>_hypSearch.db              optuna study (SQLite)
    attMetr<key>_<model_id>.npy          the first array of a perturbation task (brnpa/metrics/tasks.py; key
                                         Del: DAUC curves, Add: IAUC curves), its other arrays as
                                         attMetr<key>_<model_id>_<array>.npy, with _imgInds, _preds,
                                         _targets and a .json of metadata (run id, options) beside them
    attMetr<key>_<model_id>-<method>.npy       the same for a post-hoc saliency of the model, whose
    attMaps<model_id>-<method>_<tag>_test.npy  float maps (and .json) of the evaluated images, per configuration
    .<model_id>.staging/                 the files of a run in progress (see brnpa/runs/lifecycle.py)
    <model_id>.lock                      held by the process training the model
    attMetrics_<key>.csv, _pop.csv       summaries of a score (brnpa/metrics/scores.py), by processResults.py

A model id holds no '-' (brnpa/runs/args.py refuses it), so '<model_id>-<method>' reads back without ambiguity.
This module is the one place that spells these names and parses them back.

Every write goes through brnpa/core/files.py: to a temporary name first, flushed to the disk and renamed into
place. Saved arrays are read back with read_array.
"""
import glob
import os
import re

import numpy as np

from brnpa.core.errors import UserError
from brnpa.core.files import atomic_save_npy, atomic_write_csv
from brnpa.metrics.saliency import is_post_hoc_method

# Saved beside the arrays of every perturbation task: the evaluated images, the predicted and true classes.
SHARED_ARRAYS = ("img_inds", "preds", "targets")


def array_suffix(name):
    """The file suffix of a task's per-image array that is not its first: _<name in camelCase>.npy."""
    first, *rest = name.split("_")
    return "_" + first + "".join(word.capitalize() for word in rest) + ".npy"


def task_file_suffixes(task_key):
    """{array name: file suffix} of every file of a perturbation task's set, the .json ('meta') included."""
    from brnpa.metrics.tasks import task
    first, *others = task(task_key).arrays
    suffixes = {first: ".npy"}
    suffixes.update({name: array_suffix(name) for name in (*others, *SHARED_ARRAYS)})
    suffixes["meta"] = ".json"
    return suffixes


def all_task_file_suffixes():
    """The suffixes of every file a perturbation task of brnpa/metrics/tasks.py may write."""
    from brnpa.metrics.tasks import TASKS
    return sorted({suffix for key in TASKS for suffix in task_file_suffixes(key).values()})


def exp_dir(results_dir, exp_id):
    """The folder of an experiment: <results_dir>/<exp_id> (and its plots' <vis_dir>/<exp_id>)."""
    return os.path.join(results_dir, exp_id)


def source_id(model_id, method=None):
    """The name of a saliency source's results: the model id for its own maps, '<model_id>-<method>' for a
    post-hoc method."""
    return model_id if method is None else f"{model_id}-{method}"


def parse_source_id(source, post_hoc_names):
    """(model id, method or None) of a source id; a suffix after the last '-' that is not one of
    post_hoc_names, alone or with a '.<label>' (metrics.saliency.is_post_hoc_method), belongs to the model id."""
    model_id, _, method = source.rpartition("-")
    if model_id and is_post_hoc_method(method, post_hoc_names):
        return model_id, method
    return source, None


def config_path(exp_folder, model_id):
    return os.path.join(exp_folder, f"{model_id}.ini")


def checkpoint_path(exp_folder, model_id, trial=None):
    suffix = "" if trial is None else f"_trial{trial}"
    return os.path.join(exp_folder, f"model{model_id}{suffix}_best.pth")


def last_checkpoint_path(folder, model_id):
    """The checkpoint written after every epoch, to resume from (kept in the run's staging folder)."""
    return os.path.join(folder, f"model{model_id}_last.pth")


def epoch_metrics_path(exp_folder, model_id, trial=None):
    suffix = "" if trial is None else f"_trial{trial}"
    return os.path.join(exp_folder, f"model{model_id}{suffix}_metrics.csv")


def test_paths(exp_folder, model_id, epoch):
    """{'csv', 'att_maps', 'norm'}: the seed README's test artifact names for a best epoch."""
    return {"csv": os.path.join(exp_folder, f"model{model_id}_epoch{epoch}_test.csv"),
            "att_maps": os.path.join(exp_folder, f"attMaps{model_id}_epoch{epoch}_test.npy"),
            "norm": os.path.join(exp_folder, f"norm{model_id}_epoch{epoch}_test.npy")}


TEST_CSV = re.compile(r"model(?P<model_id>[^/]+)_epoch(?P<epoch>\d+)_test\.csv")


def parse_test_csv_name(name):
    """(model id, best epoch) of a test CSV's file name, or None for another file."""
    match = TEST_CSV.fullmatch(name)
    return (match.group("model_id"), int(match.group("epoch"))) if match else None


def tested_model_ids(exp_folder):
    """Model ids with a test CSV in exp_folder, sorted."""
    names = os.listdir(exp_folder) if os.path.isdir(exp_folder) else []
    return sorted({parsed[0] for parsed in map(parse_test_csv_name, names) if parsed is not None})


def find_test_epochs(exp_folder, model_id):
    """Best epochs E for which model<model_id>_epoch<E>_test.csv exists."""
    paths = glob.glob(os.path.join(exp_folder, f"model{glob.escape(model_id)}_epoch*_test.csv"))
    parsed = [parse_test_csv_name(os.path.basename(p)) for p in paths]
    return sorted(epoch for found in parsed if found is not None and found[0] == model_id for epoch in [found[1]])


def is_test_csv(name, model_id):
    parsed = parse_test_csv_name(name)
    return parsed is not None and parsed[0] == model_id


def model_file_pattern(model_id, post_hoc_names):
    """Every file name that belongs to a model's run in its experiment folder: test artifacts of any epoch,
    checkpoint, per-epoch metrics, .ini, best search parameters, and the curves and post-hoc maps computed
    from it (of any source '<model_id>' or '<model_id>-<method>' with a method of post_hoc_names; a model
    '<model_id>-<other>' of an older version is not one of them)."""
    model = re.escape(model_id)
    methods = "|".join(map(re.escape, post_hoc_names)) or "(?!)"
    curve_suffixes = "|".join(re.escape(suffix) for suffix in all_task_file_suffixes())
    return re.compile(rf"model{model}_epoch\d+_test\.csv|(attMaps|norm){model}_epoch\d+_test\.npy"
                      rf"|model{model}_best\.pth|model{model}_metrics\.csv|{model}\.ini|{model}_best_params\.json"
                      rf"|attMetr[A-Za-z]+_{model}(-({methods})(\.\w+)?)?({curve_suffixes})"
                      rf"|attMaps{model}-({methods})(\.\w+)?(_[0-9a-f]{{{MAPS_TAG_LENGTH}}})?_test\.(npy|json)")


def task_file_names(exp_folder, task_key):
    """{source id: path of its first array} for every attMetr<task_key>_<source>.npy in exp_folder."""
    pattern = re.compile(rf"attMetr{re.escape(task_key)}_(?P<source>.+)\.npy")
    other_suffixes = tuple(suffix[:-len(".npy")] for suffix in task_file_suffixes(task_key).values()
                           if suffix not in (".npy", ".json"))
    found = {}
    for name in sorted(os.listdir(exp_folder)):
        match = pattern.fullmatch(name)
        if match and not match.group("source").endswith(other_suffixes):
            found[match.group("source")] = os.path.join(exp_folder, name)
    return found


def summary_paths(folder, metric_key):
    """{'mean', 'pop', 'seeds'}: processResults' summary CSVs of a score (brnpa/metrics/scores.py key): per
    experiment, the mean and the per-image values; over several experiments (in their summary folder), the
    per-experiment means."""
    return {"mean": os.path.join(folder, f"attMetrics_{metric_key}.csv"),
            "pop": os.path.join(folder, f"attMetrics_{metric_key}_pop.csv"),
            "seeds": os.path.join(folder, f"attMetrics_{metric_key}_seeds.csv")}


def curves_plot_name(task_key):
    """processResults' plot of the mean curves of a curve task, in its vis folder."""
    return f"curves_{task_key}.png"


def ttest_plot_name(score_key):
    """processResults' plot of a score's pairwise p-values (of --test, Wilcoxon by default, Holm-adjusted over the
    score's pairs), in its vis folder; the file name is kept from the released code's t-test plot."""
    return f"ttest_{score_key}.png"


def cd_plot_name(score_key):
    """processResults' critical-difference diagram of a score, in its vis folder."""
    return f"cd_{score_key}.png"


def sanity_plot_name():
    """processResults' plot of the sanity task's cascading randomisation, in its vis folder."""
    return "sanity.png"


def agreement_plot_name():
    """processResults' heatmap of the agreement between the scores, in its vis folder."""
    return "metric_agreement.png"


def compare_path(folder, score_key):
    """processResults' paired comparisons of every two sources on a score: per image in an experiment's
    folder, per seed in the summary folder of several experiments."""
    return os.path.join(folder, f"compare_{score_key}.csv")


def reliability_path(folder):
    """processResults' reliability of each score in an experiment (Krippendorff's alpha, Friedman's p)."""
    return os.path.join(folder, "metric_reliability.csv")


def agreement_path(folder):
    """processResults' Spearman correlations between the scores of an experiment."""
    return os.path.join(folder, "metric_agreement.csv")


def summary_runs_path(folder):
    """Which runs processResults' summaries (and plots) in a folder were made from."""
    return os.path.join(folder, "summary_runs.json")


def parse_curve_stage_name(name):
    """(metric key, source id) of a curve set's stage name (curve_stage_name), or None for another name."""
    match = re.fullmatch(r"attMetr(?P<key>[A-Za-z]+)_(?P<source>.+)", name)
    return (match.group("key"), match.group("source")) if match else None


def long_scores_path(folder):
    """processResults' per-image values of every score of one experiment, one row per (image, source, score):
    image (test index), model, source, score, value."""
    return os.path.join(folder, "scores_long.csv")


def seeds_summary_path(folder):
    """processResults' table over several experiments."""
    return os.path.join(folder, "summary.csv")


def best_params_path(folder, model_id):
    """The best trial of a search: its number, value, parameters and the searched values."""
    return os.path.join(folder, f"{model_id}_best_params.json")


def staging_path(exp_folder, name):
    """The hidden folder a run (or curve set) called name works in before it lands (runs.Stage)."""
    return os.path.join(exp_folder, f".{name}.staging")


def lock_path(exp_folder, name):
    """The lock of the files called name (runs.lock)."""
    return os.path.join(exp_folder, f"{name}.lock")


def latest_test_paths(exp_folder, model_id):
    """test_paths of the model's best epoch, or None if it has no test CSV."""
    epochs = find_test_epochs(exp_folder, model_id)
    return test_paths(exp_folder, model_id, epochs[-1]) if epochs else None


def study_path(exp_folder, model_id):
    return os.path.join(exp_folder, f"{model_id}_hypSearch.db")


def att_metrics_paths(exp_folder, source, task_key):
    """{array name: path} of the files of a perturbation task (brnpa/metrics/tasks.py key) for a source id
    (source_id()): the task's arrays, 'img_inds', 'preds', 'targets', and 'meta', the .json, which is written
    last and says the set is complete."""
    base = os.path.join(exp_folder, f"attMetr{task_key}_{source}")
    return {name: base + suffix for name, suffix in task_file_suffixes(task_key).items()}


def curve_stage_name(source, metric_key):
    """The name of a perturbation task set's lock and staging folder."""
    return f"attMetr{metric_key}_{source}"


# The length of the tag that names one configuration's post-hoc maps (maps_tag).
MAPS_TAG_LENGTH = 10


def maps_tag(maps_key):
    """The tag of the post-hoc maps computed under maps_key ({name: value}, JSON-serialisable: what defines
    them): hexadecimal digits of its hash, the same for the same key."""
    import hashlib
    import json
    return hashlib.sha256(json.dumps(maps_key, sort_keys=True).encode()).hexdigest()[:MAPS_TAG_LENGTH]


def post_hoc_maps_paths(exp_folder, source, tag=None):
    """Maps of a post-hoc source '<model_id>-<method>' under one configuration (tag: maps_tag of what defines
    them; None for the untagged file of an older version): float (N, h, w) for the evaluated images, and a .json
    with the run id, method options and test indices of the images they were computed for. Each configuration
    has its own files, so that computing one never overwrites another's."""
    base = os.path.join(exp_folder, f"attMaps{source}_test" if tag is None else f"attMaps{source}_{tag}_test")
    return {"maps": base + ".npy", "meta": base + ".json"}


def write_test_artifacts(folder, model_id, epoch, values, header, att_maps, norms, run_id):
    """The test CSV (the values of header, then run_id), maps and norms of a best epoch, into folder."""
    paths = test_paths(folder, model_id, epoch)
    atomic_save_npy(paths["att_maps"], att_maps)
    atomic_save_npy(paths["norm"], norms)
    atomic_write_csv(paths["csv"], header + ["run_id"], [[values[name] for name in header] + [run_id]])
    return paths


def read_array(path, remake):
    """np.load of a saved result array, with one clear line for a missing, truncated or foreign file that
    names it and the command that remakes it (remake)."""
    try:
        return np.load(path)
    except (OSError, ValueError, EOFError) as error:
        raise UserError(f"cannot read {path} ({error}): remake it with {remake}") from None

"""The gallery of an experiment's report, read from its files: every test image some task evaluated, in
test order, with each source's saliency (the one its curves used), curves, predictions, per-image scores as
processResults wrote them in the _pop.csv files, and its saliency after each stage of the sanity checks."""
import csv
import os

import numpy as np
from PIL import Image

from brnpa.runs import results_io
from brnpa.data import layout
from brnpa.data.load_data import load_mask_array, load_rgb, resize_to_crop, scan_test_folder
from brnpa.metrics.saliency import POST_HOC_NAMES
from brnpa.metrics.scores import SCORES
from brnpa.metrics.tasks import TASKS
from brnpa.analysis.report.build import Gallery, GalleryImage
from brnpa.analysis.sets import SANITY_TASK, sanity_stages, set_meta
from brnpa.runs.runtime import data_config

THUMBNAIL_SIDE = 128
OUTLINE_COLOUR = (255, 230, 0)


# The largest side of a map the report draws after each sanity stage: a pixel-resolution source's maps (448 x 448 on
# CUB) are averaged down to it, so that the page stays small; the saved arrays keep them whole.
REPORT_MAP_SIDE = 64


def at_most(maps, side):
    """maps (S, h, w) with values in [0, 1], each box-averaged (PIL's BOX filter) down to at most side x side,
    keeping its aspect ratio; unchanged when they already fit."""
    height, width = maps.shape[-2:]
    if max(height, width) <= side:
        return maps
    scale = side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.stack([np.asarray(Image.fromarray(np.asarray(m, np.float32), mode="F").resize(size, Image.BOX))
                     for m in maps])


def read_pop_csv(path):
    """{source: {test index: value}} of an attMetrics_<key>_pop.csv file (columns img_<test index>; an empty
    cell: an image the source was not scored on)."""
    with open(path, newline="") as file:
        header, *rows = list(csv.reader(file))
    indices = [int(name[len("img_"):]) for name in header[1:]]
    return {row[0]: {index: float(value) for index, value in zip(indices, row[1:]) if value != ""} for row in rows}


def outline(mask):
    """The border pixels of a bool mask (H, W): inside the mask, next to a pixel outside it."""
    padded = np.pad(mask, 1, constant_values=False)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


def thumbnail(path, geometry, mask_path=None):
    """The image as the model sees it (resize, centre crop), THUMBNAIL_SIDE pixels wide, with the part mask's
    outline drawn in yellow where there is a mask: (S, S, 3) uint8."""
    from torchvision import transforms
    view = transforms.CenterCrop(geometry.img_size)(resize_to_crop(geometry)(load_rgb(path)))
    pixels = np.array(view.resize((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.BILINEAR))
    if mask_path is not None:
        mask = Image.fromarray(load_mask_array(mask_path, geometry))
        mask = np.array(mask.resize((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.NEAREST))
        pixels[outline(mask)] = OUTLINE_COLOUR
    return pixels


def drawable_maps(exp_folder, source, sets, saliencies, notes):
    """{test index: (h, w) saliency} of a source as its sets used it; {} (with a note) where the page cannot
    draw it: own maps whose sets used the released code's saliency, which is computed again from the
    checkpoint, not read from the saved maps. saliencies: the source's saliency from its saved maps."""
    if results_io.parse_source_id(source, POST_HOC_NAMES)[1] is None:
        modes = {set_meta(exp_folder, source, key).get("att_metrics_saliency", "float")
                 for key in TASKS if source in sets[key]}
        if modes != {"float"}:
            notes.append(f"the maps of {source} are not drawn: its sets used the released code's saliency, which "
                         f"is computed again from the checkpoint, not read from the saved maps")
            return {}
    return saliencies


def experiment_gallery(exp_folder, sets, landed, saliencies):
    """The Gallery of one experiment. sets: {task key: {source: {array name: array}}} as processResults read
    them (run ids checked); landed: {model_id: runs.LandedRun}; saliencies: {source: {test index: (h, w)}}
    from the saved maps. The per-image scores come from the attMetrics_<key>_pop.csv files processResults has
    just written."""
    scores = [(name, score.arrow, score.task) for name, score in SCORES.items()]
    sources = sorted({source for per_source in sets.values() for source in per_source})
    if not sources:
        return Gallery([], {}, [], scores, [], [], "no test image has been evaluated yet")
    models = {source: results_io.parse_source_id(source, POST_HOC_NAMES)[0] for source in sources}
    config = landed[models[sources[0]]].args
    samples = scan_test_folder(config.data_dir, config.dataset_test, config.class_nb)
    class_names = {}
    for path, label in samples:
        class_names.setdefault(label, os.path.basename(os.path.dirname(path)))
    geometry = data_config(config)[1]
    test_folder = os.path.join(config.data_dir, config.dataset_test)
    notes = []
    maps = {source: drawable_maps(exp_folder, source, sets, saliencies[source], notes) for source in sources}
    pop = {}
    for name, score in SCORES.items():
        path = results_io.summary_paths(exp_folder, score.key)["pop"]
        pop[name] = read_pop_csv(path) if os.path.exists(path) else {}
    positions = {key: {source: {int(index): position for position, index in enumerate(arrays["img_inds"])}
                       for source, arrays in per_source.items()} for key, per_source in sets.items()}
    test_indices = sorted({index for per_source in positions.values() for found in per_source.values()
                           for index in found})
    sanity = sets.get(SANITY_TASK, {})
    with_maps = sorted(source for source, arrays in sanity.items() if "randomised_maps" in arrays)
    stages = {source: sanity_stages(exp_folder, source) for source in with_maps}
    images = []
    for index in test_indices:
        path, label = samples[index]
        mask_path = layout.part_mask_path(test_folder, path)
        preds, curves, values = {}, {}, {name: {} for name in SCORES}
        for key, per_source in sets.items():
            for source, arrays in per_source.items():
                position = positions[key][source].get(index)
                if position is None:
                    continue
                preds.setdefault(source, int(arrays["preds"][position]))
                if TASKS[key].curve is not None:
                    curves.setdefault(key, {})[source] = arrays["curves"][position, :, 1]
                for name, score in SCORES.items():
                    if score.task == key and index in pop[name].get(source, {}):
                        values[name][source] = pop[name][source][index]
        randomised = {source: at_most(sanity[source]["randomised_maps"][positions[SANITY_TASK][source][index]] / 255,
                                      REPORT_MAP_SIDE)
                      for source in with_maps if index in positions[SANITY_TASK][source]}
        images.append(GalleryImage(index, label, thumbnail(path, geometry, mask_path),
                                   {source: maps[source].get(index) for source in sources}, preds, curves, values,
                                   randomised))
    curve_tasks = [(key, task.curve.name, task.curve.perturbed,
                    {source: task.curve.x_axis(arrays["curves"][0, :, 0]) for source, arrays in sets[key].items()})
                   for key, task in TASKS.items() if task.curve is not None and sets.get(key)]
    names = [class_names.get(label, str(label)) for label in range(max(class_names, default=-1) + 1)]
    return Gallery(sources, models, names, scores, curve_tasks, images, "; ".join(notes) or None, stages)

"""Writing the HTML report of an experiment: report.html and the folder report_assets/ beside it.

The page is static and works from file:// with no network: report.html holds the summary table and the
plots; report_assets/ holds the page's own script and style (copied from this folder), index.js (one entry
per gallery image: test index, labels, predictions and per-image scores, for sorting and filtering), the
chunks chunk_<k>.js (per image: each source's saliency at the map's resolution and its curves, loaded when
the rows are shown) and the thumbnails img/<test index>.jpg. Everything is written to a
temporary folder first and swapped in at the end: a build that fails before the swap leaves the previous
report whole. The swap removes the old report_assets/, then renames the new one and report.html into place;
a crash inside it can leave report.html beside no assets, or beside the new ones, until a build runs again.
"""
import base64
import dataclasses
import html
import json
import os
import shutil
import tempfile
from typing import Optional

import numpy as np

ASSETS = "report_assets"
IMAGES_PER_CHUNK = 20
PAGE_FILES = ("page.js", "page.css")


@dataclasses.dataclass
class Table:
    """The summary table: header cells (column name, direction arrow or ''), and rows of (source, cells) where
    each cell is (text, value used for sorting or None); caption: what its cells are (over the images of one
    experiment, or over experiments)."""
    header: list
    rows: list
    notes: list
    caption: str = ""


@dataclasses.dataclass
class Section:
    """A section of the page between the plots and the gallery. hint: a line under its title; plots:
    [(caption, file name)]; tables: [(choice label, Table)], shown one at a time with a select when there are
    several; lines: sentences listed under them."""
    title: str
    hint: str
    plots: list
    tables: list
    lines: list


@dataclasses.dataclass
class GalleryImage:
    """One evaluated test image. thumbnail: (S, S, 3) uint8, the image as the model sees it with the part's
    outline drawn in; maps: {source: (h, w) saliency in [0, 1], as the curves used it (None: not drawable)};
    preds: {source: predicted class}; curves: {curve task key: {source: (T,) scores}}; values: {score name:
    {source: the per-image value of the _pop.csv file}}; randomised: {source: (S, h, w) in [0, 1], its
    saliency after each stage of the sanity checks' randomisation}, for the sources whose set saved them."""
    test_index: int
    label: int
    thumbnail: np.ndarray
    maps: dict
    preds: dict
    curves: dict
    values: dict
    randomised: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Gallery:
    """sources: the sources in display order; models: {source: model id}; class_names: one per label;
    scores: [(name, arrow, task key)]; curve_tasks: [(task key, curve name, what a step does, {source: (T,) x})];
    images: GalleryImage list in test order; note: a line shown above the gallery (or None); sanity_stages:
    {source: the names of the stages its randomised maps follow}."""
    sources: list
    models: dict
    class_names: list
    scores: list
    curve_tasks: list
    images: list
    note: Optional[str] = None
    sanity_stages: dict = dataclasses.field(default_factory=dict)


def encode_uint8(values):
    """Values in [0, 1] as base64 of their uint8 rounding (the page decodes it back to [0, 1])."""
    quantised = np.clip(np.round(np.asarray(values, dtype=np.float64) * 255), 0, 255).astype(np.uint8)
    return base64.b64encode(quantised.tobytes()).decode("ascii")


def as_number(value):
    """A JSON number, or None for a missing or non-finite value."""
    if value is None or not np.isfinite(value):
        return None
    return float(value)


def script_call(function, *arguments):
    """A line of JavaScript calling function with JSON arguments."""
    return f"{function}({','.join(json.dumps(argument, separators=(',', ':')) for argument in arguments)});\n"


def index_payload(gallery):
    images = []
    for number, image in enumerate(gallery.images):
        images.append({"i": image.test_index, "label": image.label, "chunk": number // IMAGES_PER_CHUNK,
                       "preds": {source: int(pred) for source, pred in image.preds.items()},
                       "values": {name: {source: as_number(value) for source, value in per_source.items()}
                                  for name, per_source in image.values.items()}})
    return {"sources": gallery.sources, "models": gallery.models, "classNames": gallery.class_names,
            "scores": [{"name": name, "arrow": arrow, "task": task} for name, arrow, task in gallery.scores],
            "curveTasks": [{"task": key, "name": name, "perturbed": perturbed,
                            "x": {source: [round(float(value), 5) for value in x] for source, x in xs.items()}}
                           for key, name, perturbed, xs in gallery.curve_tasks],
            "images": images, "note": gallery.note, "sanityStages": gallery.sanity_stages}


def chunk_payload(images):
    payload = {}
    for image in images:
        payload[str(image.test_index)] = {
            "maps": {source: {"h": int(saliency.shape[0]), "w": int(saliency.shape[1]), "data": encode_uint8(saliency)}
                     for source, saliency in image.maps.items() if saliency is not None},
            "curves": {key: {source: encode_uint8(scores) for source, scores in per_source.items()}
                       for key, per_source in image.curves.items()},
            "randomised": {source: {"h": int(maps.shape[1]), "w": int(maps.shape[2]), "data": encode_uint8(maps)}
                           for source, maps in image.randomised.items()}}
    return payload


def table_html(table, table_id=None, choice=None):
    """A sortable table (a cell's value sorts it: a number, a string, or None for missing); choice: (select id,
    label) of a table shown when that label is selected."""
    head = "".join(f'<th data-column="{k}" title="click to sort">{html.escape(name)}'
                   f'{(" " + arrow) if arrow else ""}</th>' for k, (name, arrow) in enumerate(table.header))
    body = []
    for source, cells in table.rows:
        row = f'<td data-value="{html.escape(source)}">{html.escape(source)}</td>'
        for text, value in cells:
            number = value if isinstance(value, str) else as_number(value)
            key = "" if number is None else html.escape(number) if isinstance(number, str) else repr(number)
            row += f'<td data-value="{key}">{html.escape(text)}</td>'
        body.append(f"<tr>{row}</tr>")
    attributes = f' id="{table_id}"' if table_id else ""
    if choice:
        attributes += f' data-choice-of="{html.escape(choice[0])}" data-choice="{html.escape(choice[1])}"'
    return (f'<table class="sortable"{attributes}><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody>'
            f'</table>')


def figures_html(plots):
    return "".join(f'<figure><img src="{html.escape(name)}" alt="{html.escape(caption)}"></figure>'
                   for caption, name in plots)


def section_html(section, index):
    """A Section as HTML: title, hint, plots, its tables (behind a select when several) and its lines."""
    select_id = f"choice{index}"
    tables = ""
    if len(section.tables) > 1:
        options = "".join(f'<option value="{html.escape(label)}">{html.escape(label)}</option>'
                          for label, _ in section.tables)
        tables = f'<label>table of <select id="{select_id}" class="table-choice">{options}</select></label>'
    tables += "".join(table_html(table, choice=(select_id, label) if len(section.tables) > 1 else None)
                      for label, table in section.tables)
    lines = "".join(f"<li>{html.escape(line)}</li>" for line in section.lines)
    return (f'<h2>{html.escape(section.title)}</h2>\n<p class="hint">{html.escape(section.hint)}</p>\n'
            f'<div class="plots">{figures_html(section.plots)}</div>\n{tables}\n<ul class="notes">{lines}</ul>\n')


def page_html(title, table, plots, sections=()):
    """report.html: the table, plots and sections are in the page; the gallery is built by page.js from the
    assets."""
    notes = "".join(f"<li>{html.escape(note)}</li>" for note in table.notes)
    figures = figures_html(plots)
    extra = "".join(section_html(section, index) for index, section in enumerate(sections))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)}</title>
<link rel="stylesheet" href="{ASSETS}/page.css">
</head>
<body>
<h1>{html.escape(title)}</h1>
<h2>Summary</h2>
<p class="hint">{html.escape(table.caption[:1].upper() + table.caption[1:])}; ↓ lower is better, ↑ higher is
better. Click a column header to sort.</p>
{table_html(table, "summary")}
<ul class="notes">{notes}</ul>
<h2>Plots</h2>
<div class="plots">{figures}</div>
{extra}<h2>Images</h2>
<div id="controls"></div>
<p id="count"></p>
<div id="gallery"></div>
<div id="sentinel"></div>
<script src="{ASSETS}/page.js"></script>
<script src="{ASSETS}/index.js"></script>
</body>
</html>
"""


def save_jpeg(path, pixels):
    from PIL import Image
    Image.fromarray(pixels).save(path, quality=85)


def write_report(folder, title, table, plots, gallery, sections=()):
    """Write <folder>/report.html and <folder>/report_assets/ (replacing an earlier report whole). plots:
    [(caption, file name in folder)]; sections: [Section] after the plots. Returns the path of report.html."""
    os.makedirs(folder, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".report.", dir=folder)
    try:
        assets = os.path.join(staging, ASSETS)
        os.makedirs(os.path.join(assets, "img"))
        for name in PAGE_FILES:
            shutil.copy(os.path.join(os.path.dirname(os.path.abspath(__file__)), name), assets)
        with open(os.path.join(assets, "index.js"), "w") as file:
            file.write(script_call("reportIndex", index_payload(gallery)))
        for start in range(0, len(gallery.images), IMAGES_PER_CHUNK):
            images = gallery.images[start:start + IMAGES_PER_CHUNK]
            with open(os.path.join(assets, f"chunk_{start // IMAGES_PER_CHUNK}.js"), "w") as file:
                file.write(script_call("reportChunk", start // IMAGES_PER_CHUNK, chunk_payload(images)))
            for image in images:
                save_jpeg(os.path.join(assets, "img", f"{image.test_index}.jpg"), image.thumbnail)
        with open(os.path.join(staging, "report.html"), "w") as file:
            file.write(page_html(title, table, plots, sections))
        old = os.path.join(folder, ASSETS)
        if os.path.exists(old):
            shutil.rmtree(old)
        os.replace(assets, old)
        os.replace(os.path.join(staging, "report.html"), os.path.join(folder, "report.html"))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return os.path.join(folder, "report.html")

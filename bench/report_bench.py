"""Benchmark of the HTML report (processResults.py --report): build time, size on disk and the time until the
first gallery row is drawn in headless Chromium.

    python3 -m bench.report_bench                              # a synthetic experiment of 1000 images x 8 sources
    python3 -m bench.report_bench --report vis/demo/report.html --screenshot pics/report.png

The synthetic experiment is built in memory (smooth random 64 px images, 14 x 14 maps, 196-step deletion
and insertion curves, the seven scores) and written by report.build.write_report: the time covers the
thumbnails, the maps and curves and the page, not the reading of result files (time processResults.py
--report on a real experiment for that). --report opens an existing report instead; --screenshot saves a
PNG of the top of its gallery.
"""
import argparse
import os
import sys
import tempfile
import time

if not __package__:
    sys.exit("error: run it from the repository root as python3 -m bench.report_bench")

import numpy as np  # noqa: E402

from brnpa.metrics.scores import SCORES  # noqa: E402
from brnpa.analysis.report.browser import missing, open_browser  # noqa: E402
from brnpa.analysis.report.build import ASSETS, Gallery, GalleryImage, Table, write_report  # noqa: E402


def smooth_image(rng, side):
    """A smooth random RGB image (S, S, 3) uint8: bilinear upsampling of a 4 x 4 random grid."""
    from PIL import Image
    grid = (rng.random((4, 4, 3)) * 255).astype(np.uint8)
    return np.array(Image.fromarray(grid).resize((side, side), Image.BILINEAR))


def synthetic_gallery(image_nb, source_nb, map_side=14, seed=0):
    rng = np.random.default_rng(seed)
    sources = [f"model{k}" for k in range(source_nb)]
    step_nb = map_side * map_side
    x = np.linspace(1 / step_nb, 1, step_nb)
    images = []
    for index in range(image_nb):
        label = int(rng.integers(200))
        preds = {source: label if rng.random() < 0.8 else int(rng.integers(200)) for source in sources}
        maps = {source: rng.random((map_side, map_side)) for source in sources}
        curves = {"Del": {source: np.sort(rng.random(step_nb))[::-1] for source in sources},
                  "Add": {source: np.sort(rng.random(step_nb)) for source in sources}}
        values = {name: {source: float(rng.random()) for source in sources} for name in SCORES}
        images.append(GalleryImage(index, label, smooth_image(rng, 128), maps, preds, curves, values))
    return Gallery(sources, {source: source for source in sources}, [f"class {k}" for k in range(200)],
                   [(name, score.arrow, score.task) for name, score in SCORES.items()],
                   [("Del", "DAUC", "deleted", {source: x for source in sources}),
                    ("Add", "IAUC", "inserted", {source: x for source in sources})], images)


def folder_size(folder):
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(folder) for name in names)


def first_screen_seconds(report_path, screenshot=None):
    """(seconds from asking headless Chromium for the page to the first gallery row drawn, its maps and curves
    loaded; seconds to load a one-line page the same way, for comparison; the page's console errors)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    with tempfile.TemporaryDirectory() as profile:
        driver = open_browser(profile)
        try:
            blank = os.path.join(profile, "blank.html")
            with open(blank, "w") as file:
                file.write("<!DOCTYPE html><title>blank</title><p id='done'>blank</p>")
            start = time.time()
            driver.get("file://" + blank)
            WebDriverWait(driver, 60, poll_frequency=0.02).until(lambda d: d.find_elements(By.ID, "done"))
            blank_seconds = time.time() - start
            start = time.time()
            driver.get("file://" + os.path.abspath(report_path))
            WebDriverWait(driver, 60, poll_frequency=0.02).until(
                lambda d: d.find_elements(By.CSS_SELECTOR, "#gallery .row[data-test-index] canvas"))
            seconds = time.time() - start
            errors = [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
            if screenshot:
                driver.execute_script("document.getElementById('controls').scrollIntoView();")
                time.sleep(0.5)
                os.makedirs(os.path.dirname(os.path.abspath(screenshot)), exist_ok=True)
                driver.save_screenshot(screenshot)
            return seconds, blank_seconds, errors
        finally:
            driver.quit()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--sources", type=int, default=8)
    parser.add_argument("--report", default=None, help="an existing report.html to open instead")
    parser.add_argument("--screenshot", default=None, help="save a PNG of the report's first screen")
    opts = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        report_path = opts.report
        if report_path is None:
            gallery = synthetic_gallery(opts.images, opts.sources)
            table = Table([("model_id", "")], [(source, []) for source in gallery.sources], [])
            start = time.time()
            report_path = write_report(folder, "synthetic", table, [], gallery)
            rows.append((f"build, {opts.images} images x {opts.sources} sources", f"{time.time() - start:.1f} s"))
        size = folder_size(os.path.join(os.path.dirname(report_path), ASSETS)) + os.path.getsize(report_path)
        rows.append(("size (report.html and report_assets/)", f"{size / 2 ** 20:.1f} MiB"))
        reason = missing()
        if reason:
            rows.append(("first screen in Chromium", f"skipped: {reason}"))
        else:
            seconds, blank_seconds, errors = first_screen_seconds(report_path, opts.screenshot)
            rows.append(("first screen in Chromium (first row drawn)", f"{seconds:.2f} s"))
            rows.append(("a one-line page, the same way", f"{blank_seconds:.2f} s"))
            rows.append(("console errors", str(len(errors))))
    for name, value in rows:
        print(f"{name:48s} {value}")


if __name__ == "__main__":
    main()

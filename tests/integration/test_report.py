"""The HTML report (processResults.py --report) of a tiny demo run: its files against the CSV and .npy files,
then the page in headless Chromium from file:// (skipped, with the reason, where the browser is missing)."""
import base64
import csv
import json
import os

import numpy as np
import pytest

import run_models
from helpers import post_hoc_maps_of_set, skip_unless_ci
from brnpa.analysis.report.browser import missing, open_browser

MODELS = ["br_npa_low_res", "cnn"]
SOURCES = ["br_npa_low_res", "cnn", "cnn-gradcam"]


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory):
    """The demo's pipeline on a tiny set of 45 test images, so that the gallery has three chunks (two models and
    Grad-CAM of the CNN): (results folder, report.html)."""
    from brnpa.data.synthetic import make_synthetic
    from helpers import TINY_CONFIG
    root = tmp_path_factory.mktemp("report")
    tiny_synth = str(root / "data")
    # 64 px, 4 x 4 maps: ROAD's nine steps need 10 cells at least
    make_synthetic(tiny_synth, "tiny", class_nb=3, train_per_class=12, test_per_class=15, img_size=64, seed=3)
    config = root / "tiny.config"
    config.write_text(TINY_CONFIG.replace("img_size = 32", "img_size = 64"))
    os.environ["CONFIG"] = str(config)
    try:
        run_models.main(["--models", *MODELS, "--seeds", "1", "--exp_id", "demo", "--data_dir", tiny_synth,
                         "--results_dir", str(root / "results"), "--vis_dir", str(root / "vis"),
                         "--post_hoc_of", "cnn", "--post_hoc", "gradcam",
                         "--tasks", "Del", "Add", "ROADMoRF", "ROADLeRF", "Single", "Sanity",
                         "--sanity_stages", "classifier"])
    finally:
        del os.environ["CONFIG"]
    return root / "results" / "demo", root / "vis" / "demo" / "report.html"


def pop_values(folder, key):
    """{source: {test index: value as text}} of attMetrics_<key>_pop.csv, whose columns are img_<test index>."""
    with open(folder / f"attMetrics_{key}_pop.csv") as file:
        header, *rows = list(csv.reader(file))
    return {row[0]: {int(name[len("img_"):]): value for name, value in zip(header[1:], row[1:]) if value != ""}
            for row in rows}


def misclassified(folder, source):
    """Test indices whose prediction differs from the label, from the saved predictions of the curve set."""
    inds = np.load(folder / f"attMetrDel_{source}_imgInds.npy")
    preds = np.load(folder / f"attMetrDel_{source}_preds.npy")
    targets = np.load(folder / f"attMetrDel_{source}_targets.npy")
    return sorted(int(i) for i, p, t in zip(inds, preds, targets) if p != t)


def test_report_files_match_the_results(demo_report):
    folder, report = demo_report
    assert report.exists() and (report.parent / "report_assets" / "page.js").exists()
    with open(report.parent / "report_assets" / "index.js") as file:
        text = file.read()
    index = json.loads(text[len("reportIndex("):text.rindex(")")])
    assert index["sources"] == SOURCES
    inds = np.load(folder / "attMetrDel_cnn_imgInds.npy").tolist()
    assert [image["i"] for image in index["images"]] == inds == sorted(inds)
    dauc = pop_values(folder, "Del")
    assert sorted(dauc["cnn"]) == inds
    for image in index["images"]:
        assert image["values"]["DAUC"]["cnn"] == float(dauc["cnn"][image["i"]])
        assert (image["preds"]["cnn"] != image["label"]) == (image["i"] in misclassified(folder, "cnn"))
    # the sanity columns and their plot
    assert (folder / "attMetrics_MPRTrho.csv").exists() and (folder / "attMetrics_ClassRho.csv").exists()
    assert (report.parent / "sanity.png").exists() and "MPRT ρ" in report.read_text()
    # every thumbnail is there, and nothing is left of the temporary folder
    assert len(os.listdir(report.parent / "report_assets" / "img")) == len(inds)
    assert not [name for name in os.listdir(report.parent) if name.startswith(".report")]


def script_argument(path, function):
    """The JSON arguments of the one call function(...) a report asset file holds."""
    text = path.read_text()
    assert text.startswith(function + "(") and text.rstrip().endswith(");")
    return json.loads("[" + text[len(function) + 1:text.rstrip().rindex(")")] + "]")


def decoded(text):
    """A report's base64 uint8 values, as integers."""
    return np.frombuffer(base64.b64decode(text), dtype=np.uint8).astype(int)


def test_report_chunks_hold_the_saved_values(demo_report):
    """Every image's curves and post-hoc map in the chunk file its index entry names, against the .npy files."""
    folder, report = demo_report
    assets = report.parent / "report_assets"
    index = script_argument(assets / "index.js", "reportIndex")[0]
    assert len(index["images"]) == 45
    chunks = {}
    for path in assets.glob("chunk_*.js"):
        number, payload = script_argument(path, "reportChunk")
        assert path.name == f"chunk_{number}.js"
        chunks[number] = payload
    assert sorted(chunks) == [0, 1, 2]
    saved = {(key, source): np.load(folder / f"attMetr{key}_{source}.npy") for key in ("Del", "Add")
             for source in SOURCES}
    inds = {source: np.load(folder / f"attMetrDel_{source}_imgInds.npy").tolist() for source in SOURCES}
    post_hoc_maps = post_hoc_maps_of_set(folder, "cnn-gradcam")
    for image in index["images"]:
        payload = chunks[image["chunk"]][str(image["i"])]
        for (key, source), curves in saved.items():
            scores = curves[inds[source].index(image["i"]), :, 1]
            assert np.array_equal(decoded(payload["curves"][key][source]), np.round(scores * 255).astype(int))
        gradcam = payload["maps"]["cnn-gradcam"]
        expected = post_hoc_maps[inds["cnn-gradcam"].index(image["i"])]
        assert (gradcam["h"], gradcam["w"]) == expected.shape
        assert np.array_equal(decoded(gradcam["data"]), np.round(expected.flatten() * 255).astype(int))
        for source in SOURCES:  # the map after the one stage of the sanity checks here, as saved
            sanity_inds = np.load(folder / f"attMetrSanity_{source}_imgInds.npy").tolist()
            saved_maps = np.load(folder / f"attMetrSanity_{source}_randomisedMaps.npy")[sanity_inds.index(image["i"])]
            randomised = payload["randomised"][source]
            assert saved_maps.shape[0] == 1 and (randomised["h"], randomised["w"]) == saved_maps.shape[1:]
            assert np.array_equal(decoded(randomised["data"]), saved_maps.flatten())
    assert index["sanityStages"] == {source: ["classifier"] for source in SOURCES}
    assert sum(len(payload) for payload in chunks.values()) == 45


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    reason = missing()
    if reason:
        skip_unless_ci(f"no browser for the report test: {reason}")
    driver = open_browser(str(tmp_path_factory.mktemp("chromium")))
    yield driver
    driver.quit()


def test_report_in_chromium(demo_report, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait
    folder, report = demo_report
    browser.get("file://" + str(report))
    rows_drawn = "#gallery .row[data-test-index] canvas"
    WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, rows_drawn))

    # one table row per source; a click on DAUC sorts by it, a second click reverses
    def table_column(column):
        return [row.find_elements(By.TAG_NAME, "td")[column].get_attribute("data-value")
                for row in browser.find_elements(By.CSS_SELECTOR, "#summary tbody tr")]
    assert sorted(table_column(0)) == SOURCES
    browser.set_window_size(1280, 1000)  # the summary table fits a common laptop page, without scrolling sideways
    assert browser.execute_script("return document.getElementById('summary').getBoundingClientRect().right") <= \
        browser.execute_script("return document.documentElement.clientWidth")
    browser.set_window_size(1400, 1000)
    headers = [header.text for header in browser.find_elements(By.CSS_SELECTOR, "#summary th")]
    dauc_column = next(k for k, text in enumerate(headers) if text.startswith("DAUC"))
    browser.find_elements(By.CSS_SELECTOR, "#summary th")[dauc_column].click()
    values = [float(value) for value in table_column(dauc_column)]
    assert values == sorted(values)
    browser.find_elements(By.CSS_SELECTOR, "#summary th")[dauc_column].click()
    assert [float(value) for value in table_column(dauc_column)] == sorted(values, reverse=True)

    # the Comparisons section shows the pairs of the score chosen in its list, one table at a time
    choice = Select(browser.find_element(By.CSS_SELECTOR, "select.table-choice"))
    visible = [table for table in browser.find_elements(By.CSS_SELECTOR, "table[data-choice]") if table.is_displayed()]
    assert [table.get_attribute("data-choice") for table in visible] == [choice.first_selected_option.text]
    choice.select_by_visible_text("IAUC")
    visible = [table for table in browser.find_elements(By.CSS_SELECTOR, "table[data-choice]") if table.is_displayed()]
    assert [table.get_attribute("data-choice") for table in visible] == ["IAUC"]
    pair_rows = visible[0].find_elements(By.CSS_SELECTOR, "tbody tr")
    assert len(pair_rows) == len(SOURCES) * (len(SOURCES) - 1) // 2  # the sources that have IAUC: all of them

    # every evaluated image is shown, in test order
    inds = np.load(folder / "attMetrDel_cnn_imgInds.npy").tolist()

    def rows():
        return browser.find_elements(By.CSS_SELECTOR, "#gallery .row[data-test-index]")

    def shown():
        """The test indices of the rows, once scrolling has rendered as many as the count line says."""
        expected = int(browser.find_element(By.ID, "count").text.split()[0])

        def scrolled_to_the_end(driver):
            driver.execute_script("window.scrollTo(0, document.body.scrollHeight)")
            return len(rows()) >= expected
        WebDriverWait(browser, 30, poll_frequency=0.1).until(scrolled_to_the_end)
        return [int(row.get_attribute("data-test-index")) for row in rows()]
    assert shown() == inds
    # the rows of the last chunk get their maps too
    WebDriverWait(browser, 30).until(lambda d: all(row.find_elements(By.TAG_NAME, "canvas") for row in rows()))
    # under each source's map, its map after each stage of the sanity checks (one here)
    strip = rows()[0].find_elements(By.CSS_SELECTOR, '[data-source="cnn"] .randomised canvas')
    assert [canvas.get_attribute("title") for canvas in strip] == ["+classifier"]

    # a displayed per-image AUC is the _pop.csv value
    dauc = pop_values(folder, "Del")
    first = browser.find_element(By.CSS_SELECTOR,
                                 '#gallery .row[data-test-index] [data-source="cnn"] .value[data-score="DAUC"]')
    assert float(first.get_attribute("data-value")) == float(dauc["cnn"][inds[0]])
    assert first.text == f"{float(dauc['cnn'][inds[0]]):.4f}"

    # sorted by the DAUC of the CNN: the order of its _pop.csv values
    Select(browser.find_element(By.ID, "sort-score")).select_by_value("DAUC")
    Select(browser.find_element(By.ID, "sort-first")).select_by_value("cnn")
    by_dauc = [inds[k] for k in np.argsort([float(dauc["cnn"][index]) for index in inds], kind="stable")]
    assert shown() == by_dauc

    # misclassified by the CNN: exactly those of its saved predictions; by any source: the union
    Select(browser.find_element(By.ID, "sort-score")).select_by_value("")
    Select(browser.find_element(By.ID, "filter")).select_by_value("cnn")
    assert shown() == misclassified(folder, "cnn")
    # in a window taller than a page of rows the sentinel under the gallery never leaves the view: the rows
    # must still come, page after page, after the filter changes
    browser.set_window_size(1400, 12000)
    Select(browser.find_element(By.ID, "filter")).select_by_value("any")
    any_source = sorted(set().union(*(misclassified(folder, source) for source in SOURCES)))
    assert len(any_source) > 20  # more than one page
    assert shown() == any_source
    browser.set_window_size(1400, 1000)
    Select(browser.find_element(By.ID, "filter")).select_by_value("")

    # jump to an image
    browser.find_element(By.ID, "jump").send_keys(str(inds[-1]))
    browser.find_element(By.ID, "jump-button").click()
    assert f'data-test-index="{inds[-1]}"' in browser.page_source

    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []


def test_the_printed_table_fits_a_terminal_in_groups(demo_report, capsys):
    """Every line processResults prints on the demo's pipeline (every task, two models, a post-hoc source) fits
    160 columns: the table comes in groups, each with the source column, the notes are wrapped; --columns prints
    the chosen columns alone, and an unknown one is a one-line error."""
    import processResults
    folder, report = demo_report
    argv = ["--exp_id", "demo", "--results_dir", str(folder.parent), "--vis_dir", str(report.parent.parent)]
    capsys.readouterr()
    processResults.main(argv)
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 160
    groups = [line for line in out.splitlines() if line.startswith("-- ")]
    assert groups == ["-- model", "-- faithfulness", "-- single step", "-- sanity", "-- localisation"]
    processResults.main(argv + ["--columns", "DAUC", "ROAD LeRF"])
    lines = capsys.readouterr().out.splitlines()
    header = lines[lines.index("-- chosen columns") + 1]
    assert header.split() == ["model_id", "DAUC", "↓", "ROAD", "LeRF", "↑"]
    with pytest.raises(SystemExit) as exit_:
        processResults.main(argv + ["--columns", "DAUCC"])
    assert str(exit_.value.code).startswith("error: --columns: no column 'DAUCC'; the columns are accuracy")

"""The HTML report (processResults.py --report) of a tiny demo run: its files against the CSV and .npy files,
then the page in headless Chromium from file:// (skipped, with the reason, where the browser is missing)."""
import csv
import json
import os

import numpy as np
import pytest

import run_models
from report.browser import missing, open_browser

MODELS = ["br_npa_low_res", "cnn"]
SOURCES = ["br_npa_low_res", "cnn", "cnn-gradcam"]


@pytest.fixture(scope="module")
def demo_report(tiny_synth, tmp_path_factory):
    """The demo's pipeline on the tiny set (two models and Grad-CAM of the CNN): (results folder, report.html)."""
    from helpers import TINY_CONFIG
    root = tmp_path_factory.mktemp("report")
    config = root / "tiny.config"
    config.write_text(TINY_CONFIG)
    os.environ["CONFIG"] = str(config)
    try:
        run_models.main(["--models", *MODELS, "--seeds", "1", "--exp_id", "demo", "--data_dir", tiny_synth,
                         "--results_dir", str(root / "results"), "--vis_dir", str(root / "vis"),
                         "--post_hoc_of", "cnn", "--post_hoc", "gradcam"])
    finally:
        del os.environ["CONFIG"]
    return root / "results" / "demo", root / "vis" / "demo" / "report.html"


def pop_values(folder, key):
    """{source: per-image values} of attMetrics_<key>_pop.csv, as text and as floats."""
    with open(folder / f"attMetrics_{key}_pop.csv") as file:
        return {row[0]: row[1:] for row in list(csv.reader(file))[1:]}


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
    for position, image in enumerate(index["images"]):
        assert image["values"]["DAUC"]["cnn"] == float(dauc["cnn"][position])
        assert (image["preds"]["cnn"] != image["label"]) == (image["i"] in misclassified(folder, "cnn"))
    # every thumbnail is there, and nothing is left of the temporary folder
    assert len(os.listdir(report.parent / "report_assets" / "img")) == len(inds)
    assert not [name for name in os.listdir(report.parent) if name.startswith(".report")]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    reason = missing()
    if reason:
        pytest.skip(f"no browser for the report test: {reason}")
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
    headers = [header.text for header in browser.find_elements(By.CSS_SELECTOR, "#summary th")]
    dauc_column = next(k for k, text in enumerate(headers) if text.startswith("DAUC"))
    browser.find_elements(By.CSS_SELECTOR, "#summary th")[dauc_column].click()
    values = [float(value) for value in table_column(dauc_column)]
    assert values == sorted(values)
    browser.find_elements(By.CSS_SELECTOR, "#summary th")[dauc_column].click()
    assert [float(value) for value in table_column(dauc_column)] == sorted(values, reverse=True)

    # every evaluated image is shown, in test order
    inds = np.load(folder / "attMetrDel_cnn_imgInds.npy").tolist()

    def shown():
        return [int(row.get_attribute("data-test-index"))
                for row in browser.find_elements(By.CSS_SELECTOR, "#gallery .row[data-test-index]")]
    assert shown() == inds

    # a displayed per-image AUC is the _pop.csv value
    dauc = pop_values(folder, "Del")
    first = browser.find_element(By.CSS_SELECTOR,
                                 '#gallery .row[data-test-index] [data-source="cnn"] .value[data-score="DAUC"]')
    assert float(first.get_attribute("data-value")) == float(dauc["cnn"][0])
    assert first.text == f"{float(dauc['cnn'][0]):.4f}"

    # sorted by the DAUC of the CNN: the order of its _pop.csv values
    Select(browser.find_element(By.ID, "sort-score")).select_by_value("DAUC")
    Select(browser.find_element(By.ID, "sort-first")).select_by_value("cnn")
    by_dauc = [inds[k] for k in np.argsort([float(value) for value in dauc["cnn"]], kind="stable")]
    assert shown() == by_dauc

    # misclassified by the CNN: exactly those of its saved predictions; by any source: the union
    Select(browser.find_element(By.ID, "sort-score")).select_by_value("")
    Select(browser.find_element(By.ID, "filter")).select_by_value("cnn")
    assert shown() == misclassified(folder, "cnn")
    Select(browser.find_element(By.ID, "filter")).select_by_value("any")
    assert shown() == sorted(set().union(*(misclassified(folder, source) for source in SOURCES)))
    Select(browser.find_element(By.ID, "filter")).select_by_value("")

    # jump to an image
    browser.find_element(By.ID, "jump").send_keys(str(inds[-1]))
    browser.find_element(By.ID, "jump-button").click()
    assert f'data-test-index="{inds[-1]}"' in browser.page_source

    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []

"""The report builder's pieces (brnpa/analysis/report/build.py, brnpa/analysis/report/gallery.py) without a browser."""
import base64
import os

import numpy as np
import pytest

from brnpa.analysis.report.build import Gallery, GalleryImage, Table, encode_uint8, write_report
from brnpa.analysis.report.gallery import outline


def test_encode_uint8_rounds_to_bytes():
    assert list(base64.b64decode(encode_uint8([0.0, 0.5, 1.0, 1.2]))) == [0, 128, 255, 255]


def test_outline_of_a_square():
    mask = np.zeros((6, 6), bool)
    mask[1:5, 1:5] = True
    expected = mask.copy()
    expected[2:4, 2:4] = False  # the 2x2 inside is not on the border
    assert (outline(mask) == expected).all()


def tiny_gallery(thumbnail):
    image = GalleryImage(3, 1, thumbnail, {"a": np.full((2, 2), 0.5)}, {"a": 1}, {"Del": {"a": np.array([0.5, 0.1])}},
                         {"DAUC": {"a": 0.25}})
    return Gallery(["a"], {"a": "a"}, ["x", "y"], [("DAUC", "↓", "Del")], [("Del", "DAUC", "deleted",
                                                                          {"a": np.array([0.5, 1.0])})], [image])


def test_a_failed_report_leaves_the_previous_one(tmp_path):
    table = Table([("model_id", "")], [("a", [])], [])
    write_report(str(tmp_path), "first", table, [], tiny_gallery(np.zeros((8, 8, 3), np.uint8)))
    before = (tmp_path / "report.html").read_text()
    with pytest.raises(Exception):
        write_report(str(tmp_path), "second", table, [], tiny_gallery(np.zeros((8, 8, 7), np.uint8)))  # not an image
    assert (tmp_path / "report.html").read_text() == before
    assert sorted(os.listdir(tmp_path)) == ["report.html", "report_assets"]
    assert os.listdir(tmp_path / "report_assets" / "img") == ["3.jpg"]

import os

import numpy as np
import pytest
from PIL import Image

from brnpa.runs.args import parse_args
from brnpa.data.prepare_cub import prepare_cub
from brnpa.data.load_data import DataError, load_rgb, load_samples, scan_folder


def make_tree(root, layout):
    """layout: {class: [file names]}; writes small images (or junk for names ending in .bad.jpg)."""
    for class_name, files in layout.items():
        os.makedirs(os.path.join(root, class_name), exist_ok=True)
        for name in files:
            path = os.path.join(root, class_name, name)
            if name.endswith((".bad.jpg", ".txt")):
                open(path, "w").write("not an image")
            else:
                Image.new("RGB", (8, 8), (10, 20, 30)).save(path)


def test_order_and_extensions(tmp_path):
    make_tree(tmp_path / "set", {"b_class": ["z.PNG", "a.jpeg", "notes.txt"], "a_class": ["y.png", "b.JPG"]})
    classes, samples = scan_folder(str(tmp_path), "set", class_nb=2)
    assert classes == ["a_class", "b_class"]
    assert [(os.path.basename(p), label) for p, label in samples] == \
        [("b.JPG", 0), ("y.png", 0), ("a.jpeg", 1), ("z.PNG", 1)]


def test_missing_folder_prints_layout(tmp_path):
    with pytest.raises(DataError, match=r"not found.*one sub-folder per class.*python3 -m brnpa.data.synthetic"):
        scan_folder(str(tmp_path), "nothing")


def test_empty_class_and_class_count(tmp_path):
    make_tree(tmp_path / "set", {"a": ["x.png"], "b": []})
    with pytest.raises(DataError, match=r"b holds no image"):
        scan_folder(str(tmp_path), "set")
    make_tree(tmp_path / "set2", {"a": ["x.png"], "b": ["y.png"]})
    with pytest.raises(DataError, match=r"2 class folders but --class_nb is 3"):
        scan_folder(str(tmp_path), "set2", class_nb=3)


def test_unreadable_image_is_named(tmp_path):
    make_tree(tmp_path / "set", {"a": ["ok.png", "broken.bad.jpg"]})
    with pytest.raises(DataError, match=r"unreadable image .*broken.bad.jpg"):
        scan_folder(str(tmp_path), "set")


def test_modes_converted_to_rgb(tmp_path):
    for mode in ("L", "RGBA", "CMYK", "P"):
        path = tmp_path / f"{mode}.png" if mode != "CMYK" else tmp_path / "cmyk.jpg"
        Image.new(mode, (5, 4)).save(path)
        image = load_rgb(str(path))
        assert image.mode == "RGB" and image.size == (5, 4)


def test_data_error_writes_nothing(tmp_path):
    results = tmp_path / "results"
    with pytest.raises(SystemExit, match="dataset folder not found"):
        import trainVal
        trainVal.main(["--data_dir", str(tmp_path), "--results_dir", str(results), "--dataset_train", "missing"])
    assert not results.exists()


def test_validation_split_is_seeded_and_stratified(tiny_synth):
    args = parse_args(["--data_dir", tiny_synth, "--dataset_train", "tiny_train", "--dataset_val", "tiny_train",
                       "--dataset_test", "tiny_test", "--class_nb", "3", "--train_prop", "0.75"])
    first, second = load_samples(args), load_samples(args)
    assert first == second
    assert len(first["train"]) == 27 and len(first["val"]) == 9 and len(first["test"]) == 15
    assert not set(first["train"]) & set(first["val"])
    assert sorted(label for _, label in first["val"]) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    # test order: sorted classes, then sorted files
    assert first["test"] == sorted(first["test"], key=lambda s: (s[1], os.path.basename(s[0])))


def test_released_split_is_the_released_random_split(tiny_synth):
    """--released_split True: the images of the released code's random_split with torch seeded 1, whatever
    --seed; the train folder is cut to train_prop even when another folder validates."""
    import torch
    argv = ["--data_dir", tiny_synth, "--dataset_train", "tiny_train", "--dataset_val", "tiny_train",
            "--dataset_test", "tiny_test", "--class_nb", "3", "--train_prop", "0.75", "--released_split", "True"]
    samples = load_samples(parse_args(argv + ["--seed", "7"]))
    folder = scan_folder(tiny_synth, "tiny_train")[1]
    state = torch.get_rng_state()
    torch.manual_seed(1)  # as the released load_data did
    train_part, val_part = torch.utils.data.random_split(folder, [int(len(folder) * 0.75),
                                                                  len(folder) - int(len(folder) * 0.75)])
    torch.set_rng_state(state)
    assert sorted(samples["train"]) == sorted(train_part) and sorted(samples["val"]) == sorted(val_part)
    assert load_samples(parse_args(argv + ["--seed", "2"])) == samples
    other_val = load_samples(parse_args(argv[:4] + ["--dataset_val", "tiny_test"] + argv[6:]))
    assert other_val["train"] == samples["train"] and other_val["val"] == other_val["test"]


def test_prepare_cub_on_fake_tree(tmp_path):
    cub = tmp_path / "CUB_200_2011"
    rel_paths = ["001.Black_footed_Albatross/a_1.jpg", "001.Black_footed_Albatross/a_2.jpg",
                 "002.Laysan_Albatross/b_1.jpg", "002.Laysan_Albatross/b_2.jpg", "002.Laysan_Albatross/b_3.jpg"]
    for rel in rel_paths:
        os.makedirs(cub / "images" / os.path.dirname(rel), exist_ok=True)
        Image.new("RGB", (4, 4)).save(cub / "images" / rel)
    (cub / "images.txt").write_text("".join(f"{i + 1} {p}\n" for i, p in enumerate(rel_paths)))
    (cub / "image_class_labels.txt").write_text("1 1\n2 1\n3 2\n4 2\n5 2\n")
    (cub / "train_test_split.txt").write_text("1 1\n2 0\n3 1\n4 1\n5 0\n")
    counts = prepare_cub(str(cub), str(tmp_path / "data"))
    assert counts == {"train": 3, "test": 2}
    train = sorted(os.path.relpath(os.path.join(d, f), tmp_path / "data" / "CUB-200-2011_train")
                   for d, _, fs in os.walk(tmp_path / "data" / "CUB-200-2011_train") for f in fs)
    assert train == ["001.Black_footed_Albatross/a_1.jpg", "002.Laysan_Albatross/b_1.jpg",
                     "002.Laysan_Albatross/b_2.jpg"]
    _, test = scan_folder(str(tmp_path / "data"), "CUB-200-2011_test", class_nb=2)
    assert [os.path.basename(p) for p, _ in test] == ["a_2.jpg", "b_3.jpg"]
    with pytest.raises(DataError, match="exists; pass --overwrite"):
        prepare_cub(str(cub), str(tmp_path / "data"))
    with pytest.raises(DataError, match="images.txt"):
        prepare_cub(str(tmp_path), str(tmp_path / "data2"))


def test_synthetic_masks_match_parts(tiny_synth):
    image = np.array(Image.open(os.path.join(tiny_synth, "tiny_test", "class_01", "img_0000.png")))
    mask = np.array(Image.open(os.path.join(tiny_synth, "tiny_test_masks", "class_01", "img_0000.png"))) > 0
    area = mask.mean()
    assert 0.05 <= area <= 0.1
    rows, cols = np.nonzero(mask)
    part = image[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    # class 1 = vertical stripes: columns are constant
    assert (part == part[:1]).all()


def test_split_error_is_a_data_error(tmp_path):
    make_tree(tmp_path / "set", {"a": ["x.png", "y.png", "z.png"], "b": ["w.png"]})
    args = parse_args(["--data_dir", str(tmp_path), "--dataset_train", "set", "--dataset_val", "set",
                       "--dataset_test", "set", "--class_nb", "2"])
    with pytest.raises(DataError, match="cannot split the train folder"):
        load_samples(args)


@pytest.mark.parametrize("module", ["brnpa.data.synthetic", "brnpa.data.prepare_cub"])
def test_the_data_commands_take_overwrite_with_a_value_like_every_other_command(module, capsys):
    """--overwrite True / False as trainVal.py takes it (a bare --overwrite, as before, still means True); a bad
    value is one line."""
    import importlib
    parser = importlib.import_module(module).build_parser()
    required = ["--cub_dir", "x"] if module == "brnpa.data.prepare_cub" else []
    assert parser.parse_args(required + ["--overwrite", "True"]).overwrite is True
    assert parser.parse_args(required + ["--overwrite", "False"]).overwrite is False
    assert parser.parse_args(required + ["--overwrite"]).overwrite is True
    assert parser.parse_args(required).overwrite is False
    with pytest.raises(SystemExit):
        parser.parse_args(required + ["--overwrite", "yes"])
    err = capsys.readouterr().err
    assert err.startswith("error: argument --overwrite: expected True or False") and err.count("\n") == 1

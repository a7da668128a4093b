"""The confusion-matrix picture and the 'never predicted' flag: a class the model never
outputs must stand out (red label, marked in the printed table)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from unetkit.report.figures import plot_confusion
from unetkit.report.run_report import never_predicted, print_metrics

# truth rows, predicted columns: class "pole" (2) is present but never predicted
CONF = [[50, 5, 0], [4, 40, 0], [3, 2, 0]]
NAMES = ["road", "car", "pole"]


def _metrics(conf: list[list[int]]) -> dict:
    return {"confusion": conf, "per_class": {n: {"iou": 0.5, "dice": 0.6} for n in NAMES}}


def _red_pixels(path) -> int:
    a = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return int(((a[..., 0] > 200) & (a[..., 1] < 60) & (a[..., 2] < 60)).sum())


def test_never_predicted_lists_only_present_classes_without_predictions() -> None:
    assert never_predicted(_metrics(CONF)) == ["pole"]
    absent = [[50, 5, 0], [4, 40, 0], [0, 0, 0]]  # pole neither true nor predicted
    assert never_predicted(_metrics(absent)) == []
    assert never_predicted({"per_class": {}}) == []


def test_printed_table_marks_the_missing_class(capsys) -> None:
    print_metrics(_metrics(CONF), "val")
    lines = capsys.readouterr().err.splitlines()
    pole = next(line for line in lines if line.strip().startswith("pole"))
    assert pole.endswith("never predicted")
    assert not any(line.endswith("never predicted") for line in lines if "car" in line)


def test_picture_marks_never_predicted_classes_in_red(tmp_path) -> None:
    plot_confusion(CONF, NAMES, tmp_path / "flagged.png")
    ok = [[50, 5, 1], [4, 40, 0], [3, 2, 1]]  # pole predicted on one pixel
    plot_confusion(ok, NAMES, tmp_path / "ok.png")
    assert Image.open(tmp_path / "flagged.png").size[0] > 300
    assert _red_pixels(tmp_path / "flagged.png") > 50
    assert _red_pixels(tmp_path / "ok.png") == 0

"""`unetkit demo`: synthetic data on disk -> fit -> evaluate -> predict, through the real paths."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from unetkit.config import FitConfig
from unetkit.data.synthetic import write_folder

DEMO_IMAGES = 160
DEMO_SIZE = (96, 96)


def run_demo(out: Path, epochs: int = 25) -> dict:
    out = Path(out)
    data = write_folder(out.parent / f"{out.name}-data", count=DEMO_IMAGES, size=DEMO_SIZE,
                        channels=3, seed=0)
    print(f"Synthetic data set: {DEMO_IMAGES} images of shapes (ellipse, polygon, curve) "
          f"in {data}", file=sys.stderr)
    from unetkit.pipeline import run_fit

    config = FitConfig(data=str(data), out=str(out), epochs=epochs, size=list(DEMO_SIZE),
                       model="unet", model_options={"filters": 16, "depth": 3, "norm": "batch",
                                                    "dropout": 0.0},
                       batch_size=16, lr=3e-3, max_time="4m")
    result = run_fit(config)
    from unetkit.infer.batch import predict_files
    from unetkit.infer.predict import Predictor
    from unetkit.models.artifact import load_model

    model = load_model(out)
    val = json.loads((out / "splits.json").read_text())["val"][:4]
    paths = [data / "images" / f"{Path(n).name}.png" for n in val]
    predict_files(Predictor(model), paths, out / "predictions", write_overlay=True, quiet=True)
    m = result.metrics
    print(f"\nDemo done. Validation mean IoU {m.get('mean_iou', float('nan')):.3f}, mean Dice "
          f"{m.get('mean_dice', float('nan')):.3f} on {m.get('images')} images.", file=sys.stderr)
    print(f"Look at: {out}/report/predictions.png, {out}/report/curves.png, "
          f"{out}/predictions/*_overlay.png; TensorBoard: tensorboard --logdir {out}/tensorboard",
          file=sys.stderr)
    return m

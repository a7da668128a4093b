"""The `unetkit` command line: each command is a thin shell over the importable stages."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from unetkit.errors import UnetkitError, UsageError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train, evaluate, run and export U-Net segmentation models.",
                  context_settings={"help_option_names": ["-h", "--help"]})


def _fail(exc: UnetkitError) -> None:
    print(f"error: {exc}", file=sys.stderr)
    raise typer.Exit(exc.exit_code)


def guarded(fn):
    """Turn user-caused errors into one sentence and an exit code, never a traceback."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UnetkitError as exc:
            _fail(exc)
        except KeyboardInterrupt:
            print("interrupted; files already written are complete.", file=sys.stderr)
            raise typer.Exit(130) from None

    return wrapper


@app.command()
@guarded
def demo(out: Annotated[Path, typer.Option(help="Run directory to create.")] = Path("runs/demo"),
         epochs: Annotated[int, typer.Option(help="Training epochs.")] = 25) -> None:
    """Make a synthetic data set, train on it, evaluate and predict, end to end.

    Example: unetkit demo --out runs/demo
    """
    from unetkit.demo import run_demo

    run_demo(out, epochs)


@app.command()
@guarded
def fit(
    data: Annotated[str, typer.Option(help="Folder of images and masks.")] = "",
    format: Annotated[str, typer.Option(help="Layout: auto or a name from `unetkit formats`.")
                      ] = "auto",
    model: Annotated[str, typer.Option(help="Model name from `unetkit models`.")] = "unet",
    classes: Annotated[int | None, typer.Option(help="Output channels; default from data.")
                       ] = None,
    in_channels: Annotated[int | None, typer.Option(help="Input channels; default from data.")
                           ] = None,
    size: Annotated[str | None, typer.Option(help="Training patch size: N or HxW.")] = None,
    scale: Annotated[str, typer.Option(help="Image scale before patching: auto, a factor "
                                       "such as 0.5, or stretch (resize every image to "
                                       "--size).")] = "auto",
    epochs: Annotated[int, typer.Option(help="Maximum epochs.")] = 50,
    max_time: Annotated[str | None, typer.Option(help="Wall-clock budget, e.g. 10m; stops "
                                                 "cleanly and keeps the best model.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch size; default from size and "
                                                   "device.")] = None,
    loss: Annotated[str, typer.Option(help="auto, bce, ce, dice, bce-dice, ce-dice, jaccard, "
                                      "focal, tversky, weighted-ce.")] = "auto",
    optimizer: Annotated[str, typer.Option(help="adam, adamw, sgd, rmsprop.")] = "adamw",
    lr: Annotated[float, typer.Option(help="Peak learning rate.")] = 1e-3,
    scheduler: Annotated[str, typer.Option(help="onecycle, cosine, poly, none.")] = "onecycle",
    val_split: Annotated[float, typer.Option(help="Fraction held out for validation.")] = 0.2,
    test_split: Annotated[float, typer.Option(help="Fraction held out for testing.")] = 0.0,
    augment: Annotated[str, typer.Option(help="none, default or strong.")] = "default",
    precision: Annotated[str, typer.Option(help="auto, 32, bf16-mixed or 16-mixed (CUDA).")
                         ] = "auto",
    devices: Annotated[int, typer.Option(help="Devices (processes) to train on.")] = 1,
    seed: Annotated[int, typer.Option(help="Random seed; runs repeat on CPU.")] = 0,
    patience: Annotated[int | None, typer.Option(help="Early-stopping patience in epochs.")
                        ] = None,
    skip_bad: Annotated[bool, typer.Option(help="Leave unreadable or mismatched pairs out "
                                           "instead of stopping.")] = False,
    config: Annotated[Path | None, typer.Option(help="YAML config (e.g. a run's config.yaml)."
                                                )] = None,
    resume: Annotated[Path | None, typer.Option(help="Run directory to continue.")] = None,
    out: Annotated[Path, typer.Option(help="Run directory to write.")] = Path("runs/latest"),
) -> None:
    """Train a model on a folder of images and masks.

    Example: unetkit fit --data data/membrane --size 256 --max-time 10m --out runs/membrane
    """
    from unetkit.config import FitConfig, parse_size
    from unetkit.train.fit import fit as run_fit

    if resume is not None:
        if not (resume / "config.yaml").is_file():
            raise UsageError(f"--resume {resume} is not a run directory (no config.yaml in it).")
        cfg = FitConfig.load(resume / "config.yaml")
        cfg.out = str(resume)
        run_fit(cfg, resume=True)
        return
    base = FitConfig.load(config) if config else FitConfig()
    given = {k: v for k, v in {
        "data": data, "format": format, "model": model, "classes": classes,
        "in_channels": in_channels, "size": parse_size(size), "scale": scale, "epochs": epochs,
        "max_time": max_time, "batch_size": batch_size, "loss": loss, "optimizer": optimizer,
        "lr": lr, "scheduler": scheduler, "val_split": val_split, "test_split": test_split,
        "augment": augment, "precision": precision, "devices": devices, "seed": seed,
        "patience": patience, "skip_bad": skip_bad, "out": str(out)}.items()}
    ctx = typer.get_current_context()
    for key, value in given.items():
        src = ctx.get_parameter_source(key)
        if config is None or (src is not None and src.name != "DEFAULT"):
            setattr(base, key, value)
    if not base.data:
        raise UsageError("--data is required: the folder holding the images and masks.")
    run_fit(base)


@app.command()
@guarded
def evaluate(
    model: Annotated[Path, typer.Argument(help="Run directory or model artifact directory.")],
    data: Annotated[str, typer.Option(help="Folder of images and masks.")],
    split: Annotated[str, typer.Option(help="auto (test, else val, of the run's data), train, "
                                       "val, test or all.")] = "auto",
    format: Annotated[str, typer.Option(help="Data layout (auto-detected).")] = "auto",
    tta: Annotated[bool, typer.Option(help="Average over flips.")] = False,
    tile: Annotated[int | None, typer.Option(help="Tile size for large images.")] = None,
    hd95: Annotated[bool, typer.Option(help="Add the 95th-percentile Hausdorff distance.")
                    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print only the metrics JSON.")
                       ] = False,
    out: Annotated[Path | None, typer.Option(help="Where per_image.csv and metrics.json go "
                                             "(default MODEL/eval).")] = None,
) -> None:
    """Score a model against masks at each image's original size.

    Example: unetkit evaluate runs/membrane --data data/membrane --json
    """
    from unetkit.infer.evaluate import evaluate as run_eval
    from unetkit.infer.evaluate import write_per_image
    from unetkit.io_utils import atomic_write_text
    from unetkit.models.artifact import load_model
    from unetkit.train.report import print_metrics

    net = load_model(model)
    run_dir = model if (model / "model").is_dir() else None
    result = run_eval(net, data, split, format, run_dir, tta=tta, tile=tile, quiet=as_json,
                      hd95=hd95)
    target = out or ((run_dir or model) / "eval")
    write_per_image(result.per_image, target / "per_image.csv")
    text = json.dumps(result.metrics, indent=1)
    atomic_write_text(target / "metrics.json", text)
    if as_json:
        print(text)
    else:
        print_metrics(result.metrics, f"{result.split} split, {result.metrics['images']} images")
        print(f"per-image scores: {target / 'per_image.csv'}", file=sys.stderr)


@app.command()
@guarded
def predict(
    model: Annotated[Path, typer.Argument(help="Run directory or model artifact directory.")],
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders or glob patterns.")],
    out: Annotated[Path, typer.Option(help="Output folder.")],
    tile: Annotated[int | None, typer.Option(help="Tile size for sliding-window inference.")
                    ] = None,
    overlap: Annotated[float, typer.Option(help="Tile overlap fraction.")] = 0.25,
    tta: Annotated[bool, typer.Option(help="Average over flips (and 90° rotations).")] = False,
    overlay: Annotated[bool, typer.Option(help="Also write mask-over-image PNGs.")] = False,
    probabilities: Annotated[str | None, typer.Option(help="Also write probabilities: npy "
                                                      "(float16) or tiff (16-bit).")] = None,
    palette: Annotated[bool, typer.Option(help="Write colour masks instead of class indices.")
                       ] = False,
    threshold: Annotated[float, typer.Option(help="Foreground probability threshold.")] = 0.5,
) -> None:
    """Predict masks at each input's original size.

    Example: unetkit predict runs/membrane data/new/*.png --out masks --overlay
    """
    from unetkit.infer.batch import expand_inputs, predict_files
    from unetkit.infer.predict import Predictor
    from unetkit.models.artifact import load_model

    if probabilities not in (None, "npy", "tiff"):
        raise UsageError(f"--probabilities {probabilities!r} is unknown; use npy or tiff.")
    if not 0 < overlap < 1:
        raise UsageError(f"--overlap {overlap} must be between 0 and 1.")
    net = load_model(model)
    paths = expand_inputs(inputs)
    predictor = Predictor(net, tile=tile, overlap=overlap, tta=tta)
    result = predict_files(predictor, paths, out, threshold, overlay, probabilities, palette)
    print(f"Wrote {len(result.written)} mask(s) to {out}"
          + (f"; skipped {len(result.skipped)} bad file(s)" if result.skipped else "") + ".",
          file=sys.stderr)
    if result.skipped:
        raise typer.Exit(1)


@app.command()
def models() -> None:
    """List the models with parameter counts and a one-line description.

    Example: unetkit models
    """
    from unetkit.models.registry import REGISTRY, build_model, count_parameters, model_names

    print(f"{'name':<20} {'parameters':>12}  {'reference input':<22} description")
    for name in model_names():
        entry = REGISTRY[name]
        ref = dict(entry.reference)
        try:
            n = f"{count_parameters(build_model(name, **ref)):,}"
        except UnetkitError as exc:
            n = f"n/a ({exc})"
        ref_text = ", ".join(f"{k}={v}" for k, v in ref.items())
        print(f"{name:<20} {n:>12}  {ref_text:<22} {entry.description}")


@app.command()
def formats() -> None:
    """List the data set layouts that --format accepts.

    Example: unetkit formats
    """
    from unetkit.data.formats import FORMATS

    for name, module in FORMATS.items():
        print(f"{name:<12} {module.DESCRIPTION}")


if __name__ == "__main__":
    app()

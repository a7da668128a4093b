"""The `unetkit` command line: each command is a thin shell over the importable stages."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from unetkit.cli_support import guarded
from unetkit.errors import UnetkitError, UsageError
from unetkit.fit_flags import fit_options, with_fit_options

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Train, evaluate, run and export U-Net segmentation models.",
                  context_settings={"help_option_names": ["-h", "--help"]})


# clean-up flags shared by predict and evaluate (evaluate scores the cleaned masks)
KeepLargestOpt = Annotated[bool, typer.Option(help="Keep only the largest connected component "
                                              "of each class.")]
MinSizeOpt = Annotated[int, typer.Option(help="Remove foreground components smaller than N "
                                         "pixels.")]
SplitTouchingOpt = Annotated[bool, typer.Option(help="With --instances: split touching objects "
                                                "(distance-transform watershed).")]


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
@with_fit_options
def fit(ctx: typer.Context,
        resume: Annotated[Path | None, typer.Option(
            help="Run directory to continue from its last checkpoint.")] = None,
        auto: Annotated[bool, typer.Option(
            help="Plan from the data, this hardware and --budget, then train to the plan.")
                        ] = False,
        budget: Annotated[str | None, typer.Option(
            help="Wall-clock budget for --auto, planning included, e.g. 10m.")] = None,
        plan: Annotated[Path | None, typer.Option(help="Train to a saved plan.yaml.")] = None,
        **options) -> None:
    """Train a model on a folder of images and masks.

    Example: unetkit fit --data data/membrane --size 256 --max-time 10m --out runs/membrane

    Self-configuring: unetkit fit --data data/membrane --auto --budget 10m
    """
    from unetkit.config import FitConfig
    from unetkit.pipeline import fit_planned, run_fit

    if resume is not None:
        if not (resume / "config.yaml").is_file():
            raise UsageError(f"--resume {resume} is not a run directory (no config.yaml in it).")
        cfg = FitConfig.load(resume / "config.yaml")
        cfg.out = str(resume)
        run_fit(cfg, resume=True)
        return
    config = fit_options(**options, ctx=ctx)
    if auto or plan is not None:
        if plan is not None and not plan.is_file():
            raise UsageError(f"--plan {plan} does not exist.")
        keep = {k for k in options if (src := ctx.get_parameter_source(k)) is not None
                and src.name != "DEFAULT"}
        fit_planned(config, budget, plan, keep)
        return
    if budget is not None:
        raise UsageError("--budget goes with --auto; for a plain time limit use --max-time.")
    run_fit(config)


@app.command("lr-find")
@guarded
@with_fit_options
def lr_find(ctx: typer.Context, **options) -> None:
    """Run the learning-rate range test; writes OUT/report/lr_finder.png, prints the rate.

    Example: unetkit lr-find --data data/membrane --size 256 --out runs/lr
    """
    from unetkit.train.fit import fit as run_fit

    result = run_fit(fit_options(**options, ctx=ctx), lr_find_only=True)
    print(f"suggested lr: {result.metrics['suggested_lr']:.3e} "
          f"(plot: {result.run_dir / 'report' / 'lr_finder.png'})")


@app.command()
@guarded
def evaluate(
    model: Annotated[Path, typer.Argument(help="Run directory, model artifact directory or "
                                      "hf://OWNER/NAME[@REV].")],
    data: Annotated[str, typer.Option(help="Folder of images and masks.")],
    split: Annotated[str, typer.Option(help="auto (test, else val, of the run's data), train, "
                                       "val, test or all.")] = "auto",
    format: Annotated[str, typer.Option(help="Data layout (auto-detected).")] = "auto",
    tta: Annotated[bool, typer.Option(help="Average over flips.")] = False,
    tile: Annotated[int | None, typer.Option(help="Tile size for large images.")] = None,
    hd95: Annotated[bool, typer.Option(help="Add the 95th-percentile Hausdorff distance.")
                    ] = False,
    keep_largest: KeepLargestOpt = False,
    min_size: MinSizeOpt = 0,
    instances: Annotated[bool, typer.Option(help="Add object-level precision/recall/F1 at "
                                            "IoU 0.5.")] = False,
    split_touching: SplitTouchingOpt = True,
    engine: Annotated[str, typer.Option(help="torch or onnx (onnxruntime).")] = "torch",
    precision: Annotated[str, typer.Option(help="auto (float32 on every machine, so metrics "
                                           "do not depend on the CPU), 32, bf16-mixed or "
                                           "16-mixed (CUDA).")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print only the metrics JSON.")
                       ] = False,
    out: Annotated[Path | None, typer.Option(help="Where per_image.csv, metrics.json, "
                                             "reliability.png and confusion.png go (default "
                                             "MODEL/eval).")] = None,
) -> None:
    """Score a model against masks at each image's original size.

    Example: unetkit evaluate runs/membrane --data data/membrane --json
    """
    from unetkit.infer.batch import make_postprocess
    from unetkit.infer.evaluate import evaluate as run_eval
    from unetkit.infer.evaluate import write_per_image
    from unetkit.infer.onnx import load_for_engine
    from unetkit.io_utils import atomic_write_text
    from unetkit.report.run_report import print_metrics, write_pictures

    net = load_for_engine(model, engine)
    meta = net.unetkit_meta
    clean = make_postprocess(len(meta.get("class_names", [0, 1])), keep_largest, min_size)
    run_dir = model if (model / "model").is_dir() else None
    result = run_eval(net, data, split, format, run_dir, tta=tta, tile=tile, quiet=as_json,
                      hd95=hd95, postprocess=clean, instances=instances,
                      split_touching=split_touching, precision=precision)
    from unetkit.models.remote import hub_reference

    # an hf:// model lives in the read-only hub cache: its default output goes here instead
    target = out or ((run_dir or (Path(".") if hub_reference(model) else model)) / "eval")
    write_per_image(result.per_image, target / "per_image.csv")
    text = json.dumps(result.metrics, indent=1)
    atomic_write_text(target / "metrics.json", text)
    write_pictures(result.metrics, target)
    if as_json:
        print(text)
    else:
        print_metrics(result.metrics, f"{result.split} split, {result.metrics['images']} images")
        found = result.metrics.get("instances")
        if found:
            print(f"  objects (IoU > 0.5): precision {found['precision']:.4f}, recall "
                  f"{found['recall']:.4f}, F1 {found['f1']:.4f} (tp {found['tp']}, fp "
                  f"{found['fp']}, fn {found['fn']})", file=sys.stderr)
        print(f"per-image scores: {target / 'per_image.csv'}", file=sys.stderr)


@app.command()
@guarded
def predict(
    model: Annotated[Path, typer.Argument(help="Run directory, model artifact directory or "
                                      "hf://OWNER/NAME[@REV].")],
    inputs: Annotated[list[str], typer.Argument(help="Image files, folders or glob patterns.")],
    out: Annotated[Path, typer.Option(help="Output folder.")],
    tile: Annotated[int | None, typer.Option(help="Tile size for sliding-window inference.")
                    ] = None,
    overlap: Annotated[float, typer.Option(help="Tile overlap fraction.")] = 0.25,
    batch_size: Annotated[int, typer.Option(help="Tiles per forward pass with --tile (more is "
                                            "faster on a GPU, needs more memory).")] = 4,
    tta: Annotated[bool, typer.Option(help="Average over flips (and 90° rotations).")] = False,
    overlay: Annotated[bool, typer.Option(help="Also write mask-over-image PNGs.")] = False,
    probabilities: Annotated[str | None, typer.Option(help="Also write probabilities: npy "
                                                      "(float16) or tiff (16-bit).")] = None,
    palette: Annotated[bool, typer.Option(help="Write colour masks instead of class indices.")
                       ] = False,
    threshold: Annotated[float, typer.Option(help="Foreground probability threshold.")] = 0.5,
    rle: Annotated[Path | None, typer.Option(help="Also stream img,rle_mask rows (foreground, "
                                             "1-based runs) to this .csv or .csv.gz.")] = None,
    rle_order: Annotated[str, typer.Option(help="RLE pixel order: row (Carvana) or column "
                                           "(Data Science Bowl, Airbus).")] = "row",
    keep_largest: KeepLargestOpt = False,
    min_size: MinSizeOpt = 0,
    instances: Annotated[bool, typer.Option(help="Also write 16-bit object labels "
                                            "<stem>_instances.tif.")] = False,
    split_touching: SplitTouchingOpt = True,
    engine: Annotated[str, typer.Option(help="torch, onnx (onnxruntime; reuses "
                                        "MODEL/model/model.onnx when up to date), openvino, or "
                                        "auto: the fastest engine measured here whose masks "
                                        "agree with float32 PyTorch (MODEL/model/engines.json; "
                                        "torch on a GPU).")] = "auto",
    precision: Annotated[str, typer.Option(help="auto (bf16-mixed where the CPU or GPU runs it "
                                           "natively, else 32), 32, bf16-mixed, 16-mixed "
                                           "(CUDA) or int8 (onnx, openvino).")] = "auto",
    uncertainty: Annotated[bool, typer.Option(help="Also write <stem>_uncertainty.tif/.png, "
                                              "<stem>_mutual_info.tif and uncertainty.csv.")
                           ] = False,
    devices: Annotated[int, typer.Option(help="Processes on this machine (one per GPU on "
                                         "CUDA), each predicting its share of the inputs; "
                                         "under torchrun or srun, the launcher's.")] = 1,
    num_nodes: Annotated[int, typer.Option(help="Machines taking part (start the processes "
                                           "with torchrun --nnodes or srun).")] = 1,
    max_pixels: Annotated[int | None, typer.Option(help="Largest image read, in pixels "
                                                   "(default 89,478,485, PIL's guard against "
                                                   "decompression bombs; 16k² is 268M).")
                          ] = None,
) -> None:
    """Predict masks at each input's original size.

    Example: unetkit predict runs/membrane data/new/*.png --out masks --overlay

    On 4 processes: unetkit predict runs/membrane data/new --out masks --devices 4
    """
    from unetkit.infer.predict_job import PredictJob, run_predict
    from unetkit.progress import say

    summary = run_predict(PredictJob(
        model, out, tile=tile, overlap=overlap, batch_size=batch_size, tta=tta, overlay=overlay,
        probabilities=probabilities, palette=palette, threshold=threshold, rle=rle,
        rle_order=rle_order, keep_largest=keep_largest, min_size=min_size, instances=instances,
        split_touching=split_touching, engine=engine, precision=precision,
        uncertainty=uncertainty, devices=devices, num_nodes=num_nodes, max_pixels=max_pixels),
        inputs)
    say(summary.message())
    if summary.skipped:
        raise typer.Exit(1)


@app.command()
@guarded
def export(
    model: Annotated[Path, typer.Argument(help="Run directory, model artifact directory or "
                                      "hf://OWNER/NAME[@REV].")],
    onnx: Annotated[Path | None, typer.Option(help="ONNX file to write (default "
                                              "MODEL/model/model.onnx, which `predict "
                                              "--engine onnx` reuses).")] = None,
    check_image: Annotated[Path | None, typer.Option(help="Also compare PyTorch and ONNX "
                                                     "outputs on this image.")] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset (17 or newer).")] = 17,
    precision: Annotated[str, typer.Option(help="With --check-image: also compare the masks "
                                           "of PyTorch at this precision (auto = 32, "
                                           "bf16-mixed) with the float32 export. int8: write "
                                           "the int8 model (default MODEL/model/model.int8."
                                           "onnx) if it agrees with float32 on the run's "
                                           "validation images.")] = "auto",
    bioimageio: Annotated[Path | None, typer.Option(help="Write a BioImage Model Zoo package "
                                                    "(zip with rdf.yaml) instead.")] = None,
    author: Annotated[list[str] | None, typer.Option(help="With --bioimageio: an author "
                                                     "(repeatable).")] = None,
    license: Annotated[str | None, typer.Option(help="With --bioimageio: SPDX licence id "
                                                "(default MIT).")] = None,
    bioimageio_meta: Annotated[Path | None, typer.Option(help="With --bioimageio: YAML with "
                                                         "authors, license, cite, name, "
                                                         "description, tags.")] = None,
) -> None:
    """Export a model to ONNX (dynamic batch, height and width), verified against PyTorch.

    Example: unetkit export runs/membrane --onnx membrane.onnx --check-image img/00.png

    BioImage Model Zoo: unetkit export runs/membrane --bioimageio membrane.zip --author "A. N."
    """
    from unetkit.data.readers import read_image
    from unetkit.infer.onnx import ONNX_NAME, TOLERANCE, write_onnx
    from unetkit.models.artifact import find_artifact, load_model

    if opset < 17:
        raise UsageError(f"--opset {opset} is too old; use 17 or newer.")
    if bioimageio is not None:
        from unetkit.share.bioimageio import export_command

        export_command(model, bioimageio, author, license, bioimageio_meta, check_image, opset)
        if onnx is None:
            return
    if precision == "int8":  # calibrated on the run's training images, checked, recorded
        from unetkit.infer.engine_auto import export_int8_command

        return export_int8_command(model, onnx, opset)
    from unetkit.models.remote import hub_reference

    net = load_model(model)
    ref = hub_reference(model)  # not into the hub cache: NAME.onnx here
    target = onnx or (Path(ref[0].split("/")[1] + ".onnx") if ref
                      else find_artifact(model) / ONNX_NAME)
    image = read_image(check_image) if check_image is not None else None
    result = write_onnx(net, target, opset=opset, check_image=image,
                        image_name=str(check_image), precision=precision)
    print(f"Wrote {target} (opset {opset}; dynamic batch, height and width; logits out).",
          file=sys.stderr)
    print(f"max abs logit difference vs PyTorch: {result.max_abs_diff:.3g} on a random "
          f"input" + (f", {result.image_max_abs_diff:.3g} on {check_image}"
                      if result.image_max_abs_diff is not None else "")
          + f" (allowed {TOLERANCE:g}).", file=sys.stderr)
    if result.image_mask_agreement is not None:
        print(f"mask agreement, PyTorch at precision {result.precision} vs the export, on "
              f"{check_image}: {100 * result.image_mask_agreement:.3f}% of pixels.",
              file=sys.stderr)


@app.command()
@guarded
def push(
    model: Annotated[Path, typer.Argument(help="Run directory or model artifact directory.")],
    repo: Annotated[str, typer.Argument(help="Hugging Face model repo, OWNER/NAME.")],
    private: Annotated[bool, typer.Option(help="Create the repo as private.")] = False,
    onnx: Annotated[bool, typer.Option(help="Also export and upload model.onnx.")] = False,
) -> None:
    """Upload the model (config.json, model.safetensors, model card) to a Hugging Face repo.

    Needs a token (`hf auth login` or HF_TOKEN). Load it anywhere with
    unetkit.load_model("hf://OWNER/NAME") or `unetkit predict hf://OWNER/NAME ...`.

    Example: unetkit push runs/membrane alice/membrane-unet --onnx
    """
    from unetkit.share.hub import push_model

    push_model(model, repo, private=private, onnx=onnx)


@app.command()
@guarded
def plan(
    data: Annotated[str, typer.Option(help="Folder of images and masks.")],
    budget: Annotated[str, typer.Option(help="Whole time budget for `fit --auto`, planning "
                                        "included, e.g. 10m.")] = "10m",
    out: Annotated[Path, typer.Option(help="Plan file to write.")] = Path("plan.yaml"),
    format: Annotated[str, typer.Option(help="Layout: auto or a name from `unetkit formats`.")
                      ] = "auto",
    reuse_probe: Annotated[Path | None, typer.Option(help="Re-plan from the speeds recorded "
                                                     "in this plan file instead of probing.")
                           ] = None,
    skip_bad: Annotated[bool, typer.Option(help="Leave unreadable or mismatched pairs out.")
                        ] = False,
) -> None:
    """Fingerprint the data, time candidate models here and write a training plan with reasons.

    Example: unetkit plan --data data/membrane --budget 10m --out plan.yaml
    """
    from unetkit.plan import make_plan

    result = make_plan(data, budget, format=format, probe=reuse_probe, skip_bad=skip_bad)
    result.save(out)
    print(result.summary())
    print(f"\nWrote {out}; train with it: unetkit fit --plan {out}", file=sys.stderr)


@app.command()
@guarded
def convert(
    data: Annotated[Path, typer.Argument(help="Data set folder in any layout unetkit reads.")],
    out: Annotated[Path, typer.Argument(help="New folder to write the converted data set to.")],
    to: Annotated[str, typer.Option(help="Layout to write: nnunet (an nnU-Net raw data set).")
                  ] = "nnunet",
    format: Annotated[str, typer.Option(help="Layout: auto or a name from `unetkit formats`.")
                      ] = "auto",
) -> None:
    """Write a data set in another tool's layout (class-index masks, as unetkit trains on).

    Example: unetkit convert data/nuclei --to nnunet nnUNet_raw/Dataset001_Nuclei
    """
    from unetkit.share.convert import convert as convert_data

    print(convert_data(data, to, out, format=format).summary())


from unetkit.bench.cli import make_bench_app  # noqa: E402  (the bench command group)

app.add_typer(make_bench_app(), name="bench")
from unetkit.serve.cli import serve as serve_command  # noqa: E402  (the web studio)

app.command("serve")(guarded(serve_command))
from unetkit.cli_label import rank, scribble  # noqa: E402  (labelling commands: cli_label)

app.command()(scribble)
app.command()(rank)


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

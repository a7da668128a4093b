"""The flags `fit` and `lr-find` share, and how they become a FitConfig.

Kept apart from cli.py because they are one concept (the training configuration as flags)
and two commands take all of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from unetkit.errors import UsageError

if TYPE_CHECKING:
    from unetkit.config import FitConfig

FitData = Annotated[str, typer.Option(help="Folder of images and masks.")]


FormatOpt = Annotated[str, typer.Option(help="Layout: auto or a name from `unetkit formats`.")]
FormatOptionOpt = Annotated[list[str] | None, typer.Option(
    help="Layout option KEY=VALUE, repeatable, e.g. --format-option boundary=pet.")]
ModelOpt = Annotated[str, typer.Option(help="Model name from `unetkit models`.")]
OptionOpt = Annotated[list[str] | None, typer.Option(
    help="Model option KEY=VALUE, repeatable, e.g. --option filters=16 --option depth=3.")]
EncoderOpt = Annotated[str | None, typer.Option(help="timm backbone for --model timm-unet.")]
EncoderWeightsOpt = Annotated[str | None, typer.Option(
    help="imagenet (from the torch/HF cache, downloaded when missing), none, or a weights "
         "file.")]
FreezeEncoderOpt = Annotated[bool | None, typer.Option(
    "--freeze-encoder/--no-freeze-encoder",
    help="Keep a pretrained encoder fixed.")]
UnfreezeAtOpt = Annotated[int | None, typer.Option(
    help="Epoch at which a frozen encoder starts training.")]
ClassesOpt = Annotated[int | None, typer.Option(help="Output channels; default from data.")]
InChannelsOpt = Annotated[int | None, typer.Option(help="Input channels; default from data.")]
SizeOpt = Annotated[str | None, typer.Option(help="Training patch size: N or HxW.")]
ScaleOpt = Annotated[str, typer.Option(
    help="Image scale before patching: auto, a factor such as 0.5, or stretch (resize every image "
         "to --size).")]
EpochsOpt = Annotated[int | None, typer.Option(
    help="Maximum epochs [default: 50, or no limit with --max-time: the time ends training].")]
MaxTimeOpt = Annotated[str | None, typer.Option(
    help="Wall-clock budget, e.g. 10m; stops cleanly and keeps the best model.")]
BatchSizeOpt = Annotated[int | None, typer.Option(help="Batch size; default from size and device.")]
LossOpt = Annotated[str, typer.Option(
    help="auto, bce, ce, dice, bce-dice, ce-dice, jaccard, focal, tversky, weighted-ce (U-Net "
         "border weights).")]
LossOptionOpt = Annotated[list[str] | None, typer.Option(
    help="Loss option KEY=VALUE, repeatable: dice_smooth, dice_per_image, dice_weight, ce_weight, "
         "focal_gamma, tversky_alpha, tversky_beta.")]
ClassWeightsOpt = Annotated[str | None, typer.Option(
    help="Comma-separated per-class loss weights, e.g. 1,3.")]
OptimizerOpt = Annotated[str, typer.Option(help="adam, adamw, sgd (momentum 0.99), rmsprop.")]
LrOpt = Annotated[str, typer.Option(help="Peak learning rate, or auto (range test first).")]
SchedulerOpt = Annotated[str, typer.Option(help="onecycle, cosine (warm-up), poly, none.")]
GradClipOpt = Annotated[float | None, typer.Option(help="Clip gradient norm to this.")]
EmaOpt = Annotated[float, typer.Option(
    help="Decay of the moving average of the weights that validation scores and the model "
         "keeps (about the last 1/(1-decay) steps); 0 keeps the last step's weights.")]
AccumulateOpt = Annotated[int, typer.Option(help="Accumulate gradients over N batches.")]
ValSplitOpt = Annotated[float, typer.Option(help="Fraction held out for validation.")]
TestSplitOpt = Annotated[float, typer.Option(help="Fraction held out for testing.")]
FoldsOpt = Annotated[int | None, typer.Option(
    help="Cross-validation: train K models on K splits, saved as one ensemble.")]
AugmentOpt = Annotated[str, typer.Option(
    help="none, default, strong, or natural (upright scenes: left-right flips, zoom, colour).")]
RareCropsOpt = Annotated[float, typer.Option(
    help="Share of training patches centred on a pixel of a rare class (under 10 % of "
         "pixels), 0 to 1.")]
PrecisionOpt = Annotated[str, typer.Option(help="auto, 32, bf16-mixed or 16-mixed (CUDA).")]
DevicesOpt = Annotated[int, typer.Option(
    help="Devices (processes) per node; >1 runs DDP. On CPU: N processes share the cores and "
         "--batch-size (the effective batch) evenly.")]
NumNodesOpt = Annotated[int, typer.Option(help="Nodes for multi-node DDP (torchrun/SLURM).")]
SeedOpt = Annotated[int, typer.Option(help="Random seed; runs repeat on CPU.")]
DeterministicOpt = Annotated[bool, typer.Option(
    help="Bit-repeatable runs on CUDA too (slower: disables cuDNN autotuning and non-deterministic"
         " kernels).")]
PatienceOpt = Annotated[int | None, typer.Option(
    help="Early-stopping patience in validation rounds (paced to about 5% of training time).")]
MonitorOpt = Annotated[str, typer.Option(help="Metric that picks the best checkpoint.")]
SkipBadOpt = Annotated[bool, typer.Option(
    help="Leave unreadable or mismatched pairs out instead of stopping.")]
CalibrateOpt = Annotated[bool, typer.Option(
    help="After training, fit a temperature on the validation split so probabilities are "
         "calibrated (masks do not change).")]
ConfigOpt = Annotated[Path | None, typer.Option(help="YAML config (e.g. a run's config.yaml).")]
OutOpt = Annotated[Path, typer.Option(help="Run directory to write.")]
OfflineOpt = Annotated[bool, typer.Option(
    help="Download nothing (pretrained weights): as UNETKIT_OFFLINE=1.")]
InitFromOpt = Annotated[Path | None, typer.Option(
    help="Start from this run's (or model artifact's) weights: fine-tuning, unlike --resume. "
         "Same model and classes; its normalisation, scale and patch size unless given.")]


def fit_options(
    data: FitData = "",
    format: FormatOpt = "auto",
    format_option: FormatOptionOpt = None,
    model: ModelOpt = "unet",
    option: OptionOpt = None,
    encoder: EncoderOpt = None,
    encoder_weights: EncoderWeightsOpt = None,
    freeze_encoder: FreezeEncoderOpt = None,
    unfreeze_at: UnfreezeAtOpt = None,
    classes: ClassesOpt = None,
    in_channels: InChannelsOpt = None,
    size: SizeOpt = None,
    scale: ScaleOpt = "auto",
    epochs: EpochsOpt = None,
    max_time: MaxTimeOpt = None,
    batch_size: BatchSizeOpt = None,
    loss: LossOpt = "auto",
    loss_option: LossOptionOpt = None,
    class_weights: ClassWeightsOpt = None,
    optimizer: OptimizerOpt = "adamw",
    lr: LrOpt = "1e-3",
    scheduler: SchedulerOpt = "onecycle",
    grad_clip: GradClipOpt = None,
    ema: EmaOpt = 0.99,
    accumulate: AccumulateOpt = 1,
    val_split: ValSplitOpt = 0.2,
    test_split: TestSplitOpt = 0.0,
    folds: FoldsOpt = None,
    augment: AugmentOpt = "default",
    rare_crops: RareCropsOpt = 0.0,
    precision: PrecisionOpt = "auto",
    devices: DevicesOpt = 1,
    num_nodes: NumNodesOpt = 1,
    seed: SeedOpt = 0,
    deterministic: DeterministicOpt = False,
    patience: PatienceOpt = None,
    monitor: MonitorOpt = "val/mean_dice",
    skip_bad: SkipBadOpt = False,
    calibrate: CalibrateOpt = True,
    config: ConfigOpt = None,
    out: OutOpt = Path("runs/latest"),
    offline: OfflineOpt = False,
    init_from: InitFromOpt = None,
    ctx: typer.Context = None,
):
    """Collect the fit flags into a FitConfig (flags given explicitly override --config)."""
    import os

    from unetkit.config import FitConfig, parse_size

    if offline:  # read where weights are resolved (models/weights_cache.py)
        os.environ["UNETKIT_OFFLINE"] = "1"

    base = FitConfig.load(config) if config else FitConfig()
    given = {
        "data": data, "format": format, "model": model, "classes": classes,
        "in_channels": in_channels, "size": parse_size(size), "scale": scale, "epochs": epochs,
        "max_time": max_time, "batch_size": batch_size, "loss": loss, "optimizer": optimizer,
        "lr": _parse_lr(lr), "scheduler": scheduler, "val_split": val_split,
        "test_split": test_split, "folds": folds, "augment": augment, "rare_crops": rare_crops,
        "precision": precision, "devices": devices, "num_nodes": num_nodes, "seed": seed,
        "patience": patience, "monitor": monitor, "skip_bad": skip_bad, "calibrate": calibrate,
        "out": str(out), "grad_clip": grad_clip, "ema": ema, "accumulate": accumulate,
        "deterministic": deterministic, "unfreeze_at": unfreeze_at,
        "init_from": None if init_from is None else str(init_from)}
    for key, value in given.items():
        src = ctx.get_parameter_source(key) if ctx is not None else None
        if config is None or (src is not None and src.name != "DEFAULT"):
            setattr(base, key, value)
    encoder_options = {"encoder": encoder, "encoder_weights": encoder_weights,
                       "freeze_encoder": freeze_encoder}
    _merge_options(base, option, encoder_options, format_option, loss_option, class_weights)
    if not base.data:
        raise UsageError("--data is required: the folder holding the images and masks.")
    if init_from is not None and config is None:
        _model_of_init_source(base, init_from, ctx)
    return base


def _model_of_init_source(base: FitConfig, init_from: Path, ctx: typer.Context | None) -> None:
    """--init-from without --model trains the source run's model."""
    model_src = getattr(ctx.get_parameter_source("model") if ctx else None, "name", "DEFAULT")
    if model_src == "DEFAULT":
        from unetkit.train.init_from import init_source

        base.model = init_source(str(init_from))["architecture"]["name"]


def _merge_options(base: FitConfig, option: list[str] | None, encoder_flags: dict[str, Any],
                   format_option: list[str] | None, loss_option: list[str] | None,
                   class_weights: str | None) -> None:
    """The KEY=VALUE and encoder flags, merged over what a --config file already set."""
    model_options = dict(base.model_options)
    model_options.update(parse_options(option or []))
    for key, value in encoder_flags.items():
        if value is not None:
            model_options[key] = None if value == "none" else value
    base.model_options = model_options
    if format_option:
        base.format_options = {**base.format_options, **parse_options(format_option,
                                                                        "--format-option")}
    if loss_option:
        from unetkit.train.losses import check_loss_options

        options = parse_options(loss_option, "--loss-option")
        check_loss_options(options)
        base.loss_options = {**base.loss_options, **options}
    if class_weights:
        try:
            base.loss_options = {**base.loss_options, "class_weights":
                                 [float(v) for v in class_weights.split(",")]}
        except ValueError as exc:
            raise UsageError(f"--class-weights {class_weights!r} must be comma-separated "
                             "numbers, e.g. 1,3.") from exc


def _parse_lr(text: str) -> float | str:
    if text == "auto":
        return "auto"
    try:
        value = float(text)
    except ValueError as exc:
        raise UsageError(f"--lr {text!r} must be a number such as 1e-3, or auto.") from exc
    if value <= 0:
        raise UsageError(f"--lr {text} must be positive.")
    return value


def parse_options(items: list[str], flag: str = "--option") -> dict[str, object]:
    """KEY=VALUE flags (--option, --format-option) to a dict; values read as YAML scalars."""
    import yaml

    options: dict[str, object] = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"{flag} {item!r} must look like KEY=VALUE, e.g. filters=16.")
        key, value = item.split("=", 1)
        options[key.strip().replace("-", "_")] = yaml.safe_load(value)
    return options


def with_fit_options(fn):
    """Give a command all the fit flags (shared by fit and lr-find)."""
    import inspect
    import typing

    def resolved(f) -> list[inspect.Parameter]:
        hints = typing.get_type_hints(f, include_extras=True)
        return [p.replace(annotation=hints.get(p.name, p.annotation))
                for p in inspect.signature(f).parameters.values()
                if p.name != "options" and not (f is fit_options and p.name == "ctx")]

    own = resolved(fn)
    first = [p for p in own if p.default is inspect.Parameter.empty]
    rest = [p for p in own if p.default is not inspect.Parameter.empty]
    fn.__signature__ = inspect.Signature(first + resolved(fit_options) + rest)
    fn.__annotations__ = {}
    return fn

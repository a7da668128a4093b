"""`unetkit fit`: from a data folder to a run directory with a trained model and a report."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from unetkit.config import FitConfig, parse_duration
from unetkit.data.dataset import SegmentationDataset, channel_stats
from unetkit.data.prepare import PreparedData, foreground_strata, peek_sizes, prepare
from unetkit.data.splits import load_splits, make_splits, save_splits
from unetkit.data.transforms import build_transforms
from unetkit.device import pick_device
from unetkit.errors import UnetkitError, UsageError
from unetkit.io_utils import atomic_write_text, run_lock
from unetkit.models.geometry import geometry_of
from unetkit.models.registry import build_model
from unetkit.progress import plain_output, say
from unetkit.train import defaults, parallel
from unetkit.train.callbacks import (
    ArtifactOnBest,
    AtomicCheckpointIO,
    ImageGridLogger,
    MetricsCsv,
    training_clock,
)
from unetkit.train.edge_loss import annotated_share, edge_weight_for
from unetkit.train.ema import WeightAverage
from unetkit.train.init_from import init_source, load_source_weights, with_source_settings
from unetkit.train.loaders import make_loader, training_dataset
from unetkit.train.losses import build_loss, check_loss_options
from unetkit.train.module import SegmentationModule
from unetkit.train.progress_log import PlainProgress
from unetkit.train.val_pacing import ValidationPacing

DEFAULT_EPOCHS = 50  # without --epochs or --max-time


@dataclass
class FitResult:
    """A trained run directory; `metrics` are filled in by the report (see pipeline.py)."""

    run_dir: Path
    metrics: dict[str, Any]
    data: PreparedData | None = None  # what it trained on, for the report
    splits: dict[str, list[str]] | None = None
    main: bool = True  # False in the other processes of a distributed run


class StepSeeding(L.Callback):
    """Reseed the RNGs before every step (dropout): a resumed run draws the same numbers."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule,
                             batch: object, batch_idx: int) -> None:
        s = (self.seed * 1009 + trainer.global_step) * 64 + trainer.global_rank
        random.seed(s)
        np.random.seed(s % 2**32)
        torch.manual_seed(s)



def quiet_lightning() -> None:
    """Keep the console for unetkit's own messages and the progress bar."""
    import logging
    import warnings

    for name in ("lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero",
                 "lightning.pytorch.accelerators.cuda"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*litlogger.*")



def in_channels_of(data: PreparedData, indices: list[int], asked: int | None) -> int:
    """The channels a model for these images takes: as asked, else the images' usual count
    (RGBA as RGB); the race bench builds its peers with the same rule."""
    if asked:
        return asked
    counts = [data.cache.shapes[i][2] for i in indices[:64]]
    c = max(set(counts), key=counts.count)
    return 3 if c == 4 else c  # RGBA: alpha carries no appearance


def max_epochs(epochs: int | None, max_time: float | None) -> int:
    """The epoch cap: as asked; else none under a time budget (so the whole budget trains
    and the schedule, which follows wall time, anneals by the deadline), else 50."""
    if epochs is not None:
        return epochs
    return -1 if max_time else DEFAULT_EPOCHS


def fit(config: FitConfig, quiet: bool = False, resume: bool = False,
        lr_find_only: bool = False, splits: dict[str, list[str]] | None = None,
        callbacks: list[L.Callback] | None = None) -> FitResult:
    """Train to the config; write the run directory of DESIGN.md; return validation metrics.

    `splits` fixes the train/val/test names (cross-validation folds pass theirs);
    `callbacks` join the Trainer's own (the race bench scores the weights from one). One model
    only: `unetkit.pipeline.run_fit` handles --folds. The run directory is locked while it
    trains, so a second `fit` on the same --out refuses instead of mixing checkpoints.
    """
    out = Path(config.out)
    if not config.data:
        raise UsageError("--data is required: the folder holding the images and masks.")
    config.validate()
    check_loss_options(config.loss_options)  # a config file may carry unknown keys too
    with run_lock(out, "checkpoints", "model"):
        return _fit_locked(config, out, quiet, resume, lr_find_only, splits, callbacks)


@dataclass
class _Setup:
    """What the data and the defaults decided: the model, its config and its inputs."""

    resolved: FitConfig
    model: torch.nn.Module
    decisions: defaults.Decisions
    logit_channels: int
    mean: list[float]
    std: list[float]
    meta: dict[str, Any]


def _fit_locked(config: FitConfig, out: Path, quiet: bool, resume: bool, lr_find_only: bool,
                splits: dict[str, list[str]] | None,
                callbacks: list[L.Callback] | None = None) -> FitResult:
    max_time = parse_duration(config.max_time)
    quiet_lightning()
    device = pick_device()
    source = init_source(config.init_from) if config.init_from else None
    if source is not None:
        config = with_source_settings(config, source)
    L.seed_everything(config.seed, workers=True, verbose=False)
    say(f"unetkit fit: data {config.data} -> run {out} on {device.type}", quiet)
    data, scale, spec_format = _prepare_data(config, out, quiet)
    splits = _splits(config, data, out, resume, splits)
    index = {n: i for i, n in enumerate(data.cache.names)}
    train_idx = [index[n] for n in splits["train"] if n in index]
    val_idx = [index[n] for n in splits["val"] if n in index]
    if not train_idx:
        raise UnetkitError(f"No training images left in {config.data} after splitting.")
    setup = _setup(config, data, train_idx, val_idx, scale, spec_format, device, quiet, source)
    resolved = setup.resolved
    out.mkdir(parents=True, exist_ok=True)
    train_loader, val_loader = _loaders(resolved, setup, data, train_idx, val_idx, device)
    loss_options = dict(config.loss_options)
    edge_request = loss_options.pop("edge_weight", None)
    module = SegmentationModule(setup.model, build_loss(resolved.loss, setup.logit_channels,
                                                        **loss_options),
                                2 if setup.logit_channels == 1 else setup.logit_channels,
                                data.mask.class_names, resolved.optimizer,
                                1e-3 if resolved.lr == "auto" else float(resolved.lr),
                                resolved.weight_decay, resolved.scheduler, max_time,
                                channels_last=setup.decisions.values["channels_last"],
                                float32_depthwise=setup.decisions.values["float32_depthwise"])
    module.edge_weight = _edge_weight(data, train_idx, edge_request, quiet)
    if (resolved.lr == "auto" or lr_find_only) and not resume:
        from unetkit.train.lr_find import run_lr_find

        found = run_lr_find(module, train_loader, out / "report" / "lr_finder.png",
                            resolved.precision, device)
        module.lr = resolved.lr = found
        say(f"  picked lr = {found:.2e}: steepest descent of the range test "
            f"(report/lr_finder.png)", quiet)
    if lr_find_only:
        return FitResult(out, {"suggested_lr": resolved.lr})
    resolved.save(out / "config.yaml")
    trainer = _trainer(config, resolved, out, setup.meta, max_time, device, quiet,
                       len(train_loader), callbacks)
    ckpt = out / "checkpoints" / "last.ckpt"
    trainer.fit(module, train_loader, val_loader,
                ckpt_path=str(ckpt) if resume and ckpt.is_file() else None)
    if config.calibrate and val_idx and trainer.is_global_zero and (out / "model").is_dir():
        from unetkit.train.calibrate import calibrate_artifact

        calibrate_artifact(out / "model", val_loader, device, quiet)
    return FitResult(out, {}, data, splits, trainer.is_global_zero)


def _prepare_data(config: FitConfig, out: Path, quiet: bool
                  ) -> tuple[PreparedData, float | str, str]:
    """Validate and cache the data at the chosen scale; list the pairs left out."""
    from unetkit.data.formats import open_dataset

    spec = open_dataset(config.data, config.format, **config.format_options)
    scale = defaults.choose_scale(config, peek_sizes(spec))
    data = prepare(config.data, config.format, scale, config.skip_bad, **config.format_options)
    if data.bad:
        lines = "\n".join(f"{b.name}\t{b.reason}" for b in data.bad)
        atomic_write_text(out / "skipped.txt", lines + "\n")
        say(f"Skipped {len(data.bad)} bad image/mask pair(s); listed in {out / 'skipped.txt'}.",
            quiet)
    return data, scale, spec.format


def _splits(config: FitConfig, data: PreparedData, out: Path, resume: bool,
            splits: dict[str, list[str]] | None) -> dict[str, list[str]]:
    """The given splits, the run's own on resume, else new seeded, stratified ones."""
    path = out / "splits.json"
    if splits is not None:
        save_splits(splits, path)
        return splits
    if resume and path.is_file():
        return load_splits(path)
    order = {n: i for i, n in enumerate(data.cache.names)}
    samples = [s for s in data.spec.samples if s.name in order]
    has_foreground = foreground_strata(data.cache)
    strata = [has_foreground[order[s.name]] for s in samples]
    splits = make_splits(samples, config.val_split, config.test_split, config.seed, strata)
    save_splits(splits, path)
    return splits


def _edge_weight(data: PreparedData, train_idx: list[int], requested: float | None,
                 quiet: bool) -> float:
    """The edge-aware smoothness weight; partial labels get it on by default (and say so)."""
    share = annotated_share(data.cache, train_idx) if requested is None else 1.0
    weight = edge_weight_for(share, requested)
    if weight and requested is None:
        say(f"  masks are partial ({share:.0%} of training pixels annotated): edge-aware "
            f"smoothness (weight {weight:g}) on every pixel places the boundaries "
            "between the strokes; --loss-option edge_weight=0 turns it off", quiet)
    return weight


def _setup(config: FitConfig, data: PreparedData, train_idx: list[int], val_idx: list[int],
           scale: float | str, data_format: str, device: torch.device, quiet: bool,
           source: dict[str, Any] | None = None) -> _Setup:
    """Resolve the open choices, build the model and the artifact's metadata; with
    `source` (--init-from's artifact config) the model starts from its weights."""
    sizes = [data.cache.shapes[i][:2] for i in train_idx]  # cached: already at `scale`
    d = defaults.resolve(config, sizes, 1.0, device)
    channels = in_channels_of(data, train_idx, config.in_channels)
    classes = data.mask.num_classes
    logit_channels = config.classes or (1 if classes == 2 else classes)
    model = build_model(config.model, in_channels=channels, classes=logit_channels,
                        **d.values["model_options"])
    if source is not None:
        load_source_weights(model, config, source, logit_channels)
    size = _fit_size_to_model(model, list(d.values["size"]))
    mean, std, norm_reason = _normalization(model, data, train_idx, channels, config, source)
    loss_name = config.loss if config.loss != "auto" else \
        ("bce-dice" if logit_channels == 1 else "ce-dice")
    resolved = FitConfig(**{**config.to_dict(), "size": size,
                            "batch_size": d.values["batch_size"],
                            "model_options": d.values["model_options"],
                            "precision": d.values["precision"], "in_channels": channels,
                            "num_workers": d.values["num_workers"], "loss": loss_name})
    for reason in d.reasons:
        say(f"  picked {reason}", quiet)
    say(f"  {len(train_idx)} training / {len(val_idx)} validation images, {classes} classes "
        f"({data.mask.kind} masks), {channels} channel(s), normalised with {norm_reason}", quiet)
    meta = {"class_names": data.mask.class_names, "binary": logit_channels == 1,
            "ignore_index": data.mask.ignore_index, "in_channels": channels,
            "normalization": {"mean": mean, "std": std}, "input_size": size, "scale": scale,
            "mask_spec": _mask_spec_dict(data), "data_format": data_format}
    model.unetkit_meta = meta
    return _Setup(resolved, model, d, logit_channels, mean, std, meta)


def _normalization(model: torch.nn.Module, data: PreparedData, train_idx: list[int],
                   channels: int, config: FitConfig, source: dict[str, Any] | None
                   ) -> tuple[list[float], list[float], str]:
    """(mean, std, why): --init-from's, a pretrained encoder's, else the training images'."""
    if source is not None and source.get("normalization"):
        norm = source["normalization"]
        return list(norm["mean"]), list(norm["std"]), f"the statistics of {config.init_from}"
    norm = getattr(model, "input_normalization", None)
    if norm:
        return list(norm["mean"]), list(norm["std"]), "the pretrained encoder's statistics"
    mean, std = channel_stats(data.cache, train_idx, channels)
    return mean, std, "computed once from the training images"


def _loaders(resolved: FitConfig, setup: _Setup, data: PreparedData, train_idx: list[int],
             val_idx: list[int], device: torch.device) -> tuple[Any, Any]:
    """Random augmented patches covering about the training area per epoch; whole validation
    images (batched when they share a size)."""
    size, channels = list(resolved.size or []), int(resolved.in_channels or 3)
    weight_maps = resolved.loss == "weighted-ce"
    valid_padding = geometry_of(setup.model).valid_padding
    train_ds = training_dataset(data.cache, train_idx, size, resolved.augment, channels,
                                setup.mean, setup.std, weight_maps, resolved.rare_crops,
                                data.mask.num_classes)
    val_tf = build_transforms(size, "none", False, channels == 1, center_crop=valid_padding)
    shown = val_idx or train_idx[:1]
    val_ds = SegmentationDataset(data.cache, shown, val_tf, channels, setup.mean, setup.std,
                                 weight_maps)
    same_size = valid_padding or len({data.cache.shapes[i] for i in shown}) == 1
    workers = resolved.num_workers or 0
    area = sum(data.cache.shapes[i][0] * data.cache.shapes[i][1] for i in train_idx)
    processes = parallel.cpu_processes(resolved.devices, device.type, resolved.num_nodes)
    batch = parallel.split_batch(int(resolved.batch_size or 1), processes)  # per process
    return (make_loader(train_ds, batch, True, workers, resolved.seed, device,
                        parallel.epoch_samples(-(-area // (size[0] * size[1])), processes)),
            make_loader(val_ds, batch if same_size else 1, False, workers, resolved.seed,
                        device))


def _trainer(config: FitConfig, resolved: FitConfig, out: Path, meta: dict[str, Any],
             max_time: float | None, device: torch.device, quiet: bool,
             steps_per_epoch: int, extra: list[L.Callback] | None = None) -> L.Trainer:
    """Lightning's Trainer with the run directory's callbacks (DESIGN.md, Run directory)."""
    callbacks: list[L.Callback] = [
        L.pytorch.callbacks.ModelCheckpoint(dirpath=out / "checkpoints", filename="best",
                                            monitor=config.monitor, mode=_mode(config.monitor),
                                            save_last=True, enable_version_counter=False),
        ArtifactOnBest(out / "model", meta),
        # after the artifact: it and validation see the average, checkpoints the trained weights
        *([WeightAverage(config.ema)] if config.ema else []),
        MetricsCsv(out / "metrics.csv"), ImageGridLogger(), StepSeeding(config.seed),
        # pacing after the clock: it sees the clock's stop in the same batch and validates
        training_clock(max_time), ValidationPacing(), *(extra or []),
    ]
    if not quiet:  # a bar on a terminal; plain lines in logs (SLURM, CI, nohup, pipes)
        callbacks.append(PlainProgress() if plain_output()
                         else L.pytorch.callbacks.TQDMProgressBar(refresh_rate=1))
    if config.unfreeze_at is not None:
        from unetkit.train.encoder_schedule import UnfreezeEncoder

        callbacks.append(UnfreezeEncoder(config.unfreeze_at))
    processes = parallel.cpu_processes(config.devices, device.type, config.num_nodes)
    if processes > 1:  # the loader's length counts every process's share of an epoch
        callbacks.append(parallel.ProcessThreads(parallel.threads_per_process(processes),
                                                  quiet_lightning))
        steps_per_epoch //= processes
    if config.patience:
        callbacks.append(L.pytorch.callbacks.EarlyStopping(config.monitor,
                                                           mode=_mode(config.monitor),
                                                           patience=config.patience))
    return L.Trainer(
        max_epochs=max_epochs(config.epochs, max_time),
        accelerator="gpu" if device.type == "cuda" else "cpu", devices=config.devices,
        num_nodes=config.num_nodes, precision=resolved.precision,
        logger=L.pytorch.loggers.TensorBoardLogger(str(out), name="tensorboard", version="",
                                                   default_hp_metric=False),
        callbacks=callbacks, plugins=[AtomicCheckpointIO()], default_root_dir=str(out),
        num_sanity_val_steps=0, enable_model_summary=False, enable_progress_bar=not quiet,
        log_every_n_steps=max(1, min(50, steps_per_epoch)), deterministic=config.deterministic,
        gradient_clip_val=config.grad_clip, accumulate_grad_batches=config.accumulate,
        benchmark=device.type == "cuda" and not config.deterministic,
        **parallel.trainer_options(config.devices, device.type, config.num_nodes),
    )


def _mode(monitor: str) -> str:
    return "min" if monitor.endswith("loss") else "max"


def _fit_size_to_model(model: torch.nn.Module, size: list[int]) -> list[int]:
    """Valid-padding models accept only some sizes: take the nearest valid one (the model's
    geometry says which; same-padding models take any size)."""
    geometry = geometry_of(model)
    return [geometry.nearest_valid_size(side) for side in size]


def _mask_spec_dict(data: PreparedData) -> dict[str, Any]:
    m = data.mask
    return json.loads(json.dumps({"kind": m.kind, "class_names": m.class_names,
                                  "ignore_index": m.ignore_index,
                                  "value_map": m.value_map, "colors": m.colors}))


__all__ = ["fit", "FitResult"]

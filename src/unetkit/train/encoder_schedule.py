"""Unfreeze a pretrained encoder after N epochs (fine-tuning after the decoder has settled)."""

from __future__ import annotations

import lightning as L


class UnfreezeEncoder(L.Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        model = pl_module.model
        if trainer.current_epoch >= self.epoch and getattr(model, "encoder_frozen", False):
            model.set_encoder_trainable(True)
            model.train()

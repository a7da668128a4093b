"""The epoch cap: a time budget, not a default epoch count, ends training under --max-time."""

from __future__ import annotations

from unetkit.train.fit import DEFAULT_EPOCHS, max_epochs


def test_epoch_cap() -> None:
    assert max_epochs(None, None) == DEFAULT_EPOCHS == 50
    assert max_epochs(None, 600.0) == -1  # no cap: Lightning's max_time stops the run
    assert max_epochs(7, 600.0) == 7  # an explicit --epochs always wins
    assert max_epochs(3, None) == 3

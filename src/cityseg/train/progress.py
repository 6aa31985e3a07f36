"""The progress bar of a training epoch and the images per second it reaches."""

from __future__ import annotations

import time

from tqdm import tqdm


class EpochProgress:
    """A bar of the optimiser steps of one epoch (shown on the main process when
    ``train.progress``), with the loss and learning rate last read (at the log intervals: reading
    a loss waits for the device) and the images per second so far.

    Args:
        steps: optimiser steps in the epoch.
        description: the bar's label, e.g. "epoch 3/50".
        show: whether to draw the bar.
        done: steps already done (a resumed epoch).
    """

    def __init__(self, steps: int, description: str, show: bool, done: int = 0) -> None:
        self.show = show
        self.bar = tqdm(
            total=steps, desc=description, disable=not show, leave=False, dynamic_ncols=True
        )
        self.started = time.perf_counter()
        self.images = 0
        if done:
            self.bar.update(done)

    def count(self, images: int) -> None:
        """Images of a micro-step, over all processes."""
        self.images += images

    def step(self) -> None:
        """One optimiser step done."""
        self.bar.update(1)

    def show_loss(self, loss: float, lr: float) -> None:
        """The loss of the last micro-batch that had images, read at a log interval."""
        if self.show:
            rate = self.images / (time.perf_counter() - self.started)
            self.bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", img_s=f"{rate:.1f}")

    def finish(self) -> float:
        """Close the bar; return the images per second of the epoch."""
        self.bar.close()
        return self.images / max(time.perf_counter() - self.started, 1e-9)

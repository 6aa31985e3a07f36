"""An exponential moving average of a model's weights (``train.ema_decay``).

After every optimiser step ``average = decay * average + (1 - decay) * weights``; early on the
decay is lowered to ``(1 + n) / (10 + n)`` after ``n`` updates, so the average does not stay near
the starting weights. Buffers such as BatchNorm statistics are averaged the same way (counters are
copied). The averaged model is the one validated and saved as ``model``; the trained weights
travel beside it in the checkpoint so that a resumed run continues from them.
"""

from __future__ import annotations

import copy
from typing import Any

import torch


class WeightAverage:
    """A frozen copy of ``model`` that follows its weights with an exponential moving average.

    Example:
        >>> model = torch.nn.Linear(2, 1)
        >>> average = WeightAverage(model, decay=0.999)
        >>> average.update(model)  # after each optimiser step
        >>> average.model(torch.zeros(1, 2)).shape
        torch.Size([1, 1])
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must lie in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def current_decay(self) -> float:
        """The decay the next update uses."""
        n = self.updates + 1
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Move the average towards ``model``'s current weights and buffers."""
        weight = 1.0 - self.current_decay()
        averaged, current = [], []
        for mine, theirs in zip(
            self.model.state_dict().values(), model.state_dict().values(), strict=True
        ):
            if mine.is_floating_point():
                averaged.append(mine)
                current.append(theirs.detach().to(mine.dtype))
            else:
                mine.copy_(theirs)
        if averaged:
            torch._foreach_lerp_(averaged, current, weight)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any], weights: dict[str, torch.Tensor]) -> None:
        """Restore the counter from ``state`` and the averaged weights from ``weights``."""
        self.updates = int(state["updates"])
        self.model.load_state_dict(weights)

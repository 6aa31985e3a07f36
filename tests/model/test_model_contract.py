"""The model contract (:class:`tests.helpers.contracts.ModelContract`) for the plain U-Net and
the U-Net on every pretrained encoder, each a tiny instance."""

from __future__ import annotations

import pytest

from cityseg.architectures import ENCODER_NAMES, PLAIN_UNET
from tests.helpers.contracts import ModelContract

TINY_UNET = {"base_width": 4, "depth": 2, "upsampling": "transpose"}
SMALL_DECODER = [16, 16, 8, 8, 8]


class TestEveryModel(ModelContract):
    @pytest.fixture(params=ENCODER_NAMES)
    def model_config(self, request) -> dict:
        if request.param == PLAIN_UNET:
            return {"num_classes": 5, **TINY_UNET}
        return {"encoder": request.param, "num_classes": 5, "decoder_widths": SMALL_DECODER}

"""The ONNX segmenter passes the contract of every segmenter (more in tests/test_export.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cityseg.export import export_checkpoint
from cityseg.predict import OnnxSegmenter
from tests.helpers.contracts import SegmenterContract


@pytest.fixture(scope="module")
def exported(tiny_checkpoint, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    return export_checkpoint(tiny_checkpoint, out, verify=False).path


class TestOnnxSegmenterContract(SegmenterContract):
    @pytest.fixture
    def make(self, exported):
        return lambda options=None: OnnxSegmenter(exported, "cpu", options)

"""Models on the Hugging Face Hub: the folder a push uploads (byte for byte), push then pull then
predict identically, revisions, the cache offline, and one-line errors; against a local Hub
(tests/helpers/hub_server.py), never the network."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("huggingface_hub")

import huggingface_hub  # noqa: E402
import huggingface_hub.constants  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from cityseg.checkpoint.io import load_checkpoint  # noqa: E402
from cityseg.checkpoint.loading import load_model  # noqa: E402
from cityseg.checkpoint.model_folder import MODEL_FOLDER_FORMAT  # noqa: E402
from cityseg.cli import main  # noqa: E402
from cityseg.errors import CheckpointError, ConfigError  # noqa: E402
from cityseg.inference.options import TRAINING_SIZE, InferenceOptions  # noqa: E402
from cityseg.model import model_from_config  # noqa: E402
from cityseg.model.complexity import count_parameters  # noqa: E402
from cityseg.predict import Segmenter  # noqa: E402
from cityseg.pretrained import pretrained_path  # noqa: E402
from cityseg.pretrained.hub import parse_hub_name  # noqa: E402
from cityseg.share.hub import save_model_folder  # noqa: E402
from cityseg.train.build import initialize_from  # noqa: E402
from tests.helpers.checkpoints import save_tiny_checkpoint  # noqa: E402
from tests.helpers.hub_server import LocalHub  # noqa: E402

EVALUATION = {
    "mean_iou": 0.5,
    "pixel_accuracy": 0.9,
    "mean_accuracy": 0.6,
    "images": 3,
    "split": "val",
    "format": "pairs",
    "mode": "whole",
    "scale": {"network": "128x256 (the training size)"},
    "classes": {"road": {"iou": 0.95}, "sidewalk": {"iou": 0.25}, "rider": {"iou": None}},
}
OPTIONS = InferenceOptions(resize=TRAINING_SIZE)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("checkpoints")
    return (
        save_tiny_checkpoint(folder / "first.pt", (64, 128), 0, 4, 2),
        save_tiny_checkpoint(folder / "second.pt", (64, 128), 1, 4, 2),
    )


@pytest.fixture
def evaluation(tmp_path) -> Path:
    folder = tmp_path / "eval_val"
    folder.mkdir()
    (folder / "metrics.json").write_text(json.dumps(EVALUATION))
    return folder


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with LocalHub() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def photo(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (70, 150, 3), dtype=np.uint8)


def test_the_saved_folder_is_the_checkpoint_byte_for_byte_and_the_same_each_time(
    checkpoints, evaluation, tmp_path
):
    checkpoint = checkpoints[0]
    first = save_model_folder(checkpoint, tmp_path / "a", "someone/tiny", evaluation)
    second = save_model_folder(checkpoint, tmp_path / "b", "someone/tiny", evaluation)
    assert [path.name for path in first] == ["config.json", "model.safetensors", "README.md"]
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name

    state = load_checkpoint(checkpoint)
    weights = load_file(str(tmp_path / "a" / "model.safetensors"))
    assert weights.keys() == state["model"].keys()
    assert all(torch.equal(weights[name], state["model"][name]) for name in weights)

    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["format"] == MODEL_FOLDER_FORMAT
    for key in ("model_config", "class_names", "palette", "normalization", "input_size"):
        assert config[key] == json.loads(json.dumps(state[key])), key
    assert config["crop_size"] is None and config["epoch"] == 1
    assert "root" not in config["config"]["data"]  # no folder of the training machine
    model = model_from_config(config["model_config"])
    model.load_state_dict(weights)  # config.json alone rebuilds the network the weights fit

    card = (tmp_path / "a" / "README.md").read_text()
    parameters = count_parameters(load_model(checkpoint)[0])
    expected_lines = [
        "library_name: cityseg",
        "license_link: https://www.cityscapes-dataset.com/license/",
        "# tiny",
        f"| Parameters | {parameters:,} ({parameters / 1e6:.2f} M) |",
        "resized to 64x128 (its training size)",
        "cityseg predict --pretrained hf:someone/tiny photos/ --out predictions/",
        "| trainId | class | colour (RGB) | IoU |",
        "| 0 | road | 128, 64, 128 | 95.0% |",
        "| 12 | rider | 255, 0, 0 | n/a |",
        "| 18 | bicycle | 119, 11, 32 | n/a |",
        "Scored by `cityseg evaluate` on 3 images of split `val` (pairs format), whole mode",
        "| mIoU | 50.0% |",
        "non-commercial use only",
        "forbid redistributing the data",
        "Not for decisions that affect safety",
        "Weakest classes in the evaluation above: sidewalk (25.0%), road (95.0%).",
    ]
    for line in expected_lines:
        assert line in card, line
    assert (
        card
        == save_model_folder(checkpoint, tmp_path / "c", "someone/tiny", evaluation)[2].read_text()
    )


def test_a_saved_folder_loads_wherever_a_checkpoint_does(checkpoints, tmp_path):
    folder = tmp_path / "model"
    save_model_folder(checkpoints[0], folder)
    image = photo()
    expected = Segmenter.from_checkpoint(checkpoints[0], "cpu", OPTIONS).predict(image)
    np.testing.assert_array_equal(
        Segmenter.from_checkpoint(folder, "cpu", OPTIONS).predict(image), expected
    )


def test_push_then_pull_predicts_identically_and_loads_offline_from_the_cache(
    checkpoints, evaluation, hub, tmp_path, monkeypatch, capsys
):
    checkpoint = checkpoints[0]
    args = ["hub", "push", str(checkpoint), "--repo", "someone/tiny", "--private"]
    assert main([*args, "--eval", str(evaluation)]) == 0
    assert "load it with --pretrained hf:someone/tiny" in capsys.readouterr().out
    repo = hub.state.repos["someone/tiny"]
    assert repo.private
    pushed = repo.commits[repo.refs["main"]]
    saved = save_model_folder(checkpoint, tmp_path / "saved", "someone/tiny", evaluation)
    assert pushed == {path.name: path.read_bytes() for path in saved}
    tokens = {auth for method, _, auth in hub.state.requests if method == "POST"}
    assert tokens == {"Bearer hf_test_token"}

    image = photo(1)
    expected = Segmenter.from_checkpoint(checkpoint, "cpu", OPTIONS).predict(image)
    pulled = Segmenter.from_pretrained("hf:someone/tiny", "cpu")  # the training size by default
    np.testing.assert_array_equal(pulled.predict(image), expected)
    downloads = len(hub.paths("GET"))
    assert downloads == 2  # config.json and model.safetensors, not the card

    Segmenter.from_pretrained("hf:someone/tiny", "cpu")
    assert len(hub.paths("GET")) == downloads  # cached: asked again, not downloaded again

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    requests = len(hub.state.requests)
    offline = Segmenter.from_pretrained("hf:someone/tiny", "cpu")
    np.testing.assert_array_equal(offline.predict(image), expected)
    assert len(hub.state.requests) == requests  # no request at all

    with pytest.raises(CheckpointError, match="not in the Hugging Face cache.*HF_HUB_OFFLINE"):
        pretrained_path("hf:someone/never-pulled")


def test_the_cache_is_used_when_the_hub_cannot_be_reached(checkpoints, tmp_path, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with LocalHub() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        assert main(["hub", "push", str(checkpoints[0]), "--repo", "someone/tiny"]) == 0
        folder = pretrained_path("hf:someone/tiny")
    assert pretrained_path("hf:someone/tiny") == folder  # the server is gone


def test_a_revision_pins_the_weights_of_that_commit(checkpoints, hub):
    first, second = checkpoints
    assert main(["hub", "push", str(first), "--repo", "someone/tiny"]) == 0
    first_commit = hub.state.repos["someone/tiny"].refs["main"]
    assert main(["hub", "push", str(second), "--repo", "someone/tiny"]) == 0
    image = photo(2)
    for name, checkpoint in (
        (f"hf:someone/tiny@{first_commit}", first),
        ("hf:someone/tiny", second),
        ("hf:someone/tiny@main", second),
    ):
        expected = Segmenter.from_checkpoint(checkpoint, "cpu", OPTIONS).predict(image)
        np.testing.assert_array_equal(
            Segmenter.from_pretrained(name, "cpu").predict(image), expected, err_msg=name
        )


def test_train_init_from_and_predict_take_a_hub_name(checkpoints, hub, tmp_path, capsys):
    first, second = checkpoints
    assert main(["hub", "push", str(first), "--repo", "someone/tiny"]) == 0
    model, _ = load_model(second)
    initialize_from(model, "hf:someone/tiny")
    expected = load_checkpoint(first)["model"]
    assert all(torch.equal(model.state_dict()[name], expected[name]) for name in expected)

    photos = tmp_path / "photos"
    photos.mkdir()
    import cv2

    cv2.imwrite(str(photos / "a.png"), photo(3))
    out = tmp_path / "out"
    args = ["predict", "--pretrained", "hf:someone/tiny", str(photos), "--out", str(out)]
    assert main([*args, "--outputs", "trainIds", "--no-progress"]) == 0
    assert (out / "a_trainIds.png").is_file()


def test_evaluate_takes_a_hub_name_and_writes_one_folder_for_it(
    checkpoints, hub, tmp_path, monkeypatch
):
    from tests.helpers.scenes import write_scenes

    data = write_scenes(tmp_path / "scenes", {"val": 2})
    assert main(["hub", "push", str(checkpoints[0]), "--repo", "someone/tiny"]) == 0
    monkeypatch.chdir(tmp_path)
    args = ["evaluate", "--pretrained", "hf:someone/tiny@main", "--data", str(data)]
    assert main([*args, "--no-progress"]) == 0
    metrics = json.loads((tmp_path / "eval_hf_someone_tiny_main_val" / "metrics.json").read_text())
    assert metrics["images"] == 2


def test_missing_repositories_files_and_revisions_are_one_line(checkpoints, hub, tmp_path):
    with pytest.raises(CheckpointError, match="no such model repository"):
        pretrained_path("hf:someone/absent")
    assert main(["hub", "push", str(checkpoints[0]), "--repo", "someone/tiny"]) == 0
    with pytest.raises(CheckpointError, match="no revision 'v9'"):
        pretrained_path("hf:someone/tiny@v9")
    for name in ("hf:no-slash", "hf:a/b/c", "hf:someone/tiny@"):
        with pytest.raises(ConfigError):
            parse_hub_name(name)


def test_a_pickle_in_place_of_the_weights_is_refused(checkpoints, hub, tmp_path):
    assert main(["hub", "push", str(checkpoints[0]), "--repo", "someone/tiny"]) == 0
    repo = hub.state.repos["someone/tiny"]
    files = dict(repo.commits[repo.refs["main"]])
    pickle_file = tmp_path / "weights.pt"
    torch.save(load_checkpoint(checkpoints[0])["model"], pickle_file)
    files["model.safetensors"] = pickle_file.read_bytes()
    repo.commits["f" * 40] = files
    repo.refs["main"] = "f" * 40
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        Segmenter.from_pretrained("hf:someone/tiny", "cpu")


def test_no_login_and_no_package_are_one_line_each(checkpoints, hub, monkeypatch, capsys):
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    assert main(["hub", "push", str(checkpoints[0]), "--repo", "someone/tiny"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "hf auth login" in error and "HF_TOKEN" in error
    assert not hub.state.requests

    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    with pytest.raises(ConfigError, match=r"pip install 'cityseg\[hub\]'"):
        pretrained_path("hf:someone/tiny")


def test_save_refuses_to_write_into_the_model_folder_it_reads(checkpoints, tmp_path):
    folder = tmp_path / "model"
    save_model_folder(checkpoints[0], folder)
    with pytest.raises(CheckpointError, match="choose another --out"):
        save_model_folder(folder, folder)

"""The generated street scenes: deterministic, exact official encodings, official layout, CLI."""

from __future__ import annotations

import json
import re

import cv2
import numpy as np
import pytest
from cityscapesscripts.helpers.annotation import Annotation
from cityscapesscripts.helpers.labels import id2label
from cityscapesscripts.preparation.json2instanceImg import createInstanceImage
from cityscapesscripts.preparation.json2labelImg import createLabelImage

from cityseg import labels
from cityseg.cli import main
from cityseg.scenes import Scene, generate_dataset, render_scene
from cityseg.scenes.writer import frame_seed

SMALL = {"height": 64, "width": 128}
FRAME = r"(?P<city>[a-z]+)_(?P<seq>\d{6})_(?P<frame>\d{6})"
FILE_PATTERNS = {
    "leftImg8bit": re.compile(FRAME + r"_leftImg8bit\.png"),
    "gtFine": re.compile(
        FRAME
        + r"_gtFine_(labelIds|instanceIds|color)\.png|"
        + FRAME.replace("?P<", "?P<j_")
        + r"_gtFine_polygons\.json"
    ),
}


@pytest.fixture(scope="module")
def scenes() -> list[Scene]:
    """20 frames of the default train split at 128x256, as a model would be trained on."""
    return [render_scene(frame_seed(0, "train", i), 128, 256) for i in range(20)]


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    return generate_dataset(root, {"train": 4, "val": 2, "test": 1}, pairs=True, **SMALL)


def _annotation(scene: Scene) -> Annotation:
    annotation = Annotation()
    annotation.fromJsonText(json.dumps(scene.annotation()))
    return annotation


def test_same_seed_gives_same_bytes_and_another_seed_differs():
    first, again, other = (
        render_scene(7, **SMALL),
        render_scene(7, **SMALL),
        render_scene(8, **SMALL),
    )
    for name in ("image", "label_ids", "instance_ids"):
        assert getattr(first, name).tobytes() == getattr(again, name).tobytes()
    assert first.polygons == again.polygons
    assert first.image.tobytes() != other.image.tobytes()
    assert first.label_ids.tobytes() != other.label_ids.tobytes()


def test_a_generator_and_a_seed_give_the_same_scene():
    from_seed = render_scene([3, 4], **SMALL)
    from_generator = render_scene(np.random.default_rng([3, 4]), **SMALL)
    assert np.array_equal(from_seed.image, from_generator.image)


def test_the_same_seed_draws_the_same_street_at_any_size():
    large = render_scene(5, height=128, width=256).label_ids
    small = render_scene(5, **SMALL).label_ids
    shrunk = cv2.resize(large, (128, 64), interpolation=cv2.INTER_NEAREST)
    assert (shrunk == small).mean() > 0.85


def test_shapes_and_dtypes():
    scene = render_scene(1, height=96, width=160)
    assert scene.image.shape == (96, 160, 3) and scene.image.dtype == np.uint8
    assert scene.label_ids.shape == (96, 160) and scene.label_ids.dtype == np.uint8
    assert scene.instance_ids.shape == (96, 160) and scene.instance_ids.dtype == np.uint16
    assert scene.color().shape == (96, 160, 3)
    assert scene.annotation()["imgHeight"] == 96 and scene.annotation()["imgWidth"] == 160


def test_too_small_a_size_is_refused():
    with pytest.raises(ValueError, match="too small"):
        render_scene(0, height=8, width=8)


def test_label_ids_are_valid_and_every_class_appears(scenes):
    seen = np.zeros(256, dtype=bool)
    for scene in scenes:
        assert labels.KNOWN_LABEL_IDS[scene.label_ids].all()
        seen[np.unique(labels.label_ids_to_train_ids(scene.label_ids))] = True
        assert scene.image.std() > 20, "a photo should not be flat"
    missing = [name for i, name in enumerate(labels.CLASS_NAMES) if not seen[i]]
    assert not missing, f"classes never drawn in 20 frames: {missing}"
    assert seen[labels.IGNORE_INDEX], "some void (ego vehicle, static) should be drawn too"


def test_instance_ids_follow_the_official_encoding(scenes):
    for scene in scenes:
        instance_ids = scene.instance_ids.astype(np.int64)
        has_instances = np.array([id2label[i].hasInstances for i in range(34)])[scene.label_ids]
        assert np.array_equal(instance_ids[has_instances] // 1000, scene.label_ids[has_instances])
        assert np.array_equal(instance_ids[~has_instances], scene.label_ids[~has_instances])
        for label_id in np.unique(scene.label_ids[has_instances]):
            indices = np.unique(instance_ids[scene.label_ids == label_id]) % 1000
            drawn = sum(p["label"] == id2label[int(label_id)].name for p in scene.polygons)
            assert indices.max() < drawn, "instance indices count the class's objects from 0"


def test_polygons_rasterised_officially_reproduce_the_masks_exactly(scenes):
    for scene in scenes[:8]:
        annotation = _annotation(scene)
        label_ids = np.array(createLabelImage(annotation, "ids"))
        instance_ids = np.array(createInstanceImage(annotation, "ids"))
        assert np.array_equal(label_ids, scene.label_ids)
        assert np.array_equal(instance_ids, scene.instance_ids)


def test_written_json_reproduces_the_written_label_png(dataset_root):
    for json_path in sorted((dataset_root / "gtFine").rglob("*_gtFine_polygons.json")):
        annotation = Annotation()
        annotation.fromJsonFile(str(json_path))
        png = str(json_path).replace("_polygons.json", "_labelIds.png")
        written = cv2.imread(png, cv2.IMREAD_UNCHANGED)
        assert np.array_equal(np.array(createLabelImage(annotation, "ids")), written)


def test_polygons_are_integer_points_inside_the_image(scenes):
    for scene in scenes[:5]:
        for obj in scene.polygons:
            points = np.array(obj["polygon"])
            assert points.dtype.kind == "i" and points.shape[1] == 2 and len(points) >= 3
            assert points.min() >= 0
            assert points[:, 0].max() < scene.width and points[:, 1].max() < scene.height


def test_dataset_files_are_named_and_encoded_as_the_official_ones(dataset_root):
    for kind, pattern in FILE_PATTERNS.items():
        files = [p for p in (dataset_root / kind).rglob("*") if p.is_file()]
        assert files
        for path in files:
            split, city = path.parent.parent.name, path.parent.name
            assert split in ("train", "val", "test")
            assert pattern.fullmatch(path.name), path.name
            assert path.name.startswith(city + "_")
    images = sorted((dataset_root / "leftImg8bit").rglob("*_leftImg8bit.png"))
    assert len(images) == 7
    for image_path in images:
        stem = image_path.name.replace("_leftImg8bit.png", "")
        split, city = image_path.parent.parent.name, image_path.parent.name
        folder = dataset_root / "gtFine" / split / city
        image = cv2.imread(str(image_path), cv2.IMREAD_UNCHANGED)
        label_ids = cv2.imread(str(folder / f"{stem}_gtFine_labelIds.png"), cv2.IMREAD_UNCHANGED)
        instances = cv2.imread(str(folder / f"{stem}_gtFine_instanceIds.png"), cv2.IMREAD_UNCHANGED)
        assert image.shape == (64, 128, 3) and image.dtype == np.uint8
        assert label_ids.shape == (64, 128) and label_ids.dtype == np.uint8
        assert instances.dtype == np.uint16 and (instances > 1000).any()
        polygons = json.loads((folder / f"{stem}_gtFine_polygons.json").read_text())
        assert set(polygons) == {"imgHeight", "imgWidth", "objects"}
        assert {"label", "polygon"} <= set(polygons["objects"][0])


def test_frames_do_not_depend_on_how_many_are_generated(tmp_path):
    few = generate_dataset(tmp_path / "few", {"val": 1}, color=False, **SMALL)
    more = generate_dataset(tmp_path / "more", {"val": 3}, color=False, **SMALL)
    name = "leftImg8bit/val/polygonau/polygonau_000000_000019_leftImg8bit.png"
    assert (few / name).read_bytes() == (more / name).read_bytes()


def test_city_names_that_would_break_frame_ids_are_refused(tmp_path):
    with pytest.raises(ValueError, match="city names"):
        generate_dataset(tmp_path, {"val": 1}, cities={"val": ["new_york"]}, **SMALL)


def test_pairs_are_256x512_jpegs_of_photo_and_colours(dataset_root):
    pairs = sorted((dataset_root / "pairs" / "train").iterdir())
    assert [p.name for p in pairs] == ["1.jpg", "2.jpg", "3.jpg", "4.jpg"]
    palette = labels.LABEL_COLORS.astype(np.int64)
    for path in pairs:
        pair = cv2.imread(str(path))[..., ::-1]
        assert pair.shape == (256, 512, 3)
        colours = pair[:, 256:].reshape(-1, 1, 3).astype(np.int64)
        distance = np.abs(colours - palette[None]).sum(axis=2).min(axis=1)
        assert (distance < 40).mean() > 0.97, "label colours should survive the JPEG"
    assert (dataset_root / "pairs" / "test" / "1.jpg").is_file()


def test_cli_generates_the_tree_and_prints_a_summary(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(
        [
            "data",
            "generate",
            str(out),
            "--train",
            "2",
            "--val",
            "1",
            "--test",
            "0",
            "--size",
            "64x128",
            "--seed",
            "3",
            "--pairs",
        ]
    )
    assert code == 0
    assert len(list((out / "leftImg8bit" / "train").rglob("*.png"))) == 2
    assert len(list((out / "gtFine" / "val").rglob("*_gtFine_polygons.json"))) == 1
    assert len(list((out / "pairs" / "train").glob("*.jpg"))) == 2
    summary = capsys.readouterr().out.strip().splitlines()
    assert len(summary) == 1 and "3 frames" in summary[0] and "64x128" in summary[0]


def test_cli_refuses_a_bad_size(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "generate", str(tmp_path), "--size", "big"])
    assert exit_info.value.code == 2
    assert "HxW" in capsys.readouterr().err


def test_cli_refuses_a_file_as_output(tmp_path, capsys):
    target = tmp_path / "file.txt"
    target.write_text("not a folder")
    assert main(["data", "generate", str(target), "--train", "1"]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_the_cityscapes_reader_reads_the_generated_tree(dataset_root):
    cityscapes = pytest.importorskip("cityseg.data.cityscapes")
    train = cityscapes.CityscapesDataset(dataset_root, "train")
    assert len(train) == 4
    image, target = train[0]
    assert image.shape == (64, 128, 3) and target.shape == (64, 128)
    frame = train.frame_ids[0]
    city = frame.split("_")[0]
    label_ids = cv2.imread(
        str(dataset_root / "gtFine" / "train" / city / f"{frame}_gtFine_labelIds.png"),
        cv2.IMREAD_UNCHANGED,
    )
    assert np.array_equal(target, labels.label_ids_to_train_ids(label_ids))
    test_image, test_target = cityscapes.CityscapesDataset(dataset_root, "test")[0]
    assert test_image.shape == (64, 128, 3) and test_target is None


def test_the_official_evaluator_accepts_the_generated_ground_truth(dataset_root, monkeypatch):
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as official

    monkeypatch.setattr(np, "in1d", np.isin, raising=False)
    args = official.args
    monkeypatch.setattr(args, "quiet", True)
    monkeypatch.setattr(args, "JSONOutput", False)
    monkeypatch.setattr(args, "evalPixelAccuracy", False)
    monkeypatch.setattr(args, "evalInstLevelScore", True)
    ground_truth = sorted(str(p) for p in (dataset_root / "gtFine" / "val").rglob("*_labelIds.png"))
    result = official.evaluateImgLists(ground_truth, ground_truth, args)
    assert result["averageScoreClasses"] == pytest.approx(1.0)
    assert result["averageScoreInstClasses"] == pytest.approx(1.0)
    scored = [name for name, score in result["classInstScores"].items() if not np.isnan(score)]
    assert "car" in scored


def test_variation_calms_the_photo_but_keeps_the_ground_truth():
    full, default = render_scene(11, **SMALL, variation=1.0), render_scene(11, **SMALL)
    calm, flat = render_scene(11, **SMALL, variation=0.3), render_scene(11, **SMALL, variation=0.0)
    assert full.image.tobytes() == default.image.tobytes()
    for scene in (calm, flat):
        assert np.array_equal(scene.label_ids, full.label_ids)
        assert np.array_equal(scene.instance_ids, full.instance_ids)
        assert scene.polygons == full.polygons
    assert calm.image.tobytes() != full.image.tobytes()

    def texture(scene: Scene) -> float:
        """Mean colour spread inside each labelled region: what lighting and noise add."""
        image = scene.image.astype(np.float64)
        return np.mean([image[scene.label_ids == i].std(axis=0).mean() for i in (7, 11, 23)])

    assert texture(flat) < texture(full)


def test_variation_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match="variation"):
        render_scene(0, **SMALL, variation=1.5)

import numpy as np
from cityscapesscripts.helpers.labels import id2label, trainId2label

from cityseg import labels


def test_nineteen_training_classes_in_official_order():
    assert labels.NUM_CLASSES == 19
    assert labels.CLASS_NAMES == tuple(trainId2label[t].name for t in range(19))
    assert labels.PALETTE.shape == (19, 3) and labels.PALETTE.dtype == np.uint8
    assert tuple(labels.PALETTE[13]) == (0, 0, 142)  # car


def test_label_id_to_train_id_matches_the_official_table_for_all_34_labels():
    assert labels.NUM_LABEL_IDS == 34
    for label_id in range(34):
        official = id2label[label_id].trainId
        expected = official if 0 <= official < 255 else labels.IGNORE_INDEX
        assert labels.LABEL_ID_TO_TRAIN_ID[label_id] == expected, id2label[label_id].name
    assert (labels.LABEL_ID_TO_TRAIN_ID[34:] == labels.IGNORE_INDEX).all()


def test_train_id_round_trips_through_label_ids():
    train_ids = np.arange(19, dtype=np.uint8)
    label_ids = labels.train_ids_to_label_ids(train_ids)
    assert list(label_ids) == [trainId2label[t].id for t in range(19)]
    assert (labels.label_ids_to_train_ids(label_ids) == train_ids).all()
    assert labels.TRAIN_ID_TO_LABEL_ID[labels.IGNORE_INDEX] == 0  # unlabeled


def test_colour_tables_cover_every_label():
    assert labels.LABEL_COLORS.shape == (34, 3)
    for label_id in range(34):
        color = tuple(int(c) for c in labels.LABEL_COLORS[label_id])
        assert color == id2label[label_id].color
        # colours shared by void labels resolve to the lowest labelId that has them
        assert labels.COLOR_TO_LABEL_ID[color] <= label_id
    assert labels.COLOR_TO_LABEL_ID[(128, 64, 128)] == 7  # road


def test_colorize_paints_ignore_black():
    mask = np.array([[0, 255], [13, 18]], dtype=np.uint8)
    rgb = labels.colorize(mask)
    assert rgb.shape == (2, 2, 3)
    assert tuple(rgb[0, 1]) == (0, 0, 0)
    assert tuple(rgb[1, 0]) == (0, 0, 142)


def test_categories_and_instances():
    assert labels.CATEGORY_NAMES == (
        "flat",
        "construction",
        "object",
        "nature",
        "sky",
        "human",
        "vehicle",
    )
    assert labels.CATEGORY_NAMES[labels.CLASS_CATEGORY[0]] == "flat"
    assert labels.CLASS_HAS_INSTANCES.sum() == 8  # person .. bicycle

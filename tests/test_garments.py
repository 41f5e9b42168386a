"""Issue 26: garments from a garment-group label map (join, fragments, pairs), COCO RLE of their masks
(the strings of pycocotools), and the matching of found garments against true ones."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from fashionlens.errors import FashionlensError
from fashionlens.garments import (
    Garment,
    GarmentError,
    RLEError,
    box_iou,
    decode_rle,
    encode_rle,
    garment_detection_report,
    garments_from_labels,
    match_garments,
    rle_area,
)

NAMES = ["background", "skin", "hair", "upper", "dress", "skirt", "shoes", "bag"]
GARMENTS = NAMES[3:]
BG, SKIN, UPPER, DRESS, SKIRT, SHOES = 0, 1, 3, 4, 5, 6


def _found(labels, **kwargs) -> list[tuple[str, tuple[int, int, int, int], int]]:
    return [(g.label, g.box, g.area) for g in garments_from_labels(labels, NAMES, GARMENTS, **kwargs)]


# ---- garments from a label map -------------------------------------------------------------------


def test_two_separate_shoes_are_one_shoes_garment_whose_box_spans_both():
    labels = np.zeros((200, 120), np.uint8)
    labels[180:195, 20:45] = SHOES  # 15 x 25 = 375 px each, 1.6 % of the photo, 25 px apart
    labels[180:195, 70:95] = SHOES
    found = garments_from_labels(labels, NAMES, GARMENTS)
    assert [(g.label, g.group, g.box, g.area) for g in found] == [("shoes", SHOES, (20, 180, 95, 195), 750)]
    assert (found[0].mask == (labels == SHOES)).all() and found[0].fraction == 750 / 24000
    # the pair rule is what makes them one: not a pair group, they are two garments
    assert _found(labels, pairs=()) == [
        ("shoes", (20, 180, 45, 195), 375),
        ("shoes", (70, 180, 95, 195), 375),
    ]


def test_a_dress_is_one_garment_and_a_top_over_a_skirt_two_with_their_boxes():
    dress = np.zeros((200, 120), np.uint8)
    dress[40:150, 30:90] = DRESS
    assert _found(dress) == [("dress", (30, 40, 90, 150), 110 * 60)]
    outfit = np.zeros((200, 120), np.uint8)
    outfit[40:90, 30:90] = UPPER
    outfit[90:150, 30:90] = SKIRT
    # largest first
    assert _found(outfit) == [("skirt", (30, 90, 90, 150), 3600), ("upper", (30, 40, 90, 90), 3000)]


def test_fragments_below_min_fraction_are_dropped_and_a_big_region_kept():
    labels = np.zeros((200, 120), np.uint8)  # 24000 px: min_fraction 0.005 = 120 px
    labels[20:60, 20:60] = UPPER  # 1600 px
    labels[100:110, 10:22] = UPPER  # 10 x 12 = 120 px: exactly the limit, kept
    labels[150:157, 10:27] = UPPER  # 7 x 17 = 119 px: a fragment
    labels[100:102, 100:102] = UPPER  # 4-px specks
    labels[180:182, 60:62] = UPPER
    labels[5:7, 110:112] = SKIRT  # a group that is only a speck makes no garment
    assert _found(labels) == [("upper", (20, 20, 60, 60), 1600), ("upper", (10, 100, 22, 110), 120)]
    assert _found(labels, min_fraction=0.1) == []  # 2400 px needed
    assert len(_found(labels, min_fraction=0)) == 6  # 5 upper regions (far apart) and the skirt speck


@pytest.mark.parametrize("split_by, width", [(BG, 1), (BG, 2), (SKIN, 2)])
def test_an_upper_garment_cut_by_a_thin_vertical_line_is_one_garment(split_by, width):
    labels = np.zeros((200, 120), np.uint8)  # diagonal 233 px: merge_radius 0.02 = 4.7 px
    labels[40:100, 20:100] = UPPER
    labels[30:110, 60:60 + width] = split_by  # a strap or an arm across the whole top
    area = 60 * (80 - width)
    assert _found(labels) == [("upper", (20, 40, 100, 100), area)]
    assert _found(labels, merge_radius=0) == [  # the line really cuts it: plain 8-connected regions
        ("upper", (20, 40, 60, 100), 60 * 40),
        ("upper", (60 + width, 40, 100, 100), 60 * (40 - width)),
    ]


def test_two_far_apart_regions_of_a_non_pair_group_are_two_garments():
    labels = np.zeros((200, 120), np.uint8)
    labels[20:80, 0:30] = UPPER  # 60 px apart
    labels[30:80, 90:120] = UPPER
    found = garments_from_labels(labels, NAMES, GARMENTS)
    assert [(g.label, g.box, g.area) for g in found] == [
        ("upper", (0, 20, 30, 80), 1800),
        ("upper", (90, 30, 120, 80), 1500),
    ]
    assert not (found[0].mask & found[1].mask).any()
    assert (found[0].mask | found[1].mask).sum() == 3300


def test_the_join_distance_at_the_default_radius_on_a_photo_sized_map():
    # 830 x 550: diagonal 995.7 px, merge_radius 0.02 -> 19.9 px (the docstring: <= 20 joined, >= 24 not)
    def pieces(gap: int) -> int:
        labels = np.zeros((830, 550), np.uint8)
        labels[300:500, 100:200] = UPPER
        labels[300:500, 200 + gap:300 + gap] = UPPER
        return len(garments_from_labels(labels, NAMES, GARMENTS))

    assert [pieces(gap) for gap in (1, 10, 20, 24, 40)] == [1, 1, 1, 2, 2]


def test_the_score_is_the_mean_probability_of_the_group_over_the_garment_pixels():
    labels = np.zeros((4, 6), np.uint8)
    labels[0:2, 0:3] = UPPER
    labels[3, 4:6] = SKIRT
    probs = np.full((len(NAMES), 4, 6), 0.05, np.float32)
    probs[UPPER] = 0.0  # off the garment: would pull the mean down if it leaked in
    probs[UPPER, 0:2, 0:3] = [[0.9, 0.8, 0.7], [0.6, 0.5, 0.4]]  # mean (0.9 + ... + 0.4) / 6 = 3.9 / 6 = 0.65
    probs[SKIRT, 3, 4:6] = [0.2, 0.6]  # mean 0.4
    found = garments_from_labels(labels, NAMES, GARMENTS, probs=probs, min_fraction=0)
    assert [(g.label, g.box) for g in found] == [("upper", (0, 0, 3, 2)), ("skirt", (4, 3, 6, 4))]
    assert [g.score for g in found] == pytest.approx([0.65, 0.4])
    assert [g.score for g in garments_from_labels(labels, NAMES, GARMENTS, min_fraction=0)] == [1.0, 1.0]


def test_empty_one_pixel_and_non_garment_maps():
    assert garments_from_labels(np.zeros((0, 0), int), NAMES, GARMENTS) == []
    assert garments_from_labels(np.zeros((0, 5), int), NAMES, GARMENTS) == []
    assert garments_from_labels(np.zeros((1, 1), int), NAMES, GARMENTS) == []
    (one,) = garments_from_labels(np.array([[UPPER]]), NAMES, GARMENTS)
    assert (one.label, one.box, one.area, one.fraction) == ("upper", (0, 0, 1, 1), 1, 1.0)
    assert one.mask.tolist() == [[True]] and one.score == 1.0
    skin_and_hair = np.array([[BG, SKIN], [2, 2]])
    assert garments_from_labels(skin_and_hair, NAMES, GARMENTS) == []


@pytest.mark.parametrize("labels, kwargs, message", [
    (np.zeros((2, 2, 2), int), {}, "expected a 2-D"),
    (np.zeros((2, 2), float), {}, "integer map"),
    (np.full((2, 2), len(NAMES)), {}, "expected group indices in 0..7"),
    (np.full((2, 2), -1), {}, "expected group indices"),
    (np.zeros((2, 2), int), {"garment_groups": ["cape"]}, "'cape'"),
    (np.zeros((2, 2), int), {"probs": np.zeros((3, 2, 2))}, "probs: expected shape"),
    (np.zeros((2, 2), int), {"min_fraction": 2}, "min_fraction"),
    (np.zeros((2, 2), int), {"merge_radius": -1}, "merge_radius"),
])  # fmt: skip
def test_bad_label_maps_and_settings_are_garment_errors(labels, kwargs, message):
    groups = kwargs.pop("garment_groups", GARMENTS)
    with pytest.raises(GarmentError, match=message) as info:
        garments_from_labels(labels, NAMES, groups, **kwargs)
    assert isinstance(info.value, FashionlensError) and isinstance(info.value, ValueError)


def test_box_iou_with_exclusive_corners():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0  # touching: no shared pixel
    assert box_iou((0, 0, 4, 4), (1, 1, 3, 3)) == 4 / 16
    assert box_iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0


# ---- COCO RLE ------------------------------------------------------------------------------------


def _coco(mask: np.ndarray) -> dict:
    return coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))


def test_a_hand_worked_rle():
    mask = np.array([[0, 1, 0],
                     [0, 1, 1],
                     [1, 1, 0]], bool)  # fmt: skip
    # column by column: 0 0 1 | 1 1 1 | 0 1 0 -> runs [2, 4, 1, 1, 1] (zeros first)
    # chars 48 + x: '2', '4', '1'; i = 3: 1 - counts[1] = -3 -> 5-bit group 29 (sign bit 0x10 set, nothing
    # more follows) -> chr(48 + 29) = 'M'; i = 4: 1 - counts[2] = 0 -> '0'
    assert encode_rle(mask) == {"size": [3, 3], "counts": "241M0"}
    assert decode_rle({"size": [3, 3], "counts": "241M0"}).tolist() == mask.tolist()
    assert decode_rle({"size": [3, 3], "counts": [2, 4, 1, 1, 1]}).tolist() == mask.tolist()  # uncompressed
    # a count of 40 = 0b1_01000 takes two characters: 8 | 0x20 (more) -> 'X', then 1 -> '1'
    assert encode_rle(np.zeros((1, 40), bool))["counts"] == "X1"
    assert encode_rle(np.ones((2, 2), bool))["counts"] == "04"  # a 0-run of length 0 first
    assert rle_area(encode_rle(mask)) == 5


def _masks(rng: np.random.Generator):
    for h, w in [(1, 1), (1, 37), (23, 1), (7, 9), (64, 48), (120, 80)]:
        yield np.zeros((h, w), bool)
        yield np.ones((h, w), bool)
        for density in (0.02, 0.5, 0.98):
            yield rng.random((h, w)) < density
        blob = np.zeros((h, w), bool)
        blob[h // 4:h - h // 5, w // 3:w - w // 6] = True
        yield blob
    yield np.zeros((0, 0), bool)
    yield np.zeros((0, 4), bool)
    photo = np.zeros((830, 550), bool)  # photo size: long runs (multi-character counts, big deltas)
    photo[100:700, 150:420] = True
    photo[rng.random(photo.shape) < 0.01] ^= True
    yield photo


def test_rle_round_trip_on_random_masks():
    rng = np.random.default_rng(0)
    for mask in _masks(rng):
        rle = encode_rle(mask)
        back = decode_rle(rle)
        assert back.dtype == bool and back.shape == mask.shape and (back == mask).all()
        assert rle_area(rle) == mask.sum()
    assert (decode_rle(encode_rle(np.array([[0, 2], [7, 0]]))) == [[False, True], [True, False]]).all()


def test_rle_equals_pycocotools_both_ways():
    rng = np.random.default_rng(1)
    for mask in _masks(rng):
        ref = _coco(mask)
        mine = encode_rle(mask)
        assert mine["counts"] == ref["counts"].decode() and mine["size"] == [int(v) for v in ref["size"]]
        assert (decode_rle(ref) == mask).all()  # pycocotools' bytes counts
        if mask.size:  # pycocotools cannot decode an empty mask
            assert (coco_mask.decode({"size": mine["size"], "counts": mine["counts"].encode()}) == mask).all()
        assert rle_area(mine) == int(coco_mask.area(ref))


@pytest.mark.parametrize("rle, message", [
    ({"counts": "241M0"}, "missing 'size'"),
    ({"size": [3, 3]}, "missing 'counts'"),
    ("241M0", "expected a mapping"),
    ({"size": [3], "counts": "241M0"}, "expected \\[height, width\\]"),
    ({"size": [3, -3], "counts": "241M0"}, "non-negative integers"),
    ({"size": [3, 4], "counts": "241M0"}, "summing to 3 \\* 4 = 12 pixels, found 9"),
    ({"size": [3, 3], "counts": "24 1M0"}, "expected characters '0'..'o'.*position 2"),
    ({"size": [3, 3], "counts": "241M0é"}, "expected characters"),
    ({"size": [3, 3], "counts": "241Mp"}, "found b'p' at position 4"),
    ({"size": [3, 3], "counts": "241MX"}, "ends inside a count"),
    ({"size": [3, 3], "counts": [2, 4, -1, 1, 3]}, "non-negative run lengths"),
    ({"size": [3, 3], "counts": [2.0, 7.0]}, "list of integer run lengths"),
])  # fmt: skip
def test_bad_rle_is_an_rle_error_saying_what_was_expected(rle, message):
    with pytest.raises(RLEError, match=message) as info:
        decode_rle(rle)
    assert isinstance(info.value, FashionlensError) and isinstance(info.value, ValueError)


def test_encoding_a_mask_that_is_not_2d_is_an_rle_error():
    with pytest.raises(RLEError, match=r"expected a 2-D \(H, W\) mask, found shape \(2, 2, 2\)"):
        encode_rle(np.zeros((2, 2, 2), bool))


# ---- matching ------------------------------------------------------------------------------------


def _garment(label: str, box: tuple[int, int, int, int], shape=(200, 100)) -> Garment:
    mask = np.zeros(shape, bool)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = True
    return Garment(label, GARMENTS.index(label) if label in GARMENTS else -1, 1.0, box, mask, int(mask.sum()))


def test_a_hand_worked_matching_and_report():
    # a 200 x 100 photo: 2 % = 400 px
    truth = [
        _garment("upper", (10, 10, 60, 60)),  # 2500 px, 12.5 %
        _garment("skirt", (10, 100, 60, 190)),  # 4500 px, 22.5 %
        _garment("bag", (80, 80, 88, 88)),  # 64 px, 0.32 %: tiny, not required
    ]
    pred = [
        _garment("upper", (12, 10, 60, 60)),  # IoU 2400 / 2500 = 0.96 with the true upper: right
        _garment("dress", (10, 100, 60, 190)),  # the skirt's very box, the wrong label
        _garment("hat", (0, 0, 10, 10)),  # nothing there
    ]
    photo = match_garments(pred, truth)
    assert {k: photo[k] for k in ("truth", "found", "returned", "real")} == {
        "truth": 2, "found": 1, "returned": 3, "real": 1}  # fmt: skip
    assert photo["per_label"]["skirt"] == {"truth": 1, "found": 0, "returned": 0, "real": 0}
    assert photo["per_label"]["bag"] == {"truth": 0, "found": 0, "returned": 0, "real": 0}
    report = garment_detection_report([photo])
    assert (report["recall"], report["precision"]) == (0.5, pytest.approx(1 / 3))
    # a second photo finds only its tiny bag: no garment required, one real prediction
    second = match_garments([_garment("bag", (80, 80, 88, 88))], [_garment("bag", (80, 80, 88, 88))])
    report = garment_detection_report([photo, second])
    assert (report["truth"], report["found"], report["returned"], report["real"]) == (2, 1, 4, 2)
    assert (report["recall"], report["precision"]) == (0.5, 0.5)
    per = report["per_label"]
    assert list(per) == ["upper", "skirt", "bag", "dress", "hat"]
    assert (per["upper"]["recall"], per["upper"]["precision"]) == (1.0, 1.0)
    assert per["skirt"]["recall"] == 0.0 and math.isnan(per["skirt"]["precision"])
    assert math.isnan(per["bag"]["recall"]) and per["bag"]["precision"] == 1.0
    assert (per["dress"]["precision"], per["dress"]["returned"], per["hat"]["truth"]) == (0.0, 1, 0)


def test_matching_is_one_to_one_greedy_by_iou_and_needs_the_threshold():
    truth = [_garment("upper", (0, 0, 10, 10)), _garment("upper", (10, 0, 20, 10))]
    p1 = _garment("upper", (3, 0, 15, 10))  # IoU 70 / 150 = 0.47 with the first, 50 / 170 = 0.29 the second
    p2 = _garment("upper", (0, 0, 9, 10))  # IoU 0.9 with the first
    # highest pair first: p2 takes the first, p1 the second (matching p1 first would leave p2 unmatched)
    # (min_fraction=0: these 100-px garments are 0.5 % of the photo)
    greedy = match_garments([p1, p2], truth, iou=0.25, min_fraction=0)
    assert (greedy["truth"], greedy["found"], greedy["real"]) == (2, 2, 2)
    strict = match_garments([p1, p2], truth, iou=0.5, min_fraction=0)  # 0.47 and 0.29 are below 0.5
    assert (strict["found"], strict["real"]) == (1, 1)
    assert match_garments([p1, p2], truth, iou=0.25)["truth"] == 0  # below the default 2 %
    twice = match_garments([p2, _garment("upper", (0, 0, 10, 10))], truth[:1], min_fraction=0)
    assert (twice["found"], twice["real"], twice["returned"]) == (1, 1, 2)  # a duplicate is not real


def test_an_empty_report_is_nan_and_fixed_labels_keep_zero_rows():
    report = garment_detection_report([])
    assert math.isnan(report["recall"]) and math.isnan(report["precision"]) and report["per_label"] == {}
    photo = match_garments([_garment("upper", (0, 0, 50, 50))], [_garment("upper", (0, 0, 50, 50))])
    report = garment_detection_report([photo], labels=["shoes", "upper"])
    assert list(report["per_label"]) == ["shoes", "upper"]
    shoes, upper = report["per_label"]["shoes"], report["per_label"]["upper"]
    assert math.isnan(shoes["recall"]) and shoes["truth"] == 0 and upper["recall"] == 1.0
    with pytest.raises(GarmentError, match="per_label"):
        garment_detection_report([{"truth": 1}])

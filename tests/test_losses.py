"""Loss terms against hand-worked values."""

from __future__ import annotations

import math

import pytest
import torch

from fashionlens.losses import (
    asymmetric_loss,
    compute_losses,
    focal_loss,
    gaussian_targets,
    heatmap_loss,
    pos_weight_from_targets,
    weighted_bce,
)


def test_category_label_smoothing_matches_the_hand_worked_value():
    # logits (2, 0), target 0, smoothing 0.2 -> target distribution (0.9, 0.1)
    lse = math.log(math.exp(2.0) + 1.0)
    expected = -(0.9 * (2.0 - lse) + 0.1 * (0.0 - lse))
    out = {"category": torch.tensor([[2.0, 0.0]])}
    batch = {"category": torch.tensor([0])}
    assert compute_losses(out, batch, label_smoothing=0.2)["category"].item() == pytest.approx(
        expected, abs=1e-6
    )
    assert compute_losses(out, batch)["category"].item() == pytest.approx(lse - 2.0, abs=1e-6)


# -- multi-label losses (loss.multilabel) -------------------------------------------------------------

# logits of three entries: a positive at 0 (p = 0.5), a negative at 0, a negative at -3 (p = 0.047)
LOGITS = torch.tensor([[0.0, 0.0, -3.0]])
TARGETS = torch.tensor([[1.0, 0.0, 0.0]])


def test_asl_matches_the_hand_worked_value():
    # positive, gamma_pos 0: -log 0.5. Negative at p = 0.5: shifted p_m = 0.45, so the cost is
    # -0.45^4 log(0.55). Negative at p = 0.047 <= clip 0.05: p_m = 0, no cost.
    expected = (math.log(2) - 0.45**4 * math.log(0.55) + 0.0) / 3
    assert asymmetric_loss(LOGITS, TARGETS).item() == pytest.approx(expected, abs=1e-6)
    got = compute_losses({"labels": LOGITS}, {"labels": TARGETS}, multilabel={"kind": "asl"})["labels"]
    assert got.item() == pytest.approx(expected, abs=1e-6)
    # gamma_pos 1 weights the positive by (1 - 0.5)
    expected_pos1 = (0.5 * math.log(2) - 0.45**4 * math.log(0.55)) / 3
    assert asymmetric_loss(LOGITS, TARGETS, gamma_pos=1.0).item() == pytest.approx(expected_pos1, abs=1e-6)


@pytest.mark.parametrize("detach", [True, False])
def test_asl_gradient_with_and_without_the_focusing_weights(detach):
    x = torch.zeros(1, 1, requires_grad=True)  # one negative at p = 0.5
    asymmetric_loss(x, torch.zeros(1, 1), detach_focus=detach).backward()
    # d/dx of -w log(1.05 - p) with w = (p - 0.05)^4 and dp/dx = 0.25:
    through_log = 0.45**4 * 0.25 / 0.55
    through_weight = 4 * 0.45**3 * 0.25 * -math.log(0.55)
    expected = through_log if detach else through_log + through_weight
    assert x.grad.item() == pytest.approx(expected, abs=1e-6)


def test_asl_without_focusing_or_shift_is_bce():
    x, t = torch.randn(4, 6, generator=torch.Generator().manual_seed(0)), (torch.rand(4, 6) > 0.5).float()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(x, t)
    assert asymmetric_loss(x, t, gamma_neg=0.0, gamma_pos=0.0, clip=0.0).item() == pytest.approx(
        bce.item(), abs=1e-5
    )


def test_focal_loss_hand_worked_and_against_torchvision():
    from torchvision.ops import sigmoid_focal_loss

    # positive at p = 0.5: log 2 * 0.5^2; negative at p = 0.5: the same; negative at -3: p^2 * -log(1 - p)
    p3 = 1 / (1 + math.exp(3))
    expected = (2 * 0.25 * math.log(2) + p3**2 * -math.log(1 - p3)) / 3
    assert focal_loss(LOGITS, TARGETS).item() == pytest.approx(expected, abs=1e-6)
    x, t = torch.randn(5, 7, generator=torch.Generator().manual_seed(1)) * 3, (torch.rand(5, 7) > 0.7).float()
    for alpha in (None, 0.25):
        ref = sigmoid_focal_loss(x, t, alpha=-1 if alpha is None else alpha, gamma=2.0, reduction="mean")
        got = compute_losses({"labels": x}, {"labels": t}, multilabel={"kind": "focal", "alpha": alpha})[
            "labels"
        ]
        assert got.item() == pytest.approx(ref.item(), rel=1e-5)


def test_attribute_losses_skip_unknown_entries():
    x = torch.tensor([[0.0, 5.0], [0.0, 0.0]])
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    mask = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # the second column is unknown
    batch = {"attributes": t, "attributes_mask": mask}
    got = compute_losses({"attributes": x}, batch, multilabel={"kind": "asl", "gamma_neg": 4, "clip": 0.05})
    assert got["attributes"].item() == pytest.approx((math.log(2) - 0.45**4 * math.log(0.55)) / 2, abs=1e-6)
    # bce keeps the per-attribute positive weights: the positive counts 3x
    bce = compute_losses({"attributes": x}, batch, pos_weight=torch.tensor([3.0, 1.0]))["attributes"]
    assert bce.item() == pytest.approx((3 * math.log(2) + math.log(2)) / 2, abs=1e-6)


def test_multilabel_loss_settings_are_checked_by_the_config():
    from fashionlens.losses import MULTILABEL_DEFAULTS
    from fashionlens.train.config import DEFAULTS, ConfigError, load_config

    assert DEFAULTS["loss"]["multilabel"] == MULTILABEL_DEFAULTS
    cfg = load_config(None, ["loss.multilabel.kind=asl", "loss.multilabel.gamma_neg=2"])
    assert cfg["loss"]["multilabel"]["kind"] == "asl" and cfg["loss"]["multilabel"]["clip"] == 0.05
    with pytest.raises(
        ConfigError, match="loss.multilabel.kind must be one of bce, asl, focal, got 'softmax'"
    ):
        load_config(None, ["loss.multilabel.kind=softmax"])
    with pytest.raises(ConfigError, match="loss.multilabel.clip must be in"):
        load_config(None, ["loss.multilabel.clip=1.5"])
    with pytest.raises(ConfigError, match="unknown config key"):
        load_config(None, ["loss.multilabel.gamma_negative=2"])


# ----------------------------------------------------------------------------- weighted BCE
# BCE with logits and pos_weight w: -(w * y * log sigmoid(x) + (1 - y) * log(1 - sigmoid(x))).
# x = 0: sigmoid 1/2; x = ln 3: sigmoid 3/4.  Entries (row, attribute):
#   (0,0) x 0,    y 1, w 2 -> 2 ln 2      mask 1
#   (0,1) x 0,    y 0, w 5 -> ln 2        mask 1   (pos_weight never touches negatives)
#   (0,2) x ln 3, y 1, w 5 -> 5 ln(4/3)   mask 0   (unknown: must not count)
#   (1,0) x 0,    y 0     -> ln 2         mask 0
#   (1,1) x ln 3, y 1, w 5 -> 5 ln(4/3)   mask 1
#   (1,2) x 0,    y 0     -> ln 2         mask 0
# masked mean = (2 ln 2 + ln 2 + 5 ln(4/3)) / 3 known entries (not / 2 rows, not / 6 entries).
LN3 = math.log(3.0)
BCE_LOGITS = torch.tensor([[0.0, 0.0, LN3], [0.0, LN3, 0.0]])
BCE_TARGETS = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
BCE_MASK = torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
BCE_POS_WEIGHT = torch.tensor([2.0, 5.0, 5.0])


def test_weighted_bce_averages_over_known_entries_only():
    expected = (3 * math.log(2.0) + 5 * math.log(4 / 3)) / 3
    got = weighted_bce(BCE_LOGITS, BCE_TARGETS, BCE_MASK, BCE_POS_WEIGHT)
    assert got.item() == pytest.approx(expected, abs=1e-6)


def test_weighted_bce_without_mask_or_weights():
    # no mask: the mean over all 6 entries; the two masked-out positives now count too
    all_six = (2 * math.log(2.0) + 3 * math.log(2.0) + 5 * math.log(4 / 3) + 5 * math.log(4 / 3)) / 6
    assert weighted_bce(BCE_LOGITS, BCE_TARGETS, None, BCE_POS_WEIGHT).item() == pytest.approx(
        all_six, abs=1e-6
    )
    # no pos_weight: plain BCE over the 3 known entries: ln 2 + ln 2 + ln(4/3)
    plain = (2 * math.log(2.0) + math.log(4 / 3)) / 3
    assert weighted_bce(BCE_LOGITS, BCE_TARGETS, BCE_MASK, None).item() == pytest.approx(plain, abs=1e-6)


def test_weighted_bce_with_nothing_known_is_zero_not_nan():
    got = weighted_bce(BCE_LOGITS, BCE_TARGETS, torch.zeros(2, 3), BCE_POS_WEIGHT)
    assert got.item() == 0.0


def test_compute_losses_passes_the_attribute_mask_and_weights_on():
    out = {"attributes": BCE_LOGITS}
    batch = {"attributes": BCE_TARGETS, "attributes_mask": BCE_MASK}
    expected = (3 * math.log(2.0) + 5 * math.log(4 / 3)) / 3
    assert compute_losses(out, batch, pos_weight=BCE_POS_WEIGHT)["attributes"].item() == pytest.approx(
        expected, abs=1e-6
    )


# ----------------------------------------------------------------------------- pos_weight_from_targets


def test_pos_weight_is_negatives_over_positives_clipped():
    targets = torch.tensor([[1, 0, 1, 1],
                            [0, 0, 1, 1],
                            [0, 0, 1, 0],
                            [0, 0, 1, 0],
                            [0, 0, 1, 0]])  # fmt: skip
    # attribute 0: 1 positive, 4 negatives -> 4
    # attribute 1: no positive, 5 negatives -> 5 / max(0, 1) = 5
    # attribute 2: all positive -> 0 / 5 = 0, raised to the floor 1
    # attribute 3: 2 positives, 3 negatives -> 1.5
    assert pos_weight_from_targets(targets).tolist() == pytest.approx([4.0, 5.0, 1.0, 1.5])
    assert pos_weight_from_targets(targets, max_weight=4.5).tolist() == pytest.approx([4.0, 4.5, 1.0, 1.5])


def test_pos_weight_counts_only_known_entries():
    targets = torch.tensor([[1, 0], [0, 1], [0, 0], [0, 0], [0, 0]])
    mask = torch.tensor([[1, 1], [1, 1], [0, 1], [0, 0], [1, 0]])
    # attribute 0: known rows 0, 1, 4: 1 positive, 2 negatives -> 2 (4 without the mask)
    # attribute 1: known rows 0-2: 1 positive, 2 negatives -> 2 (4 without the mask)
    assert pos_weight_from_targets(targets, mask).tolist() == pytest.approx([2.0, 2.0])
    assert pos_weight_from_targets(targets).tolist() == pytest.approx([4.0, 4.0])


# ----------------------------------------------------------------------------- heatmap loss


def test_gaussian_target_values_by_hand():
    # landmark at (0.25, 0.25) of a 2x2 map = the centre of pixel (0, 0); sigma 1:
    # pixel (0,0) distance 0 -> 1; (0,1) and (1,0) distance 1 -> e^-1/2; (1,1) distance^2 2 -> e^-1
    t = gaussian_targets(torch.tensor([[[0.25, 0.25]]]), (2, 2), sigma=1.0)[0, 0]
    e = math.exp
    assert t.tolist() == [pytest.approx([1.0, e(-0.5)]), pytest.approx([e(-0.5), e(-1.0)])]
    # x is the column, y the row: (0.75, 0.25) peaks at row 0, column 1
    t = gaussian_targets(torch.tensor([[[0.75, 0.25]]]), (2, 2), sigma=1.0)[0, 0]
    assert t[0, 1].item() == pytest.approx(1.0) and t[1, 0].item() == pytest.approx(e(-1.0))


def test_heatmap_loss_counts_visible_landmarks_only():
    e = math.exp
    # every landmark at the centre of pixel (0, 0) of a 2x2 map, sigma 1: target [[1, a], [a, b]]
    a, b = e(-0.5), e(-1.0)
    landmarks = torch.full((2, 2, 2), 0.25)
    pred = torch.zeros(2, 2, 2, 2)
    pred[0, 1] = 100.0  # a wild prediction for an invisible landmark: must not count
    pred[1, 0] = 1.0
    visible = torch.tensor([[1, 0], [1, 1]])
    zeros_mse = (1 + 2 * a**2 + b**2) / 4  # pred 0 vs target
    ones_mse = (0 + 2 * (1 - a) ** 2 + (1 - b) ** 2) / 4  # pred 1 vs target
    expected = (zeros_mse + ones_mse + zeros_mse) / 3  # mean over the 3 visible maps
    got = heatmap_loss(pred, landmarks, visible, sigma=1.0)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    batch = {"landmarks": landmarks, "landmark_visible": visible}
    assert compute_losses({"heatmaps": pred}, batch, heatmap_sigma=1.0)["landmarks"].item() == pytest.approx(
        expected, rel=1e-6
    )


def test_heatmap_loss_with_no_visible_landmark_is_zero():
    pred = torch.full((1, 2, 2, 2), 7.0)
    assert heatmap_loss(pred, torch.full((1, 2, 2), 0.5), torch.zeros(1, 2), sigma=1.0).item() == 0.0

"""Loss terms against hand-worked values."""

from __future__ import annotations

import math

import pytest
import torch

from fashionlens.losses import asymmetric_loss, compute_losses, focal_loss


def test_category_label_smoothing_matches_the_hand_worked_value():
    # logits (2, 0), target 0, smoothing 0.2 -> target distribution (0.9, 0.1)
    lse = math.log(math.exp(2.0) + 1.0)
    expected = -(0.9 * (2.0 - lse) + 0.1 * (0.0 - lse))
    out = {"category": torch.tensor([[2.0, 0.0]])}
    batch = {"category": torch.tensor([0])}
    assert compute_losses(out, batch, label_smoothing=0.2)["category"].item() == pytest.approx(expected, abs=1e-6)
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
    assert asymmetric_loss(x, t, gamma_neg=0.0, gamma_pos=0.0, clip=0.0).item() == pytest.approx(bce.item(), abs=1e-5)


def test_focal_loss_hand_worked_and_against_torchvision():
    from torchvision.ops import sigmoid_focal_loss

    # positive at p = 0.5: log 2 * 0.5^2; negative at p = 0.5: the same; negative at -3: p^2 * -log(1 - p)
    p3 = 1 / (1 + math.exp(3))
    expected = (2 * 0.25 * math.log(2) + p3**2 * -math.log(1 - p3)) / 3
    assert focal_loss(LOGITS, TARGETS).item() == pytest.approx(expected, abs=1e-6)
    x, t = torch.randn(5, 7, generator=torch.Generator().manual_seed(1)) * 3, (torch.rand(5, 7) > 0.7).float()
    for alpha in (None, 0.25):
        ref = sigmoid_focal_loss(x, t, alpha=-1 if alpha is None else alpha, gamma=2.0, reduction="mean")
        got = compute_losses({"labels": x}, {"labels": t}, multilabel={"kind": "focal", "alpha": alpha})["labels"]
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
    with pytest.raises(ConfigError, match="loss.multilabel.kind must be one of bce, asl, focal, got 'softmax'"):
        load_config(None, ["loss.multilabel.kind=softmax"])
    with pytest.raises(ConfigError, match="loss.multilabel.clip must be in"):
        load_config(None, ["loss.multilabel.clip=1.5"])
    with pytest.raises(ConfigError, match="unknown config key"):
        load_config(None, ["loss.multilabel.gamma_negative=2"])

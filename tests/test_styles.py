"""Style labels: reading them beside CCP's photos, the agreement of two labellings, the styles head
from data to every output (table, JSON, CSV, Parquet), and the labelling loop with a styles model."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import scipy.io
import torch
from PIL import Image
from typer.testing import CliRunner

from conftest import shared_path
from fashionlens.cli import app
from fashionlens.data.errors import DataFormatError
from fashionlens.data.multilabel import LabelledSet, Sample, select_top_labels
from fashionlens.data.styles import (
    agreement,
    annotator_scores,
    cohen_kappa,
    find_styles_file,
    read_styles,
    style_targets,
)
from fashionlens.metrics import multilabel_report

runner = CliRunner()
STYLES = ["Casual", "Romantic", "Retro", "Modern"]


def _set(rows: dict[str, tuple[str, ...]], root: Path = Path("/p")) -> LabelledSet:
    return LabelledSet(
        [Sample(root / name, labels, labels[0]) for name, labels in rows.items()], list(STYLES), root
    )


def test_cohen_kappa_matches_sklearn_and_a_hand_example():
    from sklearn.metrics import cohen_kappa_score

    # p_o = 3/4; p_e = P(x) P'(x) + P(y) P'(y) = 1/2 * 1/4 + 1/2 * 3/4 = 1/2 -> (3/4 - 1/2) / (1/2) = 0.5
    assert cohen_kappa(["x", "x", "y", "y"], ["x", "y", "y", "y"]) == pytest.approx(0.5)
    rng = np.random.default_rng(0)
    a, b = rng.choice(list("abcd"), 60).tolist(), rng.choice(list("abcd"), 60).tolist()
    b[:30] = a[:30]
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))
    with pytest.raises(ValueError, match="equally long"):
        cohen_kappa(["a"], [])


def test_agreement_by_hand():
    first = _set(
        {
            "1.jpg": ("Casual", "Retro"),
            "2.jpg": ("Modern",),
            "3.jpg": ("Retro", "Romantic"),
            "4.jpg": ("Casual",),
        }
    )
    second = _set(
        {
            "1.jpg": ("Retro",),
            "2.jpg": ("Modern", "Casual"),
            "3.jpg": ("Casual", "Romantic"),
            "9.jpg": ("Casual",),
        }
    )
    got = agreement(first, second)  # the three shared photos
    assert got["photos"] == 3
    assert got["main_same"] == pytest.approx(1 / 3)  # only photo 2
    # Retro in {Casual, Retro}; Modern in {Modern}; Casual not in {Retro, Romantic}
    assert got["top1_any"] == pytest.approx(2 / 3)
    # photo 3: Romantic, the second pass's first sub, is a first-pass label
    assert got["top2_any"] == pytest.approx(1.0)
    # Jaccard: {C,R} vs {R} 1/2; {M} vs {M,C} 1/2; {R,Ro} vs {C,Ro} 1/3
    assert got["jaccard"] == pytest.approx((1 / 2 + 1 / 2 + 1 / 3) / 3)
    with pytest.raises(DataFormatError, match="share no photo"):
        agreement(first, _set({"8.jpg": ("Casual",)}))


def test_annotator_scores_rank_main_then_subs_and_score_like_a_model():
    first = _set({"1.jpg": ("Casual", "Retro"), "2.jpg": ("Modern",), "3.jpg": ("Retro", "Romantic")})
    second = _set({"1.jpg": ("Retro", "Modern"), "2.jpg": ("Modern",), "3.jpg": ("Casual", "Romantic")})
    photos = [s.path for s in first.samples] + [Path("/p/none.jpg")]
    scores = annotator_scores(second, photos, STYLES)
    assert scores[0].tolist() == [0.0, 0.0, 1.0, 0.9]  # Retro (main) then Modern
    assert np.isnan(scores[3]).all()  # not labelled by the second pass
    report = multilabel_report(scores[:3], first.targets(), STYLES)
    assert report["topk"]["top1_any"] == pytest.approx(agreement(first, second)["top1_any"])
    # a top-n subset: labels outside it are ignored
    assert annotator_scores(second, photos[:1], ["Casual", "Modern"])[0].tolist() == [0.0, 0.9]


def test_style_targets_main_sub_and_unknown(tmp_path):
    styles = _set({"1.jpg": ("Casual", "Retro"), "2.jpg": ("Modern",)}, tmp_path)
    targets, mask = style_targets(
        [tmp_path / "2.jpg", tmp_path / "1.jpg", tmp_path / "7.jpg"], styles, sub_target=0.5
    )
    assert targets.tolist() == [[0, 0, 0, 1], [1, 0, 0.5, 0], [0, 0, 0, 0]]
    assert mask.tolist() == [[1] * 4, [1] * 4, [0] * 4]  # photo 7 has no style row: unknown, not "no style"
    with pytest.raises(ValueError, match="style_sub_target"):
        style_targets([], styles, sub_target=0.0)


def test_find_styles_file(tmp_path):
    assert find_styles_file(tmp_path, None) is None and find_styles_file(tmp_path, "auto") is None
    (tmp_path / "styles.csv").write_text("image,main,labels\n")
    assert find_styles_file(tmp_path, "auto") == tmp_path / "styles.csv"
    assert find_styles_file(tmp_path, "styles.csv") == tmp_path / "styles.csv"  # relative to the root
    with pytest.raises(DataFormatError, match="style file not found"):
        find_styles_file(tmp_path, "nope.csv")


# ---------------------------------------------------------------------------------- the real labels


def test_ccp_styles_read_with_the_project_reader():
    ccp = shared_path("ccp")
    if not (ccp / "styles.csv").is_file():
        pytest.skip(f"no CCP style labels at {ccp} (../shared/data/ccp/styles.csv)")
    first = read_styles(ccp / "styles.csv")
    assert len(first) == 1574 and len(first.label_names) == 23 and first.label_names[0] == "Casual"
    assert all(s.main == s.labels[0] and 1 <= len(s.labels) <= 4 for s in first.samples)
    photos = {p.stem for p in (ccp / "photos").glob("*.jpg")}
    assert {s.path.stem for s in first.samples} == photos  # every CCP photo here has styles
    top5 = select_top_labels(first, 5)
    # the 5 main styles, vocabulary order
    assert top5.label_names == ["Casual", "Retro", "Classic", "Modern", "Glamorous"]
    second = read_styles(ccp / "styles.second-pass.csv", label_list=ccp / "styles.txt")
    got = agreement(first, second)
    # ../shared/docs/styles.md reports 69.6 % / 0.665 / 90.7 % on 270 photos (some withheld); here 207
    assert got["photos"] == 207
    assert 0.6 < got["main_same"] < 0.8 and 0.55 < got["main_kappa"] < 0.8 and 0.85 < got["top1_any"] < 0.96


def test_data_check_and_stats_of_the_ccp_styles():
    ccp = shared_path("ccp")
    if not (ccp / "styles.csv").is_file():
        pytest.skip(f"no CCP style labels at {ccp}")
    result = runner.invoke(
        app, ["data", "check", str(ccp / "styles.csv"), "--label-list", str(ccp / "styles.txt")]
    )
    assert result.exit_code == 0 and "0 errors" in result.output, result.output
    result = runner.invoke(
        app, ["data", "stats", str(ccp / "styles.csv"), "--label-list", str(ccp / "styles.txt")]
    )
    assert result.exit_code == 0, result.output
    casual = next(line for line in result.output.splitlines() if line.startswith("Casual "))
    images, _, main, sub = casual.split()[1:]
    assert int(images) == int(main) + int(sub) and int(main) == sum(
        s.main == "Casual" for s in read_styles(ccp / "styles.csv").samples
    )


# ------------------------------------------------------------------- the styles head, end to end


def _tiny_ccp_with_styles(root: Path, n: int = 16) -> Path:
    """n photos of CCP's image-level kind (tags bag / hat) with a styles.csv: red photos Casual, blue ones
    Retro."""
    root.mkdir(parents=True)
    names = np.empty((1, 5), dtype=object)
    names[0, :] = ["null", "bag", "hair", "hat", "skin"]
    scipy.io.savemat(root / "label_list.mat", {"label_list": names})
    (root / "annotations" / "image-level").mkdir(parents=True)
    (root / "photos").mkdir()
    rows = ["image,main,labels"]
    for i in range(n):
        stem = f"{i + 1:04d}"
        red = i % 2 == 0
        Image.new("RGB", (40, 56), (210, 30, 30) if red else (30, 30, 210)).save(
            root / "photos" / f"{stem}.jpg"
        )
        scipy.io.savemat(
            root / "annotations" / "image-level" / f"{stem}.mat",
            {"tags": np.array([[1 if red else 3]], np.uint8)},
        )
        if i != n - 1:  # the last photo has no style row
            rows.append(
                f"photos/{stem}.jpg,{'Casual' if red else 'Retro'},{'Casual|Modern' if red else 'Retro'}"
            )
    (root / "styles.csv").write_text("\n".join(rows) + "\n")
    (root / "styles.txt").write_text("\n".join(STYLES) + "\n")
    return root


@pytest.fixture(scope="module")
def styles_model(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("styles")
    ccp = _tiny_ccp_with_styles(root / "ccp")
    run = root / "run"
    result = runner.invoke(app, [
        "train", "configs/ccp_heads_lite0.yaml", "--data", str(ccp), "--out", str(run), "data.styles=auto",
        "model.heads.styles={kind: linear, pool: avg}", "model.backbone=test_tiny", "model.pretrained=false",
        "optim.freeze_stages=0", "optim.freeze_bn=false", "data.input_size=[32,32]", "data.batch_size=4",
        "data.num_workers=0", "data.prescan=false", "trainer.max_epochs=2", "trainer.accelerator=cpu",
        "data.split_fractions=[0.5,0.25,0.25]", "optim.head_lr=0.05",
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    return run / "model.safetensors", ccp


def test_styles_head_trains_and_evaluates(styles_model, tmp_path):
    model, ccp = styles_model
    from fashionlens.checkpoint import read_info

    info = read_info(model)
    assert info.label_names["styles"] == STYLES and "styles" in info.spec["heads"]
    assert info.training.data["styles"] == "auto"  # evaluate finds the root's styles.csv again
    result = runner.invoke(app, ["evaluate", str(model), "--data", str(ccp), "--out", str(tmp_path / "ev"),
                                 "--split", "train", "--accelerator", "cpu"])  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "ev" / "metrics.json").read_text())["models"]["ccp_heads_linear_lite0"]
    # the training photos with a style row (the photo without one is not scored for styles)
    assert report["styles"]["num_images"] == report["labels"]["num_images"] - int(
        any(p.endswith("0016.jpg") for p in (tmp_path / "ev" / "predictions.csv").read_text().split())
    )
    assert report["styles"]["num_labels"] == 4 and set(report["styles"]["topk"]) >= {
        "top1_any",
        "top2_all",
        "top3_any",
    }
    assert "## Styles (seed B protocol" in (tmp_path / "ev" / "report.md").read_text()
    assert (tmp_path / "ev" / "style_correlation.png").stat().st_size > 1000
    assert (tmp_path / "ev" / "per_style_recall.png").stat().st_size > 1000


def test_styles_in_every_output_format(styles_model, tmp_path):
    model, ccp = styles_model
    photos = [str(p) for p in sorted((ccp / "photos").glob("*.jpg"))[:3]]
    from fashionlens.inference.predictor import load_model

    predictor = load_model(model, backend="torch")
    pred = predictor.predict(photos[:1], top_k=3)[0]
    assert pred.styles and pred.main_style == pred.styles[0].label  # the most likely style is the main one
    assert [s.score for s in pred.styles] == sorted((s.score for s in pred.styles), reverse=True)
    assert all(s.score >= pred.style_threshold for s in pred.styles[1:])
    every = predictor.predict(photos[:1], top_k=3, threshold=0.0)[0]
    assert len(every.styles) == 3 and every.style_threshold == 0.0  # --top-k N --threshold 0: N styles
    d = pred.to_dict()
    assert (
        d["main_style"] == pred.main_style
        and d["styles"][0]["label"] == pred.main_style
        and "style_threshold" in d
    )

    out = runner.invoke(app, ["predict", *photos, "--model", str(model), "--top-k", "2", "--threshold", "0",
                              "--format", "json", "--backend", "torch"])  # fmt: skip
    assert out.exit_code == 0, out.output
    records = json.loads(out.output[out.output.index("[") :])
    assert all(len(r["styles"]) == 2 and r["main_style"] == r["styles"][0]["label"] for r in records)
    out = runner.invoke(
        app, ["predict", *photos, "--model", str(model), "--format", "csv", "--backend", "torch"]
    )
    rows = list(csv.DictReader(io.StringIO(out.output[out.output.index("path,") :])))
    assert len(rows) == 3 and all(
        r["main_style"] in STYLES and r["styles"].startswith(r["main_style"] + ":") for r in rows
    )
    out = runner.invoke(app, ["predict", photos[0], "--model", str(model), "--backend", "torch"])
    assert "styles (main, then >=" in out.output
    from fashionlens.inference.output import predictions_table  # the Parquet rows of the Ray engine

    parquet = tmp_path / "p.parquet"
    pq.write_table(predictions_table(predictor.predict(photos, top_k=3)), parquet)
    table = pq.read_table(parquet).to_pylist()
    assert all(r["main_style"] == r["styles"][0]["label"] for r in table)


def test_styles_survive_onnx_export(styles_model, tmp_path):
    model, ccp = styles_model
    from fashionlens.inference.export import export_onnx
    from fashionlens.inference.predictor import load_model

    onnx = export_onnx(model, tmp_path / "m.onnx")
    photo = str(sorted((ccp / "photos").glob("*.jpg"))[0])
    a = load_model(model, backend="torch").predict([photo], top_k=4, threshold=0.0)[0]
    b = load_model(onnx).predict([photo], top_k=4, threshold=0.0)[0]
    assert [s.label for s in a.styles] == [s.label for s in b.styles]
    assert np.allclose([s.score for s in a.styles], [s.score for s in b.styles], atol=1e-4)


def test_label_page_preselects_the_models_styles(styles_model, tmp_path):
    model, ccp = styles_model
    from fashionlens.inference.predictor import load_model
    from fashionlens.labelling.suggest import suggest, uncertain_first

    predictor = load_model(model, backend="torch")
    photos = sorted((ccp / "photos").glob("*.jpg"))[:6]
    got = suggest(predictor, photos, STYLES, progress=False)
    assert got.head == "styles" and got.matched == STYLES and got.threshold == predictor.style_threshold(None)
    for i, photo in enumerate(photos):
        pred = predictor.predict([str(photo)], top_k=4)[0]
        assert got.by_photo[i].main == pred.main_style  # the model's main style is pre-selected as main
        assert got.by_photo[i].labels == [s.label for s in pred.styles]
    order = uncertain_first(list(range(6)), got)
    assert [got.margin[i] for i in order] == sorted(got.margin.values())
    # the command: --model with the style vocabulary starts and says which head it uses
    from fashionlens.labelling.app import open_session

    (tmp_path / "photos").mkdir()
    for p in photos:
        (tmp_path / "photos" / p.name).write_bytes(p.read_bytes())
    session = open_session(
        tmp_path / "photos",
        ccp / "styles.txt",
        tmp_path / "styles.csv",
        model=str(model),
        order="uncertain",
        progress=False,
    )
    try:
        assert any("'styles' head for 4 of 4 labels" in n for n in session.notes)
        assert session.order[0] == min(
            session.suggestions.margin, key=lambda i: (session.suggestions.margin[i], i)
        )
    finally:
        session.close()


def test_colour_and_garment_attributes_are_told_apart_by_their_type(tmp_path):
    from fashionlens.checkpoint import ModelInfo, save_model
    from fashionlens.data.config import DataConfig
    from fashionlens.inference.predictor import load_model
    from fashionlens.model_header import Attributes, Calibration
    from fashionlens.models.fashion_net import FashionNet

    names = ["striped", "denim", "long-sleeve", "black", "white"]
    torch.manual_seed(0)
    net = FashionNet("test_tiny", heads={"attributes": {"num_classes": 5}})
    # fixed probabilities: striped 0.9, denim 0.6, long-sleeve 0.2, black 0.8, white 0.3
    with torch.no_grad():
        head = net.heads["attributes"]
        for p in head.parameters():
            p.zero_()
        last = [m for m in head.modules() if isinstance(m, torch.nn.Linear)][-1]
        last.bias.copy_(torch.logit(torch.tensor([0.9, 0.6, 0.2, 0.8, 0.3])))
    info = ModelInfo(
        net.spec,
        {"attributes": names},
        DataConfig(input_size=(32, 32)),
        calibration=Calibration(attribute_threshold=0.5),
        attributes=Attributes.for_names(names, [1, 2, 4, 6, 6]),
    )
    model = save_model(net, info, tmp_path / "m.safetensors")
    photo = tmp_path / "x.jpg"
    Image.new("RGB", (40, 40), (90, 90, 90)).save(photo)
    pred = load_model(model, backend="torch").predict([str(photo)], top_k=5)[0]
    # >= 0.5
    assert [(s.label, round(s.score, 3)) for s in pred.attributes] == [("striped", 0.9), ("denim", 0.6)]
    assert [s.label for s in pred.colours] == ["black"]
    every = load_model(model, backend="torch").predict([str(photo)], top_k=2, threshold=0.0)[0]
    assert [s.label for s in every.attributes] == ["striped", "denim"] and [
        s.label for s in every.colours
    ] == ["black", "white"]

"""``fashionlens evaluate``: model file(s) + data -> metrics.json, report.md, predictions.csv, plots."""

from __future__ import annotations

import csv
import dataclasses
import io
from pathlib import Path

import numpy as np
import torch

from fashionlens.checkpoint import load_model_file
from fashionlens.data.images import BadImageError
from fashionlens.evaluate.tables import (
    markdown_report,
    plot_correlation,
    plot_landmarks,
    plot_per_label_recall,
)
from fashionlens.fileio import atomic_write_bytes, check_output_dir
from fashionlens.train.config import load_config
from fashionlens.train.data import DataMismatchError, build_data, make_loader
from fashionlens.train.fit import lightning_trainer, write_json
from fashionlens.train.task import FashionTask


def config_for_model(info, data_path: str | Path, batch_size: int, overrides: list[str] | None = None,
                     data_format: str | None = None) -> dict:
    """A config that rebuilds the data exactly as the model saw it (format, split, label subset).

    ``data_format`` evaluates a model on data of another format (e.g. one source of a model trained
    on several): only the heads that data has targets for are evaluated. Without it, the format is
    detected from ``data_path`` (``data.formats.detect_format``); the model's own format is the fallback:
    it is kept when the path has its layout. A model trained on several formats (mixed) is evaluated on
    the one of its sources whose layout the path has (e.g. its CCP source on a CCP folder).
    """
    cfg = load_config(None, overrides)
    if data_format is None and Path(data_path).exists():
        from fashionlens.data.formats import detect_format

        data_format = info.training.format_for(detect_format(data_path))
    for key, value in info.training.split_for(data_format).items():
        if key in cfg["data"]:
            cfg["data"][key] = value
    cfg["data"]["path"] = str(data_path)
    cfg["data"]["batch_size"] = batch_size
    cfg["data"]["input_size"] = list(info.data_config.input_size)
    return cfg


def evaluate_model(path: str | Path, data: str | Path, split: str = "val", batch_size: int = 32,
                   trainer_kwargs: dict | None = None, overrides: list[str] | None = None,
                   data_format: str | None = None) -> tuple[dict, dict]:
    """Evaluate one model file on one split; returns (report, gathered outputs incl. paths)."""
    model, info = load_model_file(path)
    cfg = config_for_model(info, data, batch_size, overrides, data_format)
    bundle = build_data(cfg, info.data_config, splits=("train", split))
    if split not in bundle.datasets:
        raise DataMismatchError(f"the data has no {split!r} split (it has {sorted(bundle.datasets)})")
    check_split_images(bundle.paths[split], split, cfg["data"]["num_workers"])
    align_targets(bundle, info.label_names, split)
    groups = bundle.attribute_groups if info.attributes.groups is None else np.asarray(info.attributes.groups)
    task = FashionTask(
        model,
        info.label_names,
        cfg["optim"],
        cfg["loss"],
        attribute_groups=groups,
        channels_last=bool(cfg["trainer"]["channels_last"]),
    )
    kw = {
        "accelerator": "auto",
        "devices": 1,
        "logger": False,
        "enable_model_summary": False,
        **(trainer_kwargs or {}),
    }
    trainer = lightning_trainer(**kw)
    try:
        trainer.test(
            task,
            make_loader(bundle.datasets[split], batch_size, cfg["data"]["num_workers"], False),
            verbose=False,
        )
    except RuntimeError as e:  # a DataLoader worker's BadImageError comes back as a RuntimeError
        bad = _worker_bad_image(e)
        if bad is None:
            raise
        raise bad from None
    gathered = dict(task.last_outputs)
    if not gathered:
        raise DataMismatchError(
            f"the model's heads {sorted(info.label_names)} have no targets in this {cfg['data']['format']} "
            "data"
        )
    index = next(v for k, v in gathered.items() if k.endswith("_index")).astype(int)
    gathered["index"] = index
    gathered["paths"] = np.asarray([bundle.paths[split][i] for i in index])
    gathered["train_targets"] = bundle.train_targets
    report = task.last_report
    if "landmarks_target" in gathered and "train" in bundle.datasets:
        report["deepfashion"]["landmarks"]["NE_mean_baseline"] = mean_landmark_baseline(
            bundle.datasets["train"], gathered
        )
    return report, {"outputs": gathered, "info": info, "trainer": trainer, "dataset": bundle.datasets[split]}


def check_split_images(paths: list, split: str, workers) -> dict[str, str]:
    """Probe the split's image headers before evaluating: report the unreadable ones (they are
    skipped), and stop, naming them, when none is readable.

    Raises:
        BadImageError: every photo of the split is unreadable (how many, and the first few with why).
    """
    from fashionlens.data.check import scan_images
    from fashionlens.train.data import num_workers

    bad = scan_images(paths, workers=max(1, num_workers(workers)))
    listed = "; ".join(f"{p}: {r}" for p, r in list(bad.items())[:3]) + (" ..." if len(bad) > 3 else "")
    if paths and len(bad) == len(paths):
        raise BadImageError(
            f"the {split} split", f"all {len(bad)} photos are unreadable, nothing to evaluate ({listed})"
        )
    if bad:
        print(f"{len(bad)} of {len(paths)} photos of the {split} split are unreadable and skipped: {listed}")
    return bad


def _worker_bad_image(e: RuntimeError) -> BadImageError | None:
    """The BadImageError a DataLoader worker raised (torch re-raises it as a RuntimeError), or None."""
    text = str(e)
    if not text.startswith("Caught BadImageError"):
        return None
    last = text.strip().splitlines()[-1]  # "fashionlens.data.images.BadImageError: <path>: <reason>"
    source, _, reason = last.partition("BadImageError: ")[2].partition(": ")
    return BadImageError(source, reason)


def align_targets(bundle, model_names: dict[str, list[str]], split: str) -> None:
    """Put the data's targets in the model's label order, by name, for the heads both have.

    A data set may spell the same vocabulary in another order (a label list, sorted names) or hold a
    subset of a model's classes (clothing-small's 10 classes for a 17-class model). Labels the model
    does not know are an error: scoring them against other columns would be silently wrong.
    """
    for head in ("category", "labels", "styles"):
        names = bundle.label_names.get(head)
        if names is None or head not in model_names or list(names) == list(model_names[head]):
            continue
        position = {n: i for i, n in enumerate(model_names[head])}
        unknown = [n for n in names if n not in position]
        if unknown or (head != "category" and len(names) != len(position)):
            missing = [n for n in model_names[head] if n not in set(names)]
            raise DataMismatchError(
                f"the data's {head} names do not match the model's: unknown to the model {unknown[:5]}"
                + (f", missing from the data {missing[:5]}" if head != "category" and missing else "")
            )
        order = np.asarray([position[n] for n in names])
        dataset = bundle.datasets[split]
        if head == "styles":
            for key in ("styles", "styles_mask"):
                dataset.extra_targets[key] = torch.as_tensor(
                    _reorder(dataset.extra_targets[key].numpy(), order, head, len(position))
                )
        else:
            dataset.targets = torch.as_tensor(_reorder(dataset.targets.numpy(), order, head, len(position)))
        bundle.train_targets[head] = _reorder(
            np.asarray(bundle.train_targets[head]), order, head, len(position)
        )
        bundle.label_names[head] = list(model_names[head])
    _align_attributes(bundle, model_names, split)


def _align_attributes(bundle, model_names: dict[str, list[str]], split: str) -> None:
    """Keep the data's attribute columns the model has, in its order (e.g. a colour-only model scored on
    a tree that also holds garment attributes); an attribute the data lacks is an error."""
    names = bundle.label_names.get("attributes")
    if names is None or "attributes" not in model_names or list(names) == list(model_names["attributes"]):
        return
    position = {n: i for i, n in enumerate(names)}
    unknown = [n for n in model_names["attributes"] if n not in position]
    if unknown:
        raise DataMismatchError(
            f"the model's attributes {unknown[:5]} are not in the data's attributes ({list(names)[:5]} ...)"
        )
    cols = np.asarray([position[n] for n in model_names["attributes"]])
    dataset = bundle.datasets[split]
    dataset = getattr(dataset, "dataset", dataset)  # under a SelectTargets
    index = dataset.index
    dataset.index = dataclasses.replace(
        index,
        attributes=index.attributes[:, cols],
        attribute_names=index.attribute_names[cols],
        attribute_types=index.attribute_types[cols],
    )
    bundle.train_targets["attributes"] = np.asarray(bundle.train_targets["attributes"])[:, cols]
    if bundle.attribute_groups is not None:
        bundle.attribute_groups = np.asarray(bundle.attribute_groups)[cols]
    if bundle.attribute_masks is not None:
        bundle.attribute_masks = np.asarray(bundle.attribute_masks)[:, cols]
    bundle.label_names["attributes"] = list(model_names["attributes"])


def _reorder(targets: np.ndarray, order: np.ndarray, head: str, num: int) -> np.ndarray:
    """Class indices (N,) or multi-hot columns (N, C) moved to the positions ``order``."""
    if head == "category":
        return order[targets]
    out = np.zeros((len(targets), num), dtype=targets.dtype)
    out[:, order] = targets
    return out


def mean_landmark_baseline(train_dataset, gathered: dict, max_images: int = 2000, seed: int = 0) -> float:
    """NE of always predicting the mean training landmark (per slot): the bar a model must clear.

    The mean is taken over visible landmarks of up to ``max_images`` training samples, in the same
    normalised input coordinates the model predicts in.
    """
    from fashionlens.metrics import landmark_normalized_error

    rng = np.random.default_rng(seed)
    rows = rng.permutation(len(train_dataset))[:max_images]
    sums, counts = np.zeros((8, 2)), np.zeros(8)
    for i in rows:
        sample = train_dataset[int(i)]
        vis = sample["landmark_visible"].numpy() > 0
        sums[vis] += sample["landmarks"].numpy()[vis]
        counts += vis
    mean = sums / np.maximum(counts, 1)[:, None]
    pred = np.broadcast_to(mean, gathered["landmarks_target"].shape)
    _, ne = landmark_normalized_error(pred, gathered["landmarks_target"], gathered["landmarks_visible"] > 0)
    return float(ne)


def evaluate(
    paths: list[str | Path],
    data: str | Path,
    out_dir: str | Path,
    split: str = "val",
    batch_size: int = 32,
    overrides: list[str] | None = None,
    data_format: str | None = None,
    trainer_kwargs: dict | None = None,
) -> dict[str, dict]:
    """Evaluate each model; write one report with a row per model; return {model name: report}."""
    out = check_output_dir(out_dir, "--out")  # before any work
    reports: dict[str, dict] = {}
    for path in paths:
        report, ctx = evaluate_model(path, data, split, batch_size, trainer_kwargs, overrides, data_format)
        if not ctx["trainer"].is_global_zero:
            continue
        name = model_name(path, ctx["info"])
        reports[name] = report
        sub = out if len(paths) == 1 else out / name
        sub.mkdir(parents=True, exist_ok=True)
        write_predictions(sub / "predictions.csv", ctx["outputs"], ctx["info"].label_names)
        write_plots(sub, report, ctx["outputs"], ctx["info"].label_names, name)
        if "landmarks_pred" in ctx["outputs"]:
            plot_landmarks(
                ctx["dataset"], ctx["outputs"], ctx["info"].data_config, sub / "landmarks.png", name
            )
    if reports:
        write_json(out / "metrics.json", {"split": split, "data": str(data), "models": reports})
        text = markdown_report(reports, f"fashionlens evaluation ({split} split of {data})")
        atomic_write_bytes(out / "report.md", text.encode())
    return reports


def model_name(path: str | Path, info) -> str:
    p = Path(path)
    exp = info.training.experiment
    return exp if exp and exp != "experiment" else (p.parent.name if p.stem == "model" else p.stem)


def write_predictions(path: Path, outputs: dict, label_names: dict[str, list[str]], top: int = 5) -> None:
    """One row per image: path, then for each head its top predictions and its true labels."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    heads = [
        h
        for h in ("category", "labels", "styles", "attributes")
        if f"{h}_scores" in outputs and np.array_equal(outputs[f"{h}_index"], outputs["index"])
    ]
    writer.writerow(["image"] + [c for h in heads for c in (f"{h}_predicted", f"{h}_true")])
    for row, image in enumerate(outputs["paths"]):
        cells = [image]
        for h in heads:
            names = label_names[h]
            scores = outputs[f"{h}_scores"][row]
            order = np.argsort(-scores, kind="stable")[:top]
            cells.append("|".join(f"{names[i]}:{scores[i]:.3f}" for i in order))
            t = outputs[f"{h}_targets"][row]
            cells.append(
                names[int(t)] if h == "category" else "|".join(names[i] for i in np.flatnonzero(t > 0))
            )
        writer.writerow(cells)
    atomic_write_bytes(path, buf.getvalue().encode())


def write_plots(out: Path, report: dict, outputs: dict, label_names: dict[str, list[str]], name: str) -> None:
    """Seed B's Fig. 6 (co-occurrence P(j|i) on the training split) and per-label top-2 all-recall, per
    multi-label head."""
    from fashionlens.labelgraph import cooccurrence

    for head, stem, what in (("labels", "label", "Label"), ("styles", "style", "Style")):
        if head not in report or head not in outputs["train_targets"]:
            continue
        counts, nums = cooccurrence(outputs["train_targets"][head])
        conditional = np.divide(
            counts, nums[:, None], out=np.zeros_like(counts, dtype=np.float64), where=nums[:, None] > 0
        )
        np.fill_diagonal(conditional, 1.0)
        plot_correlation(
            conditional,
            label_names[head],
            out / f"{stem}_correlation.png",
            f"{what} correlation P(j|i), training split ({name})",
        )
        plot_per_label_recall(
            report[head]["per_label_top2_all"],
            out / f"per_{stem}_recall.png",
            f"Per-{stem} top-2 all-recall ({name})",
        )

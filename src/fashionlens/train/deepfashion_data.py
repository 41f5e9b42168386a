"""DeepFashion (or a synthetic tree in its layout) -> the DataBundle the trainer and evaluator use.

The official ``Eval/list_eval_partition.txt`` fixes train / val / test; nothing is re-split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fashionlens.data.config import DataConfig
from fashionlens.data.deepfashion import DeepFashionDataset, read_deepfashion
from fashionlens.data.landmark_transforms import build_joint_transforms
from fashionlens.train.data import DataBundle


def deepfashion_bundle(cfg: dict, root: Path, data_config: DataConfig, splits) -> DataBundle:
    d = cfg["data"]
    index = read_deepfashion(root)
    parts = {s: index.subset(index.partition == s) for s in ("train", "val", "test")}
    if d["limit"]:
        parts["train"] = parts["train"].subset(np.arange(min(int(d["limit"]), len(parts["train"]))))
    datasets, paths = {}, {}
    for split in splits:
        if split not in parts or len(parts[split]) == 0:
            continue
        tf = build_joint_transforms(data_config, train=split == "train", margin=float(d["crop_margin"]))
        datasets[split] = DeepFashionDataset(parts[split], root, tf, data_config, bad_images=d["bad_images"])
        paths[split] = [str(root / str(n)) for n in parts[split].image_names]
    train = parts["train"]
    return DataBundle(
        datasets=datasets,
        label_names={"category": [str(n) for n in index.category_names], "attributes": [str(n) for n in index.attribute_names]},
        train_targets={"category": train.category, "attributes": (train.attributes > 0).astype(np.float32)},
        paths=paths,
        attribute_groups=np.asarray(index.attribute_types, dtype=np.int64),
        attribute_masks=(train.attributes != 0).astype(np.float32),
    )

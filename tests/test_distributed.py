"""Two CPU processes (gloo, launched by torchrun) evaluate exactly like one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch
from typer.testing import CliRunner

from fashionlens.checkpoint import ModelInfo, save_model
from fashionlens.cli import app
from fashionlens.data.config import DataConfig
from fashionlens.data.multilabel import read_multilabel, split_dataset
from fashionlens.model_header import Training
from fashionlens.models import FashionNet


def _random_model(path):
    torch.manual_seed(0)
    net = FashionNet("test_tiny", heads={"labels": {"num_classes": 4, "kind": "linear", "pool": "max"}})
    data = {
        "format": "multilabel",
        "top_labels": None,
        "split_fractions": [0.5, 0.2, 0.3],
        "split_seed": 0,
        "crop_margin": 0.1,
    }
    info = ModelInfo(
        net.spec,
        {"labels": ["blue", "green", "red", "yellow"]},
        DataConfig(input_size=(32, 32)),
        training=Training("ddp_check", data),
    )
    return save_model(net.eval(), info, path)


def test_two_process_evaluation_equals_one_process(tmp_path, colour_csv):
    model = _random_model(tmp_path / "model.safetensors")
    one = tmp_path / "one"
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            str(model),
            "--data",
            str(colour_csv),
            "--out",
            str(one),
            "--split",
            "test",
            "--batch-size",
            "7",
            "--accelerator",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)

    two = tmp_path / "two"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29531",
        "-m",
        "fashionlens.cli",
        "evaluate",
        str(model),
        "--data",
        str(colour_csv),
        "--out",
        str(two),
        "--split",
        "test",
        "--batch-size",
        "7",
        "--devices",
        "2",
        "--strategy",
        "ddp",
        "--accelerator",
        "cpu",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    m1 = json.loads((one / "metrics.json").read_text())["models"]["ddp_check"]
    m2 = json.loads((two / "metrics.json").read_text())["models"]["ddp_check"]
    # an odd number of test images over 2 ranks: the sampler pads one rank; duplicates must not count
    test_split = split_dataset(read_multilabel(colour_csv), (0.5, 0.2, 0.3), seed=0)["test"]
    assert len(test_split) % 2 == 1
    assert m1["num_images"] == m2["num_images"] == len(test_split)
    assert m1["labels"]["mAP"] == m2["labels"]["mAP"]
    assert m1["labels"]["topk"] == m2["labels"]["topk"]
    assert m1["labels"]["prf"] == m2["labels"]["prf"]
    rows1 = (one / "predictions.csv").read_text().splitlines()
    rows2 = (two / "predictions.csv").read_text().splitlines()
    assert sorted(rows1) == sorted(rows2)
    # only rank 0 wrote: exactly one report, no per-rank copies
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())

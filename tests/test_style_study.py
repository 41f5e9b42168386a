"""tools/style_study.py (seed B's Tables 3 and 5 on real styles): the bootstrap's sign and the table's
mean +- std on made-up score files."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import load_tool


@pytest.fixture(scope="module")
def tool():
    return load_tool("style_study")


# 4 photos, 2 styles; photo i's true style is i % 2
TARGETS = np.array([[1, 0], [0, 1], [1, 0], [0, 1]], dtype=np.float32)
RIGHT = np.where(TARGETS > 0, 0.9, 0.1).astype(np.float32)  # ranks every photo right
# ranks every photo's other style first, no ties: per style, both negatives above both positives, so
# AP = (1/3 + 2/4) / 2 = 0.4167 for each style
WRONG = np.array([[0.2, 0.9], [0.9, 0.2], [0.1, 0.8], [0.8, 0.1]], dtype=np.float32)


def _run(row: str, seed: int, scores: np.ndarray) -> dict:
    from fashionlens.metrics import multilabel_report

    return {
        "row": row,
        "seed": seed,
        "labels": ["a", "b"],
        "scores": scores,
        "targets": TARGETS,
        "paths": [f"p{i}.jpg" for i in range(4)],
        "report": multilabel_report(scores, TARGETS, ["a", "b"]),
    }


def test_bootstrap_row_is_a_minus_b(tool):
    runs = {"lite0": [_run("lite0", 0, WRONG)], "mlgcn": [_run("mlgcn", 0, RIGHT)]}
    line = tool.bootstrap_table(runs, resamples=50)[2]
    assert line.startswith("| ML-GCN on Lite0 (fine-tuned) minus Transfer baseline: Lite0 + linear")
    cells = [c.strip() for c in line.split("|")[2:-1]]
    assert cells[0].startswith("+58.3 [")  # mAP: 1.0 (right) minus 0.4167 (wrong)
    assert cells[1].startswith("+100.0 [+100.0, +100.0]")  # top-1 any-recall: 1 minus 0 in every round


def test_rows_table_mean_and_std_over_seeds(tool):
    runs = {"lite0": [_run("lite0", 0, RIGHT), _run("lite0", 1, WRONG)]}
    row = tool.rows_table(runs)[2]
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[1] == "2"  # seeds
    assert cells[2] == "50.0 ± 70.7"  # top-1 any: 1 and 0, std (ddof 1) 0.707
    assert cells[-1] == "70.8 ± 41.2"  # mAP: 1.0 and 0.4167, std 0.5833 / sqrt(2)

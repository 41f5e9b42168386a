"""Graft a parsing head trained on a model's frozen backbone into that model: every other tensor unchanged.

    python tools/graft_parsing.py src/fashionlens/weights/fashionlens-lite.safetensors \\
        runs/parsing/frozen/model.safetensors --out runs/lite-parsing.safetensors

The donor (``configs/parsing_frozen.yaml``) must have been trained on the base model's own backbone with
``optim.freeze_backbone: true``: the graft checks that the two backbones are the same tensors, so the
head sees exactly the features it was trained on and no other head's answer changes. The base model's
data description gains ``parsing: true`` on its CCP source, so ``fashionlens evaluate`` scores the parser.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from fashionlens.checkpoint import load_model_file, save_model
from fashionlens.models import build_model


def graft(base_path: str, donor_path: str, out: str, tolerance: float = 1e-3) -> dict:
    base, base_info = load_model_file(base_path)
    donor, donor_info = load_model_file(donor_path)
    if "parsing" not in donor.spec:
        raise SystemExit(f"error: {donor_path} has no parsing head")
    base_sd, donor_sd = base.state_dict(), donor.state_dict()
    diffs = [float((base_sd[k].float() - v.float()).abs().max()) for k, v in donor_sd.items()
             if k.startswith("backbone.")]  # fmt: skip
    worst = max(diffs, default=float("inf"))
    if worst > tolerance:  # fp16 shipped weights round-trip exactly; anything more is another backbone
        raise SystemExit(
            f"error: the backbones differ (max |diff| {worst:.3g}); train the donor on {base_path}"
        )
    spec = {**base.spec, "parsing": donor.spec["parsing"]}
    model = build_model(spec)
    state = {**base_sd, **{k: v for k, v in donor_sd.items() if k.startswith("parsing_head.")}}
    model.load_state_dict(state, strict=True)
    info = dataclasses.replace(
        base_info, spec=model.spec, parsing=donor_info.parsing, training=base_info.training.with_ccp_parsing()
    )
    save_model(model, info, out, half=True)
    grafted = sum(k.startswith("parsing_head.") for k in state)
    return {"backbone_max_abs_diff": worst, "parsing_tensors": grafted}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("base", help="the model to graft into (e.g. the shipped fashionlens-lite)")
    ap.add_argument("donor", help="a model with a parsing head trained on the base's frozen backbone")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    print(graft(args.base, args.donor, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

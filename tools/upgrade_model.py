"""Upgrade a schema-1 model file to schema 2: the same tensors, the header in typed sections.

    python tools/upgrade_model.py runs/lite/model.safetensors                 # in place
    python tools/upgrade_model.py old.safetensors new.safetensors
    python tools/upgrade_model.py old.onnx new.onnx                           # an exported ONNX model

Schema 1 kept training data, calibration, label graph, quantisation, attribute types and the parsing
groups in one untyped ``extra`` dict; schema 2 gives each its section (``fashionlens.model_header``)
and writes out what schema 1 left to convention: the landmark names (DeepFashion's slots) and which
attributes are colours. A ``.safetensors`` file keeps its tensor bytes as they are (only the header is
rewritten; the tool reads every tensor back and checks it is equal); an ``.onnx`` file keeps its graph
and gets a new header digest.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from fashionlens.checkpoint import CheckpointError, ModelInfo, read_info, upgrade_model_file, upgraded_header


def upgrade_onnx(old: Path, new: Path) -> Path:
    """Rewrite a schema-1 ``.onnx`` model's header as schema 2 (graph unchanged, digest recomputed)."""
    import onnx

    from fashionlens.fileio import atomic_write_bytes
    from fashionlens.inference.export import attach_header
    from fashionlens.inference.onnx_runner import META_DIGEST, META_HEADER, content_digest, graph_bytes

    proto = onnx.load(str(old))
    meta = {p.key: p.value for p in proto.metadata_props}
    header = meta.get(META_HEADER)
    if header is None or meta.get(META_DIGEST) != content_digest(graph_bytes(proto), header):
        raise CheckpointError(f"{old}: no fashionlens header, or one edited after export")
    attach_header(proto, ModelInfo.from_json(upgraded_header(header, str(old)), str(old)))
    atomic_write_bytes(new, proto.SerializeToString())
    return new


def check_same_tensors(old: dict[str, torch.Tensor], new_path: Path) -> int:
    """Every tensor of ``new_path`` equal to ``old``'s, same name, dtype and shape; their count."""
    from safetensors.torch import load_file

    new = load_file(str(new_path))
    if sorted(new) != sorted(old):
        raise CheckpointError(f"{new_path}: the tensor names changed in the upgrade")
    changed = [k for k in old if old[k].dtype != new[k].dtype or not torch.equal(old[k], new[k])]
    if changed:
        raise CheckpointError(f"{new_path}: {len(changed)} tensor(s) changed in the upgrade: {changed[:5]}")
    return len(new)


def upgrade(old: Path, new: Path) -> str:
    """Upgrade ``old`` into ``new``; a one-line summary."""
    if old.suffix == ".onnx":
        upgrade_onnx(old, new)
        return f"upgraded {old} -> {new} (schema 2, graph unchanged)"
    from safetensors.torch import load_file

    before = load_file(str(old))
    upgrade_model_file(old, new)
    read_info(new)
    return f"upgraded {old} -> {new} (schema 2, {check_same_tensors(before, new)} tensors unchanged)"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", type=Path, help="a schema-1 .safetensors or .onnx fashionlens model")
    ap.add_argument("new", type=Path, nargs="?", help="where to write the upgraded model (default: in place)")
    args = ap.parse_args(argv)
    try:
        print(upgrade(args.old, args.new or args.old))
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

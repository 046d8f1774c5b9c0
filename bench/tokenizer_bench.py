#!/usr/bin/env python3
"""Tokenizer throughput on real text: longenc's C++ WordPiece vs Hugging Face `tokenizers`.

Corpus: every .rst file of Debian's linux-doc, each file one text (documents of up to ~100k
tokens, as the server sees them). The C++ side is `longenc-tokenize-dump --stats`, which times
only the Encode() calls (one thread); HF is `Tokenizer.encode_batch` of the same model's
tokenizer.json, timed with one thread and with its default thread pool.

Usage: .venv/bin/python bench/tokenizer_bench.py [--build_dir build] [--repeat 3]
"""
import argparse
import gzip
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
LINUX_DOC = pathlib.Path("/usr/share/doc/linux-doc/Documentation")


def load_documents():
    files = sorted(pathlib.Path(r) / n for r, _, names in os.walk(LINUX_DOC)
                   for n in names if n.endswith(".rst.gz"))
    if not files:
        sys.exit(f"no .rst.gz under {LINUX_DOC}: install the Debian package linux-doc")
    return [gzip.decompress(f.read_bytes()).decode("utf-8", errors="replace") for f in files]


def bench_cpp(tool, model_dir, docs, repeat):
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", encoding="utf-8") as f:
        f.writelines(json.dumps(d) + "\n" for d in docs)
        f.flush()
        with open(f.name, "rb") as stdin:
            proc = subprocess.run([str(tool), f"--model_dir={model_dir}", "--json_input",
                                   "--quiet", "--stats", f"--repeat={repeat}"],
                                  stdin=stdin, capture_output=True, check=True)
    stats = dict(re.findall(r"(\w+)=([\d.e+]+)", proc.stderr.decode()))
    return int(stats["tokens"]) // repeat, float(stats["seconds"]) / repeat


def bench_hf(model_dir, docs, threads):
    # The Rust thread pool is sized on first use, so each setting runs in its own process.
    code = (
        "import json, sys, time\n"
        "from tokenizers import Tokenizer\n"
        "docs = json.load(sys.stdin)\n"
        f"tok = Tokenizer.from_file({str(model_dir / 'tokenizer.json')!r})\n"
        "tok.no_truncation(); tok.no_padding()\n"
        "t = time.perf_counter(); enc = tok.encode_batch(docs); dt = time.perf_counter() - t\n"
        "print(sum(len(e.ids) for e in enc), dt)\n")
    env = dict(os.environ)
    if threads:
        env["RAYON_NUM_THREADS"] = str(threads)
    proc = subprocess.run([sys.executable, "-c", code], input=json.dumps(docs).encode(),
                          capture_output=True, check=True, env=env)
    tokens, seconds = proc.stdout.split()
    return int(tokens), float(seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build_dir", type=pathlib.Path,
                        default=pathlib.Path(os.environ.get("LONGENC_BUILD_DIR", ROOT / "build")))
    parser.add_argument("--model_dir", type=pathlib.Path,
                        default=ROOT / "models" / "all-MiniLM-L6-v2")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip_hf", action="store_true")
    args = parser.parse_args()

    docs = load_documents()
    size_mb = sum(len(d.encode()) for d in docs) / 1e6
    print(f"corpus: {len(docs)} linux-doc .rst documents, {size_mb:.1f} MB; "
          f"{os.cpu_count()} CPUs\n")
    rows = [("longenc C++ WordPiece (1 thread)",
             *bench_cpp(args.build_dir / "bin" / "longenc-tokenize-dump", args.model_dir, docs,
                        args.repeat))]
    if not args.skip_hf:
        rows.append(("HF tokenizers encode_batch (1 thread)", *bench_hf(args.model_dir, docs, 1)))
        rows.append(("HF tokenizers encode_batch (default pool)",
                     *bench_hf(args.model_dir, docs, 0)))
    print(f"| {'tokenizer':45} | {'tokens':>10} | {'seconds':>8} | {'tokens/s':>12} | {'MB/s':>6} |")
    print(f"|{'-' * 47}|{'-' * 12}|{'-' * 10}|{'-' * 14}|{'-' * 8}|")
    for name, tokens, seconds in rows:
        print(f"| {name:45} | {tokens:>10} | {seconds:>8.2f} | {tokens / seconds:>12,.0f} | "
              f"{size_mb / seconds:>6.1f} |")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Plots passkey top-1 accuracy against document length, one line per method, from the
accumulated bench/results/quality.raw/passkey.json (written by passkey.py).

Usage: .venv/bin/python bench/quality/plot.py [--out docs/quality_passkey.png]
Needs matplotlib (scripts/requirements.txt).
"""
import argparse
import pathlib

import common


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default="passkey.json", help=f"file under {common.RESULTS}")
    p.add_argument("--out", type=pathlib.Path, default=common.ROOT / "docs" / "quality_passkey.png")
    p.add_argument("--methods", default="", help="comma-separated labels to draw (default: all)")
    args = p.parse_args()

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = common.load_json(args.results, {"results": [], "order": []})
    wanted = [m for m in args.methods.split(",") if m] or data["order"]
    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=100)
    ax.set_prop_cycle(color=plt.cm.tab20.colors)  # more methods than the default 10 colours
    counts = {}
    for label in wanted:
        points = sorted((r["length"], r["top1"]) for r in data["results"] if r["method"] == label)
        for r in data["results"]:
            counts.setdefault(r["length"], set()).add(r["candidates"])
        if points:
            style = "--" if label.startswith(("truncate", "chunk")) else "-"
            ax.plot([x for x, _ in points], [y for _, y in points], style, marker="o",
                    markersize=3, label=label)
    lengths = sorted(counts)
    ax.plot(lengths, [1 / max(counts[n]) for n in lengths], ":", color="grey", label="chance")
    ax.set_xscale("log", base=2)
    ax.set_xticks(lengths, [f"{n // 1024}k" if n >= 1024 else str(n) for n in lengths])
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("document length (tokens); candidates per length: " +
                  ", ".join(str(max(counts[n])) for n in lengths))
    ax.set_ylabel("passkey top-1 accuracy")
    ax.set_title("Passkey retrieval, all-MiniLM-L6-v2 in longenc")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="lower left")
    fig.tight_layout()
    fig.savefig(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

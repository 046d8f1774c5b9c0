#!/usr/bin/env python3
"""Renders deploy/grafana/dashboards/longenc.json to a PNG from a live Prometheus, without
Grafana (which Debian does not package): each timeseries panel's PromQL is run as a range
query over /api/v1/query_range and drawn with matplotlib in the dashboard's layout.

    pip install matplotlib   # not a project requirement: only this picture needs it
    python3 deploy/grafana/render_dashboard.py --prometheus http://127.0.0.1:9090 \
        --minutes 5 --out docs/dashboard.png --caption "..."

Grafana variables are replaced as Grafana would for "All" ($job, $instance -> .*) and
$__rate_interval by --rate_interval.
"""

import argparse
import json
import time
import urllib.parse
import urllib.request
from datetime import datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

DASHBOARD = Path(__file__).resolve().parent / "dashboards" / "longenc.json"


def query_range(prometheus, expr, start, end, step):
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{prometheus}/api/v1/query_range?{params}", timeout=30) as r:
        answer = json.loads(r.read())
    if answer["status"] != "success":
        raise RuntimeError(f"{expr}: {answer}")
    return answer["data"]["result"]


def legend(fmt, labels):
    out = fmt or ",".join(f"{k}={v}" for k, v in labels.items() if k != "__name__")
    for key, value in labels.items():
        out = out.replace("{{" + key + "}}", value)
    return out


def human(unit):
    def seconds(v, _):
        return f"{v * 1e3:.0f} ms" if abs(v) < 1 else f"{v:.1f} s"

    def size(v, _):
        for suffix, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
            if abs(v) >= scale:
                return f"{v / scale:.3g} {suffix}"
        return f"{v:.0f} B"

    def short(v, _):
        for suffix, scale in (("M", 1e6), ("k", 1e3)):
            if abs(v) >= scale:
                return f"{v / scale:.1f}{suffix}"
        return f"{v:.3g}"

    return FuncFormatter({"s": seconds, "bytes": size}.get(unit, short))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prometheus", default="http://127.0.0.1:9090")
    parser.add_argument("--minutes", type=float, default=5)
    parser.add_argument("--rate_interval", default="15s")
    parser.add_argument("--out", default="dashboard.png")
    parser.add_argument("--caption", default="")
    parser.add_argument("--dpi", type=int, default=60)
    args = parser.parse_args()

    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for p in dashboard["panels"] if p["type"] == "timeseries"]
    end = time.time()
    start = end - args.minutes * 60
    step = max(1, int(args.minutes * 60 / 200))
    cols = 3
    rows = (len(panels) + cols - 1) // cols
    plt.style.use("dark_background")
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 6.4, rows * 3.1))
    for ax, panel in zip(axes.flat, panels):
        unit = panel["fieldConfig"]["defaults"].get("unit", "short")
        for target in panel["targets"]:
            expr = (target["expr"].replace("$__rate_interval", args.rate_interval)
                    .replace("$job", ".*").replace("$instance", ".*"))
            for series in query_range(args.prometheus, expr, start, end, step):
                xs = [datetime.fromtimestamp(float(t)) for t, _ in series["values"]]
                ys = [float(v) for _, v in series["values"]]
                ax.plot(xs, ys, linewidth=1.2,
                        label=legend(target.get("legendFormat", ""), series["metric"]))
        ax.set_title(panel["title"], fontsize=10, loc="left")
        ax.yaxis.set_major_formatter(human(unit))
        ax.xaxis.set_major_formatter(matplotlib.dates.DateFormatter("%H:%M"))
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.2)
        if ax.lines:
            ax.legend(fontsize=6, loc="upper left", ncol=2, framealpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(f"{dashboard['title']} dashboard ({args.caption})" if args.caption
                 else dashboard["title"], fontsize=13)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(args.out, dpi=args.dpi)
    # A 64-colour palette keeps the picture small enough for the repository (Pillow comes
    # with matplotlib).
    from PIL import Image
    Image.open(args.out).convert("RGB").quantize(colors=64).save(args.out, optimize=True)
    print(f"wrote {args.out}: {len(panels)} panels")


if __name__ == "__main__":
    main()

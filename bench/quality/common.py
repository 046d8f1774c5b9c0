"""Shared pieces of the quality harness: running `longenc-encode` with a per-document cache,
the methods compared (attention variant × position mode × truncation), and the metrics.

Embeddings are cached one file per (method, token ids) under bench/results/quality.raw/cache/
(git-ignored), so re-running a script after adding a length or a method only encodes what is
new. For an approximate variant the key also holds the binary's size and mtime: a rebuilt
attention implementation is re-measured, exact attention is not.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import pathlib
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import corpus  # noqa: E402  (bench/corpus.py)

RESULTS = ROOT / "bench" / "results" / "quality.raw"
TABLE_SIZE = 512  # the model's position table
POSITION_MODES = ["recurrent", "grouped", "interpolate",
                  "recurrent,logscale", "grouped,logscale", "interpolate,logscale"]


def default_binary() -> pathlib.Path:
    build = pathlib.Path(os.environ.get("LONGENC_BUILD_DIR", ROOT / "build"))
    return build / "bin" / "longenc-encode"


@dataclasses.dataclass(frozen=True)
class Method:
    """How a document becomes a vector. truncate > 0 keeps the first truncate-1 ids and the
    final [SEP] (what a 256/512-token model does); position is a longenc position mode."""
    attention: str = "full"
    options: str = ""
    position: str = "interpolate"
    truncate: int = 0

    @property
    def label(self) -> str:
        if self.truncate:
            return f"truncate {self.truncate}"
        if self.position == "chunk":
            return "chunk 512 (exact)" if self.attention == "full" else f"chunk {self.attention}"
        # A surrogate file is named by its file name only (paths differ between machines).
        options = re.sub(r"surrogates=([^,;]*)",
                         lambda m: "surrogates=" + pathlib.Path(m.group(1)).name, self.options)
        opts = f"[{options}]" if options else ""
        return f"{self.attention}{opts} {self.position}"

    def prepare(self, ids: list[int]) -> list[int]:
        if self.truncate and len(ids) > self.truncate:
            return ids[: self.truncate - 1] + [ids[-1]]
        return ids


def parse_method(text: str) -> Method:
    """'full/interpolate', 'iclustered:clusters=25,topk=32/grouped,logscale', 'chunk',
    'truncate256'."""
    if text.startswith("truncate"):
        return Method(truncate=int(text[len("truncate"):]))
    if text == "chunk":
        return Method(position="chunk")
    # The position mode follows the last '/', so option values may be paths.
    attention, _, position = text.rpartition("/")
    if position.split(",")[0] not in ("recurrent", "grouped", "interpolate", "chunk"):
        attention, position = text, ""
    name, _, options = attention.partition(":")
    return Method(name, options, position or "interpolate")


class Encoder:
    """Runs longenc-encode once per method over every uncached document."""

    def __init__(self, binary: pathlib.Path | None = None, threads: int = 2, jobs: int = 2,
                 cache_dir: pathlib.Path = RESULTS / "cache", verbose: bool = True):
        self.binary = pathlib.Path(binary or default_binary())
        if not self.binary.exists():
            sys.exit(f"{self.binary} not found: build it (cmake --build build --target "
                     "longenc-encode) or set LONGENC_BUILD_DIR")
        self.threads = threads
        self.jobs = max(1, jobs)
        self.cache_dir = cache_dir
        self.verbose = verbose
        self.seconds: dict[str, float] = {}   # encode wall time per method label
        self.tokens: dict[str, int] = {}      # tokens encoded per method label (uncached)
        st = self.binary.stat()
        self._binary_tag = f"{st.st_size}:{int(st.st_mtime)}"
        self._variants: list[str] | None = None

    def variants(self) -> list[str]:
        """Attention variants registered in the binary (parsed from its error message)."""
        if self._variants is None:
            proc = subprocess.run([str(self.binary), "--attention=?", "--input=/dev/null",
                                   "--progress=false"], capture_output=True, text=True)
            m = re.search(r"known: ([\w, ]+)", proc.stderr)
            self._variants = [v.strip() for v in m.group(1).split(",")] if m else ["full"]
        return self._variants

    def _key(self, method: Method, ids: list[int]) -> str:
        n = len(ids)
        # Every position mode encodes a document within the table identically (positions.h).
        position = method.position if n > TABLE_SIZE else "-"
        attention, options = method.attention, method.options
        # The clustered family runs exact attention below min_len_efficient (default 512).
        if (attention in ("clustered", "iclustered") and n < TABLE_SIZE
                and "min_len_efficient" not in options):
            attention, options = "full", ""
        tag = self._binary_tag if attention != "full" else ""
        for path in re.findall(r"surrogates=([^,;]*)", options):  # recalibrated file, new key
            tag += ":" + hashlib.sha1(pathlib.Path(path).read_bytes()).hexdigest()[:16]
        head = f"{attention}|{options}|{position}|{tag}|{n}|"
        return hashlib.sha1(head.encode() + np.asarray(ids, np.int32).tobytes()).hexdigest()

    def encode(self, method: Method, docs: list[list[int]]) -> np.ndarray:
        """L2-normalised mean-pooled embeddings [len(docs), 384], in order."""
        prepared = [method.prepare(list(d)) for d in docs]
        keys = [self._key(method, d) for d in prepared]
        out: list[np.ndarray | None] = []
        todo: dict[str, list[int]] = {}
        for k, d in zip(keys, prepared):
            path = self.cache_dir / k[:2] / f"{k}.npy"
            if path.exists():
                out.append(np.load(path))
            else:
                out.append(None)
                todo.setdefault(k, d)
        if todo:
            self._run(method, todo)
            out = [np.load(self.cache_dir / k[:2] / f"{k}.npy") for k in keys]
        return np.stack(out)

    def _command(self, method: Method, longest: int, threads: int) -> list[str]:
        cmd = [str(self.binary), f"--attention={method.attention}",
               f"--attention_options={method.options}", f"--threads={threads}",
               f"--max_length={max(longest, 512)}", "--batch_tokens=8192", "--progress=false"]
        if method.position:
            cmd.append(f"--position_mode={method.position}")
        return cmd

    def _run(self, method: Method, todo: dict[str, list[int]]) -> None:
        """Encodes `todo` in up to self.jobs single-threaded processes (on a shared, loaded
        machine two 1-thread processes finish sooner than one 2-thread process; a lone
        document gets all threads)."""
        items = sorted(todo.items(), key=lambda kv: -len(kv[1]))
        groups: list[list[tuple[str, list[int]]]] = [[] for _ in range(min(self.jobs, len(items)))]
        load = [0.0] * len(groups)
        for k, d in items:  # greedy balance on a cost ~ n (linear layers) + n²/8192 (attention)
            g = load.index(min(load))
            groups[g].append((k, d))
            load[g] += len(d) * (1 + len(d) / 8192)
        threads = 1 if len(groups) > 1 else self.threads
        tokens = sum(len(d) for d in todo.values())
        longest = max(len(d) for d in todo.values())
        if self.verbose:
            print(f"  encoding {len(todo)} docs ({tokens} tokens, longest {longest}) with "
                  f"{method.label} in {len(groups)} process(es) ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        procs = []
        for group in groups:
            f = tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False)
            for k, d in group:
                f.write(json.dumps({"id": k, "token_ids": d}) + "\n")
            f.close()
            cmd = self._command(method, max(len(d) for _, d in group), threads)
            procs.append((f.name, cmd, subprocess.Popen(
                cmd + [f"--input={f.name}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True)))
        outputs = []
        for name, cmd, proc in procs:
            stdout, stderr = proc.communicate()
            os.unlink(name)
            if proc.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {stderr[-2000:]}")
            outputs.append(stdout)
        elapsed = time.perf_counter() - start
        self.seconds[method.label] = self.seconds.get(method.label, 0.0) + elapsed
        self.tokens[method.label] = self.tokens.get(method.label, 0) + tokens
        if self.verbose:
            print(f"  ... {elapsed:.1f} s ({tokens / elapsed:.0f} tokens/s)", file=sys.stderr,
                  flush=True)
        for stdout in outputs:
            for line in stdout.splitlines():
                row = json.loads(line)
                path = self.cache_dir / row["id"][:2] / f"{row['id']}.npy"
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, np.asarray(row["embedding"], np.float32))


# ---- metrics ------------------------------------------------------------------------------

def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two [n, d] arrays."""
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return (a * b).sum(-1)


def ranks(queries: np.ndarray, candidates: np.ndarray, gold: list[int]) -> np.ndarray:
    """1-based rank of candidate gold[i] for query i by cosine (ties count against it)."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    c = candidates / np.linalg.norm(candidates, axis=1, keepdims=True)
    scores = q @ c.T
    right = scores[np.arange(len(gold)), gold]
    return (scores >= right[:, None]).sum(1)  # the gold itself counts once


def top1(queries: np.ndarray, candidates: np.ndarray, gold: list[int]) -> float:
    """Top-1 accuracy with ties broken at random (in expectation): a query whose gold candidate
    ties with t others and is beaten by none scores 1/(t+1). Identical candidates (e.g. all
    truncated before their passkey) thus score chance, not 0 or 1."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    c = candidates / np.linalg.norm(candidates, axis=1, keepdims=True)
    scores = q @ c.T
    right = scores[np.arange(len(gold)), gold][:, None]
    better = (scores > right).sum(1)
    tied = (scores == right).sum(1)  # the gold included
    return float(np.where(better == 0, 1.0 / tied, 0.0).mean())


def ndcg_at(rank: np.ndarray, k: int = 10) -> float:
    """nDCG@k with one relevant document per query: 1/log2(rank+1) when rank ≤ k."""
    gains = np.where(rank <= k, 1.0 / np.log2(rank + 1.0), 0.0)
    return float(gains.mean())


def markdown_table(header: list[str], rows: list[list]) -> str:
    def fmt(x):
        if isinstance(x, float):
            return "—" if math.isnan(x) else f"{x:.3f}"
        return str(x)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(x) for x in r) + " |" for r in rows]
    return "\n".join(lines)


def add_run_args(parser, out: str, accumulates: bool = True) -> None:
    """Flags every script shares: where the binary is, how to run it, where results go."""
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="threads of a lone encode process")
    parser.add_argument("--jobs", type=int, default=2, help="encode processes run side by side")
    parser.add_argument("--binary", default=None, help="longenc-encode (default: build/bin)")
    parser.add_argument("--out", default=out, help=f"results file under {RESULTS}")
    if accumulates:
        parser.add_argument("--report", action="store_true",
                            help="print the accumulated table only")


def load_json(name: str, empty: dict) -> dict:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else empty


def save_json(name: str, data) -> pathlib.Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(data, indent=1))
    return path


def machine_note() -> str:
    load = os.getloadavg()[0]
    return (f"{time.strftime('%Y-%m-%d %H:%M %Z')}, {os.cpu_count()} CPUs shared "
            f"(load {load:.1f} at the end)")

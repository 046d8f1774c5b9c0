"""Model faults at start-up, against the real longenc-server binary (docs/RELIABILITY.md).

Each case builds a damaged copy of the embedded model directory in a temp dir (the good files
symlinked, the damaged one written) and starts the server on it. The server must refuse to
start: exit with a non-zero code (not a signal: no crash), name the damaged file and the problem
on stderr, and never answer health with SERVING. It listens (NOT_SERVING) before it loads the
model, so a health probe runs for the whole life of the process and records every answer.

Needs $LONGENC_BUILD_DIR/bin/longenc-server (LONGENC_BUILD_MODEL=ON); fails without it.
"""
import json
import os
import pathlib
import subprocess
import threading
import time

import grpc
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("LONGENC_BUILD_DIR", ROOT / "build"))
SERVER = BUILD / "bin" / "longenc-server"
MODEL_DIR = pathlib.Path(os.environ.get("LONGENC_MODEL_DIR", ROOT / "models" / "all-MiniLM-L6-v2"))

pytestmark = pytest.mark.needs_programs("longenc-server")

# grpc.health.v1: HealthCheckRequest{service=""} is empty on the wire; the response's only
# field is `status = 1` (enum: 1 SERVING, 2 NOT_SERVING).
SERVING = b"\x08\x01"


def damaged_copy(tmp_path, replace):
    """A model directory whose files are symlinks to the real ones except those in `replace`
    (name -> bytes, or None: left out)."""
    out = tmp_path / "model"
    out.mkdir()
    for f in MODEL_DIR.iterdir():
        if f.name not in replace:
            (out / f.name).symlink_to(f.resolve())
    for name, data in replace.items():
        if data is not None:
            (out / name).write_bytes(data)
    return out


def weights():
    return (MODEL_DIR / "model.safetensors").read_bytes()


def truncated_weights():
    data = weights()
    return {"model.safetensors": data[:len(data) // 2]}


def corrupt_header():
    data = bytearray(weights())
    header_len = int.from_bytes(data[:8], "little")
    # Same length, so only the JSON is wrong (not the size bookkeeping).
    data[8:8 + header_len] = b"#" * header_len
    return {"model.safetensors": bytes(data)}


def header_past_end():
    data = bytearray(weights())
    data[:8] = (len(data) * 2).to_bytes(8, "little")
    return {"model.safetensors": bytes(data)}


def config_with(**changes):
    config = json.loads((MODEL_DIR / "config.json").read_text())
    config.update(changes)
    return {"config.json": json.dumps(config).encode()}


def vocab_without(token):
    # The line is renamed, not removed, so the vocabulary keeps its size and only the special
    # token is missing.
    lines = (MODEL_DIR / "vocab.txt").read_text().split("\n")
    assert token in lines
    lines = [f"{token[1:-1].lower()}_gone" if line == token else line for line in lines]
    # Without tokenizer.json, which the server prefers, vocab.txt is what it reads.
    return {"vocab.txt": "\n".join(lines).encode(), "tokenizer.json": None}


# (case id, damage, what stderr must contain: the file and words of the problem)
CASES = [
    ("truncated_weights", truncated_weights, ["model.safetensors"]),
    ("corrupt_header", corrupt_header, ["model.safetensors", "header"]),
    ("header_length_past_end", header_past_end, ["model.safetensors"]),
    ("config_hidden_size_mismatch", lambda: config_with(hidden_size=768),
     ["model.safetensors", "shape"]),
    ("config_more_layers_than_weights", lambda: config_with(num_hidden_layers=8),
     ["model.safetensors", "encoder.layer.6"]),
    ("config_not_json", lambda: {"config.json": b"{\"hidden_size\": 384,"},
     ["config.json"]),
    ("vocab_without_cls", lambda: vocab_without("[CLS]"), ["vocab.txt", "[CLS]"]),
    ("vocab_without_sep", lambda: vocab_without("[SEP]"), ["vocab.txt", "[SEP]"]),
    ("vocab_without_unk", lambda: vocab_without("[UNK]"), ["vocab.txt", "[UNK]"]),
    ("vocab_without_pad", lambda: vocab_without("[PAD]"), ["vocab.txt", "[PAD]"]),
    ("tokenizer_json_not_json", lambda: {"tokenizer.json": b"{\"model\": {"}, ["tokenizer.json"]),
]


class HealthProbe(threading.Thread):
    """Polls grpc.health.v1.Health/Check on the server's port while the process runs and records
    every answer."""

    def __init__(self, proc, port_file):
        super().__init__(daemon=True)
        self.proc, self.port_file = proc, port_file
        self.answers = []

    def run(self):
        channel, check = None, None
        while self.proc.poll() is None:
            if check is None:
                text = self.port_file.read_text().strip() if self.port_file.exists() else ""
                if text:
                    channel = grpc.insecure_channel(f"127.0.0.1:{text}")
                    check = channel.unary_unary("/grpc.health.v1.Health/Check",
                                                request_serializer=lambda b: b,
                                                response_deserializer=lambda b: b)
            if check is not None:
                try:
                    self.answers.append(check(b"", timeout=1))
                except grpc.RpcError as e:
                    self.answers.append(e.code())
            time.sleep(0.02)
        if channel is not None:
            channel.close()


def start_and_fail(model_dir, tmp_path, timeout=300):
    port_file = tmp_path / "port"
    proc = subprocess.Popen(
        [str(SERVER), "--host=127.0.0.1", "--port=0", f"--port_file={port_file}",
         "--metrics_address=127.0.0.1:0", "--device=cpu", "--threads=1",
         f"--model_dir={model_dir}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    probe = HealthProbe(proc, port_file)
    probe.start()
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail(f"longenc-server did not exit within {timeout} s on {model_dir}")
    probe.join()
    return proc.returncode, stderr, probe.answers


@pytest.mark.parametrize("damage,expected", [(c[1], c[2]) for c in CASES],
                         ids=[c[0] for c in CASES])
def test_damaged_model_refuses_to_start(tmp_path, damage, expected):
    model_dir = damaged_copy(tmp_path, damage())
    code, stderr, answers = start_and_fail(model_dir, tmp_path)
    assert code > 0, f"exit {code} (negative: killed by a signal)\n{stderr}"
    assert "SERVING " not in stderr, stderr
    assert SERVING not in answers, f"health said SERVING on a broken model: {answers}"
    for word in expected:
        assert word in stderr, f"stderr does not name {word!r}:\n{stderr}"
    # One clear line, not a backtrace or a LibTorch dump.
    assert "terminate called" not in stderr and "Exception raised from" not in stderr, stderr


def test_missing_model_directory(tmp_path):
    missing = tmp_path / "no-such-model"
    code, stderr, answers = start_and_fail(missing, tmp_path)
    assert code == 2, stderr
    assert str(missing) in stderr and "is not a directory" in stderr, stderr
    assert answers == [], "the server listened although its model directory is missing"


def test_missing_weights_file(tmp_path):
    model_dir = damaged_copy(tmp_path, {})
    (model_dir / "model.safetensors").unlink()
    code, stderr, answers = start_and_fail(model_dir, tmp_path)
    assert code > 0, stderr
    assert "model.safetensors" in stderr, stderr
    assert SERVING not in answers

"""The real longenc-server on a CUDA device (issue 16 items 5 and 6): it serves, GetInfo's model
labels name the GPU, and the longenc_device_memory_* gauges the Grafana panels and the
LongencDeviceMemoryNearLimit alert read are fed from the CUDA allocator after each batch. Named *_CUDA:
skipped (and counted as skipped) without a GPU; scripts/gpu_check.sh runs it on one."""
import signal
import subprocess
import time

import pytest

from test_metrics_prometheus import free_port
from test_metrics_service import BUILD, MODEL_DIR, embed, scrape


def cuda_available() -> bool:
    import torch
    return torch.cuda.is_available()


@pytest.mark.needs_programs("longenc-server", "longenc")
def test_device_memory_gauges_are_fed_CUDA(tmp_path):
    if not cuda_available():
        pytest.skip("no CUDA device present")
    port_file, metrics_port = tmp_path / "port", free_port()
    proc = subprocess.Popen(
        [str(BUILD / "bin" / "longenc-server"), "--host=127.0.0.1", "--port=0", "--device=cuda:0",
         f"--port_file={port_file}", f"--metrics_address=127.0.0.1:{metrics_port}",
         f"--model_dir={MODEL_DIR}"], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 240
        while not port_file.exists() or not port_file.read_text().strip():
            assert proc.poll() is None, f"server exited: {proc.stderr.read()}"
            assert time.time() < deadline, "server did not listen"
            time.sleep(0.05)
        address = f"127.0.0.1:{port_file.read_text().strip()}"
        while subprocess.run([str(BUILD / "bin" / "longenc"), "health", f"--server={address}"],
                             capture_output=True).returncode:
            assert time.time() < deadline, "server never became SERVING"
            time.sleep(0.2)
        embed(address, "a document embedded on the GPU " * 40)
        samples = scrape(f"127.0.0.1:{metrics_port}")
        value = {n: v for n, labels, v in samples
                 if n.startswith("longenc_device_memory_") and labels.get("device") == "cuda:0"}
        assert value.get("longenc_device_memory_allocated_bytes", 0) > 0, value
        assert value["longenc_device_memory_reserved_bytes"] >= value[
            "longenc_device_memory_allocated_bytes"]
        assert value["longenc_device_memory_peak_bytes"] > 0
        info = [labels for n, labels, v in samples if n == "longenc_model_info" and v == 1]
        assert info and info[0]["device"] == "cuda:0"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0

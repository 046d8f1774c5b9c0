"""The LibTorch programs run on tcmalloc (CMake option LONGENC_TCMALLOC, on by default): the
dynamic loader must bind malloc of libc, LibTorch and every other library to it. Without it
glibc maps and zeroes each large attention temporary afresh (docs/BENCHMARKS.md §5)."""
import os
import re
import subprocess

import pytest

TORCH_PROGRAMS = ["longenc-server", "longenc-encode", "longenc-calibrate"]


def tcmalloc_enabled(build_dir):
    cache = (build_dir / "CMakeCache.txt").read_text()
    return re.search(r"^LONGENC_TCMALLOC:BOOL=ON$", cache, re.MULTILINE) is not None


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.needs_programs(n)) for n in TORCH_PROGRAMS])
def test_malloc_binds_to_tcmalloc(name, build_dir):
    binary = build_dir / "bin" / name
    # `make test` builds with the default ON; an OFF build (sanitizers) has nothing to check.
    assert tcmalloc_enabled(build_dir), "built with -DLONGENC_TCMALLOC=OFF"
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "LD_DEBUG": "bindings"})
    assert out.returncode == 0, out.stderr[-2000:]
    targets = {}
    for line in out.stderr.splitlines():
        found = re.search(r"binding file (\S+) .* to (\S+) .*symbol `malloc'", line)
        if found:
            targets[os.path.basename(found.group(1))] = os.path.basename(found.group(2))
    assert targets, "LD_DEBUG printed no malloc binding"
    assert "libtorch_cpu.so" in targets and "libc.so.6" in targets, targets
    elsewhere = {lib: to for lib, to in targets.items() if not to.startswith("libtcmalloc")}
    assert not elsewhere, f"malloc not bound to tcmalloc in {elsewhere}"

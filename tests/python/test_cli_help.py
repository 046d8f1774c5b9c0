"""`--help` of every longenc program lists its own flags with their help, and `--version` names
the program (absl lists only a file named like the program by default: it once printed
"No flags matched" for longenc-encode and longenc-calibrate)."""
import re
import subprocess

import pytest

# Program -> flags its --help must list (the model flags are shared through
# model/backend_flags.cc by the server and longenc-encode).
PROGRAMS = {
    "longenc-server": ["port", "max_queue", "tls_cert", "model_dir", "attention", "position_mode"],
    "longenc-encode": ["input", "pooling", "max_length", "model_dir", "attention", "threads"],
    "longenc-calibrate": ["input", "output", "steps", "model_dir", "attention_options"],
    "longenc": ["server", "format", "tls", "api_key", "batch_documents", "batch_tokens", "retries",
                "resume"],
    "longenc-tokenize-dump": ["model_dir", "vocab"],
}


@pytest.fixture(params=[pytest.param(name, marks=pytest.mark.needs_programs(name))
                        for name in sorted(PROGRAMS)])
def program(request, build_dir):
    """(name, path) of one built program."""
    return request.param, build_dir / "bin" / request.param


def test_help_lists_the_program_flags(program):
    program, binary = program
    out = subprocess.run([str(binary), "--help"], capture_output=True, text=True, timeout=60)
    text = out.stdout + out.stderr
    assert "No flags matched" not in text
    listed = set(re.findall(r"^    --(\w+) \(", text, re.MULTILINE))
    missing = [flag for flag in PROGRAMS[program] if flag not in listed]
    assert not missing, f"{program} --help does not list {missing}:\n{text}"


def test_version_names_the_program(program):
    program, binary = program
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    assert re.fullmatch(rf"{re.escape(program)} \d+\.\d+\.\d+\n", out.stdout), out.stdout

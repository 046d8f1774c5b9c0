"""No host round-trip inside a layer's attention on an accelerator (issue 16 item 4).

A static check of model/attention/: every call that reads device memory on the host, or waits
for the device to learn a size (`.item()`, `.cpu()`, `.to(kCPU)`, `nonzero`, `bincount`,
`repeat_interleave`, `data_ptr`, `accessor`, `torch::tensor(...)` copied to the device, `.equal`,
`tolist`) must carry a `host-sync-ok: <why>` comment on its line or the line above, saying why it
cannot stall a GPU (CPU-only branch, model load, file writing). The CUDA tests
(tests/unit/attention/cuda_test.cc, `*_CUDA`) check the same at run time with LibTorch's sync
debug mode set to error.
"""
import re

import pytest

PATTERNS = {
    "item": re.compile(r"\.item\s*(<|\()"),
    "cpu": re.compile(r"\.cpu\s*\("),
    "to kCPU": re.compile(r"\.to\s*\([^;]*kCPU"),
    "nonzero": re.compile(r"\bnonzero(_static)?\s*\("),
    "bincount": re.compile(r"\bbincount\s*\("),
    "repeat_interleave": re.compile(r"\brepeat_interleave\s*\("),
    "data_ptr": re.compile(r"\bdata_ptr\s*(<|\()"),
    "accessor": re.compile(r"\baccessor\s*<"),
    "host tensor": re.compile(r"\btorch::tensor\s*\("),
    "equal": re.compile(r"\btorch::equal\s*\(|\.equal\s*\("),
    "tolist": re.compile(r"\btolist\s*\("),
    "is_nonzero": re.compile(r"\bis_nonzero\s*\("),
    "masked_select": re.compile(r"\bmasked_select\s*\("),
    "unique": re.compile(r"\btorch::unique|_unique2?\s*\("),
}
MARKER = "host-sync-ok:"


def code_part(line: str) -> str:
    """The line without its // comment (a pattern named in a comment is not a call)."""
    return line.split("//", 1)[0]


def unmarked_syncs(text: str):
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        code = code_part(line)
        for name, pattern in PATTERNS.items():
            if not pattern.search(code):
                continue
            previous = lines[number - 2] if number >= 2 else ""
            if MARKER in line or MARKER in previous:
                continue
            yield number, name, line.strip()


def test_every_host_sync_in_attention_is_marked(repo_root):
    sources = sorted((repo_root / "model" / "attention").rglob("*.cc")) + sorted(
        (repo_root / "model" / "attention").rglob("*.h"))
    assert len(sources) >= 10, "model/attention/ not found"
    found = []
    for path in sources:
        for number, name, line in unmarked_syncs(path.read_text()):
            found.append(f"{path.relative_to(repo_root)}:{number}: {name}: {line}")
    assert not found, ("host synchronisation inside attention without a `// host-sync-ok: why` "
                       "comment (CPU-only branch, load time):\n" + "\n".join(found))


@pytest.mark.parametrize("line", [
    "  if (!empty.any().item<bool>()) {",
    "  const torch::Tensor stats = x.cpu();",
    "  const torch::Tensor s = x.detach().to(torch::kCPU, torch::kFloat);",
    "  auto idx = torch::nonzero(mask);",
    "  auto c = torch::bincount(ids);",
    "  auto t = torch::repeat_interleave(counts);",
    "  auto i = torch::tensor(rows).to(device);",
])
def test_the_check_catches_an_unmarked_sync(line):
    assert list(unmarked_syncs("int x;\n" + line + "\n"))


def test_the_check_accepts_a_marked_sync_and_ignores_comments():
    marked = "  // host-sync-ok: CPU only.\n  if (x.is_cpu() && !e.any().item<bool>()) {\n"
    assert not list(unmarked_syncs(marked))
    assert not list(unmarked_syncs("  // bincount reads its input's range on the host\n"))

"""The repository stands alone: no tracked file cites a document outside it.

A clone of longenc must be able to open every document its code, build files and docs point to.
Fails on:
  - a path into notes kept beside the checkout (`../shared`);
  - a Markdown file name (`NAME.md`, `dir/NAME.md`, `NAME.md#anchor`) that resolves neither
    relative to the citing file's directory nor to the repository root;
  - the names of design notes that live outside the repository, cited without `.md`.
URLs are not citations of the repository and are ignored.
"""
import pathlib
import re
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]

# Files whose bytes are data, not prose or code.
BINARY_SUFFIXES = {".png", ".safetensors", ".bin", ".gz"}
# Paths into a sibling directory of the checkout.
OUTSIDE = re.compile(r"\.\./shared\b|/work/shared\b")
URL = re.compile(r"[a-z][a-z0-9+.-]*://\S+")
# `$OUT/x.md` and `${dir}/x.md` name files a script writes, not documents.
MARKDOWN = re.compile(r"(?<![\w./${}-])((?:\.{1,2}/)*[\w-]+(?:[./][\w-]+)*\.md)\b")
# Design notes kept outside the repository, cited by name without the suffix.
OUTSIDE_NOTES = re.compile(
    r"\b(attention-spec|build-notes|families-reference|serving-anchors|style-anchors)\b(?!\.md)")


def tracked_files():
    out = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True,
                         check=True).stdout.decode().split("\0")
    return [name for name in out if name]


def tracked_text_files():
    for name in tracked_files():
        path = ROOT / name
        if path.suffix in BINARY_SUFFIXES or not path.is_file():
            continue
        try:
            yield name, path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # fuzz corpora and other binary inputs


def resolves(citing: str, target: str, quoted: bool = False) -> bool:
    """True when `target` names a file inside the repository. A quoted name is a path
    component in code (`ROOT / "docs" / "DEPLOY.md"`): any tracked file of that name will do."""
    if quoted and any(pathlib.PurePosixPath(name).name == target for name in tracked_files()):
        return True
    for base in (ROOT / citing).parent, ROOT:
        candidate = (base / target).resolve()
        if candidate.is_relative_to(ROOT) and candidate.is_file():
            return True
    return False


def dangling_citations():
    found = []
    for name, text in tracked_text_files():
        if name == "tests/python/test_citations.py":
            continue  # its patterns name what they look for
        for number, line in enumerate(text.splitlines(), 1):
            where = f"{name}:{number}"
            line = URL.sub(" ", line)
            for match in OUTSIDE.finditer(line):
                found.append(f"{where}: path outside the repository '{match.group(0)}'")
            for match in MARKDOWN.finditer(line):
                quoted = match.start() > 0 and line[match.start() - 1] in "\"'"
                if not resolves(name, match.group(1), quoted):
                    found.append(f"{where}: '{match.group(1)}' is not a file of the repository")
            for match in OUTSIDE_NOTES.finditer(line):
                found.append(f"{where}: '{match.group(1)}' is a note outside the repository")
    return found


def test_every_cited_document_is_in_the_repository():
    found = dangling_citations()
    assert not found, (f"{len(found)} citation(s) of documents that a clone does not have "
                       "(cite docs/ARCHITECTURE.md, docs/ATTENTION.md, docs/BENCHMARKS.md, "
                       "docs/QUALITY.md ... instead):\n" + "\n".join(found))


def test_the_check_sees_a_dangling_citation(tmp_path):
    """The patterns catch what they are for and leave URLs and real files alone."""
    line = ("see EVALUATION.md §2, attention-spec §5, ../shared/x and README.md; "
            "https://example.org/NOTES.md is a URL")
    hits = [m.group(1) for m in MARKDOWN.finditer(URL.sub(" ", line))]
    assert hits == ["EVALUATION.md", "README.md"]
    assert not resolves("docs/API.md", "EVALUATION.md")
    assert resolves("docs/API.md", "README.md") and resolves("docs/API.md", "RELIABILITY.md")
    assert OUTSIDE.search(line) and OUTSIDE_NOTES.search(line)

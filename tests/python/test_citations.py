"""The repository stands alone: no tracked file cites a document outside it.

A clone of longenc must be able to open every document its code, build files and docs point to.
Fails on:
  - a path into the notes kept beside the checkout (the sibling directory OUTSIDE_DIR names);
  - a Markdown file name (`NAME.md`, `dir/NAME.md`, `NAME.md#anchor`) that resolves neither
    relative to the citing file's directory nor to the repository root;
  - the names of design notes that live outside the repository, cited without `.md`;
  - a numbered section (`docs/ATTENTION.md §2.4`) that the cited file does not have.
URLs are not citations of the repository and are ignored.
"""
import pathlib
import re
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]

# Files whose bytes are data, not prose or code.
BINARY_SUFFIXES = {".png", ".safetensors", ".bin", ".gz"}
# The directory beside the checkout that holds notes a clone does not have. The names below are
# assembled from parts so that this file does not itself cite what it looks for.
OUTSIDE_DIR = "sha" + "red"
OUTSIDE = re.compile(rf"\.\./{OUTSIDE_DIR}\b|/work/{OUTSIDE_DIR}\b")
URL = re.compile(r"[a-z][a-z0-9+.-]*://\S+")
# `$OUT/x.md` and `${dir}/x.md` name files a script writes, not documents.
MARKDOWN = re.compile(r"(?<![\w./${}-])((?:\.{1,2}/)*[\w-]+(?:[./][\w-]+)*\.md)\b")
# Design notes kept outside the repository, cited by name without the suffix, or as "spec §N"
# (the outside attention spec; the repository's own is cited as docs/ATTENTION.md §N).
OUTSIDE_NOTE_NAMES = ["-".join(parts) for parts in (
    ("attention", "spec"), ("build", "notes"), ("families", "reference"), ("serving", "anchors"),
    ("style", "anchors"))]
OUTSIDE_NOTES = re.compile(
    r"\b(" + "|".join(OUTSIDE_NOTE_NAMES) + r")\b(?!\.md)" + r"|\b(spec §)")
# "docs/X.md §2.4": the cited file must have a heading numbered 2.4 ("## 2.4 ..." or "### 2.4. ...").
SECTION = re.compile(r"([\w./-]+\.md)\)?,?\s*§\s*([0-9]+[a-z]?(?:\.[0-9]+)*)")


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


def has_section(citing: str, target: str, number: str) -> bool:
    """True unless `target` is a file of the repository without a heading numbered `number`."""
    for base in (ROOT / citing).parent, ROOT:
        path = (base / target).resolve()
        if path.is_relative_to(ROOT) and path.is_file():
            heading = re.compile(rf"^#+\s+{re.escape(number)}[.\s]", re.MULTILINE)
            return heading.search(path.read_text(encoding="utf-8")) is not None
    return True  # a missing file is reported as such


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
            for match in SECTION.finditer(line):
                if not has_section(name, match.group(1), match.group(2)):
                    found.append(f"{where}: {match.group(1)} has no section {match.group(2)}")
            for match in OUTSIDE_NOTES.finditer(line):
                found.append(f"{where}: '{match.group(0)}' cites a note outside the repository")
    return found


def test_every_cited_document_is_in_the_repository():
    found = dangling_citations()
    assert not found, (f"{len(found)} citation(s) of documents that a clone does not have "
                       "(cite docs/ARCHITECTURE.md, docs/ATTENTION.md, docs/BENCHMARKS.md, "
                       "docs/QUALITY.md ... instead):\n" + "\n".join(found))


def test_the_check_sees_a_dangling_citation():
    """The patterns catch what they are for and leave URLs and real files alone."""
    missing = "NOT_IN_THIS_REPO.md"
    line = (f"see {missing} §2, {OUTSIDE_NOTE_NAMES[0]} §5, ../{OUTSIDE_DIR}/x and README.md; "
            "https://example.org/NOTES.md is a URL")
    assert [m.group(0) for m in OUTSIDE_NOTES.finditer("as spec §2.1 and docs/ATTENTION.md §2.1")] \
        == ["spec §"]
    hits = [m.group(1) for m in MARKDOWN.finditer(URL.sub(" ", line))]
    assert hits == [missing, "README.md"]
    assert not resolves("docs/API.md", missing)
    assert resolves("docs/API.md", "README.md") and resolves("docs/API.md", "RELIABILITY.md")
    assert OUTSIDE.search(line) and OUTSIDE_NOTES.search(line)
    assert has_section("README.md", "docs/ATTENTION.md", "2.4")
    assert has_section("README.md", "docs/BENCHMARKS.md", "5")
    assert not has_section("README.md", "docs/BENCHMARKS.md", "2e")

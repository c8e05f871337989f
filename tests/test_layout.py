"""docs/layout.md lists every tracked source file, once, and nothing that is gone.

A line of its listing starts with a path, a pattern (`docs/*.md`: `*` stays inside one folder) or a folder
(`web/page/`: everything under it), then what it holds. Sources are the tracked files but data, pictures and
lockfiles: the fixtures, the conformance cases' folders, images, model files and package-lock.json.
"""
import re
import shutil
import subprocess

import pytest

from conftest import REPO

LAYOUT = REPO / "docs" / "layout.md"
NOT_SOURCE_FOLDERS = ("tests/fixtures/", "tests/conformance/folders/", "runtime/models/")
NOT_SOURCE_ENDINGS = (".png", ".onnx", "package-lock.json")


def covers(entry: str, path: str) -> bool:
    if entry.endswith("/"):
        return path.startswith(entry)
    return re.fullmatch(re.escape(entry).replace(r"\*", "[^/]*"), path) is not None


def listed() -> list[str]:
    """The first word of each line of the listing (a line that starts with spaces goes on the one before)."""
    block = re.search(r"^```\n(.*?)^```", LAYOUT.read_text(), re.S | re.M)[1]
    return [line.split()[0] for line in block.splitlines() if line and not line[0].isspace()]


def tracked() -> list[str]:
    if shutil.which("git") is None:
        pytest.skip("git is not installed: the tracked files are unknown")
    r = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip("not a git checkout: the tracked files are unknown")
    return [p for p in r.stdout.split("\0") if p and (REPO / p).is_file()]


def test_layout_lists_every_tracked_source_file_once_and_nothing_that_is_gone():
    entries, files = listed(), tracked()
    sources = [f for f in files if not f.startswith(NOT_SOURCE_FOLDERS) and not f.endswith(NOT_SOURCE_ENDINGS)]
    add = [f for f in sources if not any(covers(e, f) for e in entries)]
    remove = [e for e in entries if not any(covers(e, f) for f in files) and not list(REPO.glob(e.rstrip("/")))]
    twice = sorted({e for e in entries if entries.count(e) > 1})
    problems = [f"add a line (the path, then what it holds) for: {', '.join(add)}" if add else "",
                f"remove the lines of (no such file): {', '.join(remove)}" if remove else "",
                f"keep one line of: {', '.join(twice)}" if twice else ""]
    assert not add and not remove and not twice, "docs/layout.md: " + "; ".join(p for p in problems if p)

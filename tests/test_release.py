"""What the published packages promise their users: one version, the license, a README that is the entry point.

`make release` (release/check.py) builds the wheel, the sdist and the npm tarball and checks them as installed;
these are the fast checks on the sources they are built from.
"""
import json
import re
import shutil
import subprocess
import sys
import tomllib

import pytest

from conftest import REPO, UV_ENV, need, run_cli
import vae_edge

README = REPO / "README.md"
DOCS = REPO / "docs"
# Linked from here and written on other branches (issue 24 writes the folder format's spec).
PENDING = {DOCS / "format.md"}


def _links(path):
    """The relative link targets of a Markdown file, without #anchors."""
    targets = re.findall(r"\]\(([^)\s]+)\)", path.read_text())
    return [t.split("#")[0] for t in targets if not re.match(r"[a-z]+:", t) and not t.startswith("#")]


def test_one_version_number_for_python_and_javascript():
    package_json = json.loads((REPO / "web" / "package.json").read_text())
    lock = json.loads((REPO / "web" / "package-lock.json").read_text())
    assert re.fullmatch(r"\d+\.\d+\.\d+", vae_edge.__version__)
    assert package_json["version"] == lock["version"] == vae_edge.__version__


def test_pyproject_reads_the_version_from_vae_edge():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "vae_edge.__version__"}


def test_vae_info_prints_the_version():
    r = run_cli("vae-info", "--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"vae-edge {vae_edge.__version__}\n"


def test_changelog_has_an_entry_for_this_version():
    """The newest entry is this version's: "## 0.2.0 (unreleased)" until it is released, then with its date."""
    headings = re.findall(r"^## (\S+) \(([^)]*)\)", (REPO / "CHANGELOG.md").read_text(), re.M)
    assert headings[0][0] == vae_edge.__version__
    assert headings[0][1] == "unreleased" or re.fullmatch(r"\d{4}-\d\d-\d\d", headings[0][1])


def test_license_is_mit_and_the_npm_package_carries_the_same_text():
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Copyright (c) 2026 the vae-edge authors" in text
    assert (REPO / "web" / "LICENSE").read_text() == text
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    assert json.loads((REPO / "web" / "package.json").read_text())["license"] == "MIT"


def test_classifiers_name_the_tested_pythons_from_the_floor_up():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pythons = [c.rsplit(" :: ", 1)[1] for c in project["classifiers"] if re.fullmatch(r".*Python :: 3\.\d+", c)]
    assert pythons and project["requires-python"] == f">={pythons[0]}"
    assert "Operating System :: POSIX :: Linux" in project["classifiers"]


def test_readme_is_short_and_links_every_doc():
    lines = README.read_text().splitlines()
    assert len(lines) < 200
    linked = {(REPO / t).resolve() for t in _links(README)}
    docs = {p.resolve() for p in DOCS.glob("*.md")} | PENDING
    assert docs - linked == set(), "every doc is linked from the README"


def test_every_relative_link_in_the_docs_resolves():
    for page in [README, REPO / "CHANGELOG.md", *DOCS.glob("*.md")]:
        for target in _links(page):
            path = (page.parent / target).resolve()
            assert path.exists() or path in PENDING, f"{page.name} links to {target}, which does not exist"


def test_readme_renders_as_the_pypi_description():
    """PyPI shows README.md as it is: no images (relative ones do not render there), and valid Markdown."""
    from readme_renderer.markdown import render

    text = README.read_text()
    assert "![" not in text and "<img" not in text
    assert render(text, variant="GFM") is not None


def test_the_npm_package_is_public_and_leaves_the_onnxruntime_choice_to_the_app():
    """A browser app installs onnxruntime-web alone; make release proves it resolves no onnxruntime-node."""
    package = json.loads((REPO / "web" / "package.json").read_text())
    assert "private" not in package
    assert set(package["peerDependencies"]) == {"onnxruntime-node", "onnxruntime-web"}
    assert all(package["peerDependenciesMeta"][name]["optional"] for name in package["peerDependencies"])
    assert "dependencies" not in package


def test_the_javascript_example_is_the_same_in_both_readmes():
    """README.md (the repository, PyPI) and web/README.md (npm) show one example."""
    block = lambda text: re.search(r"```js\n(.*?)```", text, re.S)[1]  # noqa: E731
    assert block(README.read_text()) == block((REPO / "web" / "README.md").read_text())


def test_the_model_card_gives_the_bundled_models_own_metrics():
    card = (DOCS / "model-card.md").read_text()
    meta = json.loads((REPO / "runtime" / "models" / "fashion-mnist" / "vae.json").read_text())
    metrics, int8 = meta["metrics"], meta["int8"]
    for figure in (f"{metrics['iwae']['nll']:.2f}", f"{metrics['test_loss']:.2f}", f"{metrics['test_rec']:.2f}",
                   f"{metrics['test_kl']:.2f}",
                   f"{int8['x_mean_abs']:.5f}", f"{int8['mu_mean_abs']:.4f}", f"{meta['model']['latent_dim']} latent",
                   f"--epochs {meta['recipe']['epochs']}", f"--seed {meta['recipe']['seed']}"):
        assert figure in card, figure
    assert "MIT" in card and "Zalando" in card


def test_make_help_gives_one_line_to_each_target():
    phony = re.search(r"^\.PHONY:(.*(?:\\\n.*)*)", (REPO / "Makefile").read_text(), re.M)[1].replace("\\\n", " ")
    r = subprocess.run(["make", "-s", "help"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    listed = [line.split()[0] for line in r.stdout.splitlines()]
    assert sorted(listed) == sorted(phony.split()), "each .PHONY target has a `## what it does` note, once"


@pytest.mark.slow
def test_make_releases_check_passes_on_the_wheel_and_sdist_of_make_dist_and_the_npm_tarball(dist, tmp_path):
    """release/check.py, as `make release` runs it: each artifact's files against release/files.txt (so the lists
    cannot drift unnoticed), the wheel installed without torch, the tarball in a fresh Node project."""
    need(shutil.which("npm") is not None, "npm is not installed: the release check packs and installs the tarball")
    out = tmp_path / "dist"
    out.mkdir()
    for built in [*dist.glob("*.whl"), *dist.glob("*.tar.gz")]:
        shutil.copy(built, out)
    pack = subprocess.run(["npm", "pack", "--pack-destination", str(out)], cwd=REPO / "web", capture_output=True,
                          text=True, timeout=300)
    assert pack.returncode == 0, pack.stderr[-2000:]
    r = subprocess.run([sys.executable, "release/check.py", str(out)], cwd=REPO, env=UV_ENV, capture_output=True,
                       text=True, timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]

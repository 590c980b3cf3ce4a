"""The documentation site builds with warnings as errors, and every Python example in it runs."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
FENCE = re.compile(r"^```python\n(.*?)^```", flags=re.S | re.M)


def python_blocks(page: Path) -> list[str]:
    return FENCE.findall(page.read_text(encoding="utf-8"))


PAGES_WITH_CODE = [p for p in PAGES if python_blocks(p)]


@pytest.fixture
def one_thread(monkeypatch):
    """Tiny models on a shared 2-core machine: one thread each for torch and LightGBM avoids
    thread pools that wait on each other (several times faster here, same results)."""
    import torch

    from crosskd.tabular import gbdt

    monkeypatch.setitem(gbdt.DEFAULT_PARAMS, "n_jobs", 1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(
    "page", PAGES_WITH_CODE, ids=[str(p.relative_to(DOCS)) for p in PAGES_WITH_CODE]
)
def test_python_examples_run(page, tmp_path, monkeypatch, one_thread):
    """The blocks of one page run in order, in one namespace, in an empty folder."""
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "docs_example"}
    for i, code in enumerate(python_blocks(page)):
        exec(compile(code, f"{page.relative_to(ROOT)} block {i + 1}", "exec"), namespace)


def test_every_page_is_in_the_nav():
    import yaml

    config = (ROOT / "mkdocs.yml").read_text()
    nav = yaml.safe_load(config)["nav"]

    def files(entries):
        for entry in entries:
            value = next(iter(entry.values())) if isinstance(entry, dict) else entry
            yield from (files(value) if isinstance(value, list) else [value])

    listed = set(files(nav))
    on_disk = {str(p.relative_to(DOCS)) for p in PAGES}
    assert on_disk <= listed, f"pages missing from the nav in mkdocs.yml: {on_disk - listed}"


@pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings") is None,
    reason='mkdocs / mkdocstrings not installed (pip install -e ".[docs]")',
)
def test_site_builds_strict(tmp_path):
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (tmp_path / "site" / "api" / "index.html").is_file()
    assert "KDClassifier" in (tmp_path / "site" / "api" / "index.html").read_text()

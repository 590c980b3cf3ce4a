"""The README is true: its set-up commands, its Python example and its CLI example run."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from crosskd.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_readme_starts_with_the_two_setup_commands():
    first = blocks("bash")[0].strip().splitlines()
    assert first == [
        'pip install -e ".[dev]" && crosskd demo',
        'pip install -e ".[dev]" && pytest',
    ]
    assert README.index("```bash") < README.index("\n## ")
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install -e ".[dev]" && pytest' in ci


def test_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (code,) = blocks("python")
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    assert "average_precision" in out
    assert (tmp_path / "fraud-student.safetensors").is_file()


@pytest.mark.parametrize("command", [b for b in blocks("bash")[1:] if "crosskd distill" in b])
def test_readme_cli_example_runs(tmp_path, monkeypatch, command):
    from test_cli import fraud_like_csv

    monkeypatch.chdir(tmp_path)
    fraud_like_csv(tmp_path / "transactions.csv", n=800)
    argv = shlex.split(command.strip())
    assert argv[0] == "crosskd"
    assert main([*argv[1:], "--epochs", "3", "--quiet"]) == 0
    assert (tmp_path / "run" / "report.json").is_file()
    assert (tmp_path / "run" / "teacher-lightgbm.txt").is_file()

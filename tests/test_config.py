"""Config files for crosskd distill: round trip, validation, no code execution."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from crosskd.config import (
    CONFIG_NAME,
    DEFAULTS,
    KEYS,
    SETTINGS,
    defaults,
    keys_of,
    load_config,
    resolve_settings,
    save_resolved_config,
)
from crosskd.exceptions import ConfigError


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_round_trip(tmp_path):
    config = write(
        tmp_path / "c.yaml",
        "data: tx.csv\ntarget: is_fraud\nout: run\ndrop: [id, ts]\nhidden: [16, 8]\n"
        "temperature: 4\nbatch-size: 256\nprecision: 32\nquiet: true\n",
    )
    settings = resolve_settings(config)
    assert set(settings) == set(KEYS)
    assert settings["data"] == str(tmp_path / "tx.csv")  # relative to the config file
    assert settings["temperature"] == 4.0 and settings["batch_size"] == 256
    assert settings["precision"] == "32" and settings["hidden"] == [16, 8]
    assert settings["alpha"] == DEFAULTS["alpha"]
    saved = save_resolved_config(tmp_path / "run", settings)
    assert saved == tmp_path / "run" / CONFIG_NAME
    assert resolve_settings(saved) == settings
    assert yaml.safe_load(saved.read_text())["drop"] == ["id", "ts"]


def test_flags_override_the_file(tmp_path):
    config = write(tmp_path / "c.yaml", "data: a.csv\ntarget: y\nout: run\nepochs: 50\n")
    settings = resolve_settings(config, {"epochs": 3, "alpha": None, "out": "/elsewhere"})
    assert settings["epochs"] == 3
    assert settings["alpha"] == DEFAULTS["alpha"]  # None means "flag not given"
    assert settings["out"] == "/elsewhere"
    only_flags = resolve_settings(None, {"data": "a.csv", "target": "y", "out": "o"})
    assert only_flags["data"] == "a.csv"


def test_unknown_key_suggests_the_right_one(tmp_path):
    config = write(tmp_path / "c.yaml", "data: a.csv\ntarget: y\nout: run\ntemprature: 2\n")
    with pytest.raises(
        ConfigError, match=r"unknown setting 'temprature'\. Did you mean `temperature`"
    ):
        load_config(config)


@pytest.mark.parametrize(
    "line,message",
    [
        ("epochs: ten", "`epochs` must be a positive integer"),
        ("epochs: 2.5", "`epochs` must be a positive integer"),
        ("alpha: 1.5", r"`alpha` must be a number in \[0, 1\]"),
        ("hidden: [32, -1]", "`hidden` must be a list of positive integers"),
        ("drop: id", r"Write drop: \[id\]"),
        ("quiet: maybe", "`quiet` must be true or false"),
        ("precision: 64", "`precision` must be one of"),
        ("temperature: true", "`temperature` must be a number > 0"),
    ],
)
def test_wrong_types_are_explained(tmp_path, line, message):
    config = write(tmp_path / "c.yaml", f"data: a.csv\ntarget: y\nout: run\n{line}\n")
    with pytest.raises(ConfigError, match=message):
        load_config(config)


def test_missing_required_key(tmp_path):
    config = write(tmp_path / "c.yaml", "data: a.csv\nout: run\n")
    with pytest.raises(ConfigError, match=r"Missing required setting\(s\) `target`"):
        resolve_settings(config)


def test_python_object_tags_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    config = write(
        tmp_path / "c.yaml",
        "data: a.csv\ntarget: y\nout: run\n"
        f"seed: !!python/object/apply:os.system ['touch {marker}']\n",
    )
    with pytest.raises(ConfigError, match="Python object"):
        load_config(config)
    assert not marker.exists()


@pytest.mark.parametrize(
    "text,message",
    [("- a\n- b\n", "must hold a mapping"), ("data: [unclosed\n", "not valid YAML")],
)
def test_not_a_mapping_or_not_yaml(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path / "c.yaml", text))
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_one_schema_per_kind_with_its_own_defaults(tmp_path):
    assert DEFAULTS == defaults("table") and set(KEYS) == set(keys_of("table"))
    table, image, lines = defaults("table"), defaults("image"), defaults("textline")
    assert (table["temperature"], image["temperature"], lines["temperature"]) == (2.0, 4.0, 1.0)
    assert image["hidden"] == [800, 800] and "hidden" not in lines and "target" not in image
    assert "head_width" in lines and "image_size" in image and "drop" in table
    # each kind's settings resolved from a file hold the kind's keys and defaults
    # image files take the image keys (they were read through the table schema before)
    config = write(
        tmp_path / "c.yaml",
        "task: image\ndata: x.npz\nout: run\nepochs: 3\nstudent: cnn\nshift: 1\nlr: 0.01\n",
    )
    settings = resolve_settings(config, None, "image")
    assert set(settings) == set(keys_of("image"))
    assert settings["epochs"] == 3 and settings["alpha"] == image["alpha"]
    assert (settings["student"], settings["shift"], settings["lr"]) == ("cnn", 1, 0.01)
    saved = save_resolved_config(tmp_path / "run", settings, "image")
    assert yaml.safe_load(saved.read_text())["task"] == "image"
    assert resolve_settings(saved, None, "image") == settings


def test_a_setting_of_another_kind_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="`hidden` is a setting for tables, images, but the data"):
        resolve_settings(None, {"data": "l", "out": "o", "hidden": [8]}, "textline")
    with pytest.raises(
        ConfigError, match="`drop` is a setting for tables, but the data is read as"
    ):
        resolve_settings(None, {"data": "x.npz", "out": "o", "drop": ["id"]}, "image")
    config = write(tmp_path / "c.yaml", "data: l\nout: o\nheight: 32\n")
    with pytest.raises(ConfigError, match="`height` is a setting for text lines"):
        resolve_settings(config, {"target": "y"}, "table")


def test_library_cli_and_help_read_the_same_defaults(capsys):
    """The defaults of --help come from the schema, each labelled with its kind."""
    from crosskd.cli import _flag, build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["distill"]
    flags = {o for a in sub._actions for o in a.option_strings}
    for key in SETTINGS:
        assert _flag(key) in flags
    help_text = " ".join(sub.format_help().split())
    assert "(default: tables 2, images 4, text lines 1)" in help_text  # --temperature
    assert "(default: tables 32,16, images 800,800)" in help_text  # --hidden
    assert "text lines only; default 32" in help_text  # --height


def test_docs_list_every_setting():
    text = (Path(__file__).resolve().parents[1] / "docs" / "cli.md").read_text(encoding="utf-8")
    for key in SETTINGS:
        assert f"/ `{key}` |" in text, key

"""The `imgtrain` command: help, exit codes, error lines, and each subcommand end to end."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from imgtrain import ImageDirectory
from imgtrain.cli import build_parser


def _subparsers(parser):
    return next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")


COMMANDS = (
    "convert",
    "split",
    "audit",
    "transform",
    "densenet",
    "resnet",
    "model",
    "models",
    "train",
    "lr-find",
    "sweep",
    "score",
    "evaluate",
    "explain",
    "export",
    "serve",
    "studio",
    "demo",
)


def test_help_lists_one_subcommand_per_module(run_cli):
    code, out, _ = run_cli("--help")
    assert code == 0
    listed = re.findall(r"^    ([a-z-]+)\b", out, re.M)  # argparse indents subcommands by four spaces
    assert tuple(listed) == COMMANDS
    for command in COMMANDS:
        assert run_cli(command, "--help")[0] == 0


def _defaults(*argv: str) -> dict:
    return vars(build_parser().parse_args(list(argv)))


def test_score_serve_and_demo_options_default_to_the_library_defaults():
    import inspect

    from imgtrain import TrainConfig, score
    from imgtrain.cli import serve_config as _serve_config
    from imgtrain.config import ServeConfig

    scored = _defaults("score", "--model", "m", "--data", "d", "--out", "o.csv")
    for name, parameter in inspect.signature(score).parameters.items():
        if parameter.default is not inspect.Parameter.empty and name in scored:
            assert scored[name] == parameter.default, name
    assert {"batch_size", "workers", "skip_invalid"} <= set(scored)
    import argparse

    assert _serve_config(argparse.Namespace(**_defaults("serve", "m"))) == ServeConfig()
    assert _defaults("demo")["epochs"] == TrainConfig.epochs


def _all_parsers(parser):
    yield parser
    try:
        sub = _subparsers(parser)
    except StopIteration:
        return
    for child in sub.choices.values():
        yield from _all_parsers(child)


def test_every_option_shows_its_default():
    import argparse

    for parser in _all_parsers(build_parser()):
        formatter = parser._get_formatter()
        for action in parser._actions:
            if (
                not action.option_strings
                or action.default in (argparse.SUPPRESS, None)
                or action.required
                or action.dest in ("help", "version")
            ):
                continue
            assert "%(default)" in formatter._get_help_string(action), (parser.prog, action.dest)
        assert "(default:" in parser.format_help() or parser.prog == "imgtrain transform"


def test_transform_init_help_shows_designer_defaults(run_cli):
    code, out, _ = run_cli("transform", "init", "--help")
    text = " ".join(out.split())
    assert code == 0
    assert "--size PIXELS target length of the shorter side for --resize (default: 256)" in text
    assert "--crop-size PIXELS side of the center crop (default: 224)" in text
    assert "--random-horizontal-flip, --no-random-horizontal-flip" in text


def test_wrong_usage_exits_2(run_cli):
    code, _, err = run_cli("split", "only-one-arg")
    assert code == 2 and "usage:" in err


def test_error_is_one_line_with_its_name_and_exit_1(run_cli, tmp_path):
    code, out, err = run_cli("convert", tmp_path / "missing", tmp_path / "out")
    assert code == 1 and out == ""
    assert err.startswith("error: InvalidDatasetError: The source")
    assert "Traceback" not in err and "(designer error 0018)" in err


def test_debug_shows_the_traceback(run_cli, tmp_path):
    code, _, err = run_cli("--debug", "convert", tmp_path / "missing", tmp_path / "out")
    assert code == 1 and "Traceback" in err
    code, _, err = run_cli("convert", tmp_path / "missing", tmp_path / "out", "--debug")
    assert code == 1 and "Traceback" in err


def test_pipeline_through_the_cli(run_cli, labeled_folder, tmp_path):
    code, out, _ = run_cli("convert", labeled_folder, tmp_path / "all")
    assert code == 0 and "10 images, 2 classes" in out
    code, out, _ = run_cli(
        "split", tmp_path / "all", tmp_path / "train", tmp_path / "valid", "--fraction", "0.5", "--seed", "3"
    )
    assert code == 0
    assert len(ImageDirectory.open(tmp_path / "train")) == 5
    code, _, _ = run_cli(
        "transform",
        "init",
        tmp_path / "t.json",
        "--no-resize",
        "--crop-size",
        "8",
        "--random-rotation",
        "--random-rotation-degrees",
        "15",
    )
    assert code == 0
    spec = json.loads((tmp_path / "t.json").read_text())["transforms"]
    assert (spec["resize"], spec["crop_size"], spec["random_rotation"], spec["random_rotation_degrees"]) == (
        False,
        8,
        True,
        15.0,
    )
    code, _, _ = run_cli(
        "transform", "apply", tmp_path / "t.json", tmp_path / "train", tmp_path / "t8", "--mode", "inference"
    )
    assert code == 0
    assert {(r.width, r.height) for r in ImageDirectory.open(tmp_path / "t8")} == {(8, 8)}


def test_existing_output_error_names_the_fix(run_cli, labeled_folder, tmp_path):
    run_cli("convert", labeled_folder, tmp_path / "all")
    code, _, err = run_cli("convert", labeled_folder, tmp_path / "all")
    assert code == 1 and "OutputExistsError" in err and "--overwrite" in err
    code, _, _ = run_cli("convert", labeled_folder, tmp_path / "all", "--overwrite")
    assert code == 0


def test_the_cli_names_the_fix_as_an_option_and_the_library_as_a_parameter(run_cli, labeled_folder, tmp_path):
    """Issue 25: OutputExistsError said '--overwrite (overwrite=True)' to everyone."""
    import imgtrain

    imgtrain.convert(labeled_folder, tmp_path / "all", progress=False)
    with pytest.raises(imgtrain.OutputExistsError) as caught:
        imgtrain.convert(labeled_folder, tmp_path / "all", progress=False)
    assert "pass overwrite=True to replace it" in str(caught.value) and "--" not in str(caught.value)
    code, _, err = run_cli("convert", labeled_folder, tmp_path / "all")
    assert code == 1 and "pass --overwrite to replace it" in err and "overwrite=True" not in err


def test_bad_workers_value_is_refused_before_any_work(run_cli, labeled_folder, tmp_path):
    code, _, err = run_cli("convert", labeled_folder, tmp_path / "o", "--workers", "x")
    assert code == 2 and "--workers" in err  # not a number: wrong usage
    code, _, err = run_cli("convert", labeled_folder, tmp_path / "o", "--workers", "-1")
    assert code == 1 and "workers must be an integer >= 0, got -1" in err  # the declaration's rule, as train's
    assert not (tmp_path / "o").exists()


def test_console_script_runs_as_a_module():
    result = subprocess.run([sys.executable, "-m", "imgtrain", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("imgtrain ")

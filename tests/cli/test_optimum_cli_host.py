"""Installing the plugin never breaks optimum-cli: start-up stays import-light, missing extras and wrong model
options end in one clear line, not a traceback."""

import sys

import pytest
from helpers.optimum_cli import HEAVY_MODULES, loaded_modules, optimum_cli

from optimum_dynexec import extras
from optimum_dynexec.commands.export import ModelArgumentError, model_load_errors
from optimum_dynexec.utils.model_files import looks_like_local_path


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["export", "openvino", "--help"], ["dynexec", "--help"], ["export", "dynexec", "--help"],
     ["dynexec", "label-steps", "--help"], ["dynexec", "train-step-predictor", "--help"]],
    ids=lambda argv: " ".join(argv[:-1]) or "root",
)
def test_help_works_without_the_extras(argv):
    result = optimum_cli(*argv)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "usage: optimum-cli" in result.stdout


def test_help_lists_the_plugin_commands_and_their_defaults():
    assert "dynexec" in optimum_cli("--help").stdout
    label_help = optimum_cli("dynexec", "label-steps", "--help").stdout
    # The defaults come from stepsaver/defaults.py, the same constants the labeller uses.
    from optimum_dynexec.stepsaver.defaults import DEFAULT_CANDIDATE_STEPS, DEFAULT_SSIM_THRESHOLD

    flat = " ".join(label_help.split())
    assert ",".join(map(str, DEFAULT_CANDIDATE_STEPS)) in flat.replace(", ", ",")
    assert f"(default {DEFAULT_SSIM_THRESHOLD})" in flat


@pytest.mark.parametrize(
    "argv, hint",
    [
        (["dynexec", "label-steps", "--pipeline", "x", "--prompts", "y", "--output", "z"],
         'label-steps needs diffusers: pip install "optimum-dynexec[diffusers]"'),
        (["dynexec", "train-step-predictor", "--labels", "x", "--output", "y", "--pipeline-output", "z"],
         'train-step-predictor --pipeline-output needs diffusers: pip install "optimum-dynexec[diffusers]"'),
    ],
    ids=["label-steps", "train-step-predictor"],
)
def test_stepsaver_commands_without_diffusers_say_which_extra(argv, hint, tmp_path):
    result = optimum_cli(*argv, cwd=tmp_path)
    assert result.returncode != 0
    assert hint in result.stderr
    assert "Traceback" not in result.stderr
    assert not any(tmp_path.iterdir()), "nothing is written before the check"


@pytest.mark.parametrize(
    "argv",
    [["--help"], ["dynexec", "label-steps", "--help"], ["export", "dynexec", "--help"]],
    ids=lambda argv: " ".join(argv[:-1]) or "root",
)
def test_argument_setup_imports_nothing_heavy(argv):
    # No package is blocked here: a heavy import anywhere in registration or argument setup would show.
    result = optimum_cli(*argv, blocked=(), report_modules=True)
    assert result.returncode == 0, result.stderr
    modules = loaded_modules(result)
    # Every dynexec subcommand's parse_args ran (optimum-cli builds all parsers at start-up)...
    assert {"optimum_dynexec.commands.label_steps", "optimum_dynexec.commands.train_step_predictor",
            "optimum_dynexec.stepsaver.defaults"} <= modules
    # ...and none of the heavy stacks came with it.
    assert [name for name in HEAVY_MODULES if name in modules] == []


@pytest.mark.parametrize(
    "argv, option",
    [
        (["--model", "/nonexistent/dir"], "--model"),
        (["--model", "./no-such-model"], "--model"),
        (["--model", "no-such-org/no-such-model", "--draft-model", "./no-such-draft"], "--draft-model"),
        (["--model", "no-such-org/no-such-model", "--eagle-head", "/nonexistent/head"], "--eagle-head"),
        (["--model", "not a valid id!"], "--model"),
    ],
    ids=["absolute", "relative", "draft", "eagle", "invalid-id"],
)
def test_export_with_a_missing_model_fails_cleanly(argv, option, tmp_path):
    output = tmp_path / "out"
    result = optimum_cli("export", "dynexec", *argv, str(output), blocked=(), report_modules=True)
    assert result.returncode != 0
    error_line = result.stderr.strip().splitlines()[-1]
    assert f"`{option}`" in error_line and "neither a local folder" in error_line, result.stderr
    assert "Traceback" not in result.stderr
    assert not output.exists()
    # Rejected before anything heavy was imported: no hub lookup, no export started.
    assert [name for name in HEAVY_MODULES if name in loaded_modules(result)] == []


def test_text_classification_needs_a_local_checkpoint(tmp_path):
    result = optimum_cli("export", "dynexec", "--task", "text-classification", "--model", "some-org/exits",
                         str(tmp_path / "out"), blocked=())
    assert result.returncode != 0
    assert "`--model` 'some-org/exits' is not a local folder" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "value, is_path",
    [("/abs/model", True), ("./model", True), ("../model", True), ("~/model", True), ("a/b/c", True),
     ("model.safetensors", True), ("weights/model.BIN", True), ("gpt2", False), ("org/model", False),
     ("org/model-v1.5", False)],
)
def test_looks_like_path(value, is_path):
    assert looks_like_local_path(value) is is_path


def test_failed_load_names_the_options_that_were_not_local(tmp_path):
    local = tmp_path / "target"
    local.mkdir()
    options = {"--model": str(local), "--draft-model": "org/draft", "--eagle-head": None}
    with pytest.raises(ModelArgumentError, match=r"^`--draft-model` 'org/draft' is neither a local folder nor loadable "
                                                 r"\(OSError: offline\)") as caught:
        with model_load_errors(options):
            raise OSError("offline\nsecond line")
    assert "--model" not in str(caught.value)
    assert isinstance(caught.value.__cause__, OSError)
    # Errors that do not come from loading pass through unchanged.
    with pytest.raises(RuntimeError):
        with model_load_errors(options):
            raise RuntimeError("a bug")


def test_failed_load_of_local_folders_names_them(tmp_path):
    with pytest.raises(ModelArgumentError, match=r"^`--model` '.*' could not be loaded \(OSError: no config.json\)"):
        with model_load_errors({"--model": str(tmp_path)}):
            raise OSError("no config.json")


def test_missing_extra_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers", None)
    assert extras.missing_extra("diffusers", command="label-steps") == (
        'label-steps needs diffusers: pip install "optimum-dynexec[diffusers]"'
    )
    with pytest.raises(extras.MissingExtraError) as caught:
        extras.require_extra("diffusers", command="label-steps")
    assert isinstance(caught.value, SystemExit) and caught.value.code == extras.missing_extra("diffusers", "label-steps")
    with pytest.raises(ValueError, match="Unknown extra"):
        extras.require_extra("difusers")


def test_broken_extra_says_what_failed(monkeypatch, tmp_path):
    (tmp_path / "dynexec_broken_extra.py").write_text("import dynexec_missing_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(extras.EXTRA_MODULES, "broken", ("dynexec_broken_extra",))
    message = extras.missing_extra("broken", command="cmd")
    assert message.startswith('cmd needs dynexec_broken_extra: pip install "optimum-dynexec[broken]"')
    assert "dynexec_missing_dependency" in message
    sys.modules.pop("dynexec_broken_extra", None)


def test_extras_match_setup_py():
    from pathlib import Path

    setup = (Path(__file__).resolve().parents[2] / "setup.py").read_text()  # tests/cli/ -> the repository
    for extra in extras.EXTRA_MODULES:
        assert f'"{extra}": [' in setup


def test_every_option_with_a_default_says_it_in_help():
    """`--help` of every plugin command states each default an option falls back to (issue 20: users should not have
    to read the code to know what they ran)."""
    import argparse

    from optimum_dynexec.commands import DynexecCommand
    from optimum_dynexec.commands.export import ExportDynexecCommand

    silent = []
    for command in [info.subcommand_class for info in DynexecCommand.SUBCOMMANDS] + [ExportDynexecCommand]:
        parser = argparse.ArgumentParser()
        command.parse_args(parser)
        for action in parser._actions:
            if (not action.option_strings or isinstance(action, (argparse._HelpAction, argparse._StoreTrueAction))
                    or action.required):
                continue
            if action.default is not None and "default" not in (action.help or "").lower():
                silent.append(f"{command.COMMAND.name} {action.option_strings[-1]}")
    assert silent == []


def test_every_plugin_command_ends_bad_input_in_one_line():
    from optimum_dynexec.commands import DynexecCommand, ExportDynexecCommand
    from optimum_dynexec.commands.base import PluginCommand

    # The wrapper comes with the base class: a command added later gets it as long as it derives from it.
    commands = [info.subcommand_class for info in DynexecCommand.SUBCOMMANDS] + [ExportDynexecCommand]
    assert all(issubclass(command, PluginCommand) for command in commands)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["dynexec", "calibrate-exits", "--model", "m", "--dataset", "d", "--output", "o", "--epsilon", "2"],
         "--epsilon is a probability strictly between 0 and 1"),
        (["dynexec", "train-exits", "--model", "m", "--dataset", "no-such-data.csv", "--output", "o"],
         "no-such-data.csv"),
    ],
    ids=["calibrate-exits", "train-exits"],
)
def test_a_value_error_in_a_command_is_a_usage_error_not_a_traceback(argv, message, tmp_path):
    result = optimum_cli(*argv, cwd=tmp_path, blocked=())
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith(f"optimum-cli {argv[0]} {argv[1]}: error:") and message in last_line
    assert not any(tmp_path.iterdir()), "nothing is written on bad input"

"""The optimum-cli subcommands: `optimum-cli dynexec <command>` and `optimum-cli export dynexec`.

One module per subcommand; each defines a `base.PluginCommand` subclass (a ValueError from `run()` ends as a usage
error, not a traceback) whose `run()` does its heavy imports.
Module level and `parse_args` run at every optimum-cli start-up, so they import only light modules (defaults for help
texts come from e.g. `stepsaver/defaults.py`); a `run()` that needs an extra calls `extras.require_extra` first.
"""

from optimum.commands.base import BaseOptimumCLICommand, CommandInfo

from .benchmark import BenchmarkCommand
from .export import ExportDynexecCommand
from .calibrate_exits import CalibrateExitsCommand
from .train_exits import TrainExitsCommand
from .train_eagle import TrainEagleCommand
from .label_steps import LabelStepsCommand
from .train_step_predictor import TrainStepPredictorCommand


class DynexecCommand(BaseOptimumCLICommand):
    COMMAND = CommandInfo(name="dynexec", help="Dynamic execution for OpenVINO models (optimum-dynexec).")
    SUBCOMMANDS = (
        CommandInfo(BenchmarkCommand.COMMAND.name, BenchmarkCommand.COMMAND.help, BenchmarkCommand),
        CommandInfo(TrainExitsCommand.COMMAND.name, TrainExitsCommand.COMMAND.help, TrainExitsCommand),
        CommandInfo(CalibrateExitsCommand.COMMAND.name, CalibrateExitsCommand.COMMAND.help, CalibrateExitsCommand),
        CommandInfo(LabelStepsCommand.COMMAND.name, LabelStepsCommand.COMMAND.help, LabelStepsCommand),
        CommandInfo(TrainStepPredictorCommand.COMMAND.name, TrainStepPredictorCommand.COMMAND.help, TrainStepPredictorCommand),
        CommandInfo(TrainEagleCommand.COMMAND.name, TrainEagleCommand.COMMAND.help, TrainEagleCommand),
    )


__all__ = ["DynexecCommand", "ExportDynexecCommand"]

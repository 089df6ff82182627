"""`optimum-cli export dynexec`: placeholder, filled in with the speculative model."""

from optimum.commands.base import BaseOptimumCLICommand, CommandInfo


class ExportDynexecCommand(BaseOptimumCLICommand):
    COMMAND = CommandInfo(name="dynexec", help="Export a model with its dynamic-execution parts to OpenVINO.")

    @staticmethod
    def parse_args(parser):
        pass

    def run(self):
        raise NotImplementedError

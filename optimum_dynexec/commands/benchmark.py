"""`optimum-cli dynexec benchmark`: placeholder wired in by the speculative benchmark."""

from optimum.commands.base import BaseOptimumCLICommand, CommandInfo


class BenchmarkCommand(BaseOptimumCLICommand):
    COMMAND = CommandInfo(name="benchmark", help="Time plain vs dynamic execution on the same OpenVINO model.")

    @staticmethod
    def parse_args(parser):
        pass

    def run(self):
        raise NotImplementedError

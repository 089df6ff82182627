"""The base of the plugin's subcommands: bad input ends in one line, as argparse's own usage errors do."""

import functools

from optimum.commands.base import BaseOptimumCLICommand


class PluginCommand(BaseOptimumCLICommand):
    """A `BaseOptimumCLICommand` whose `run()` turns a ValueError into argparse's usage error: the message (which
    names the argument and the fix) and exit status 2, not a traceback.

    The library raises ValueError for input it cannot use, with the message written for the user; a command would
    otherwise print it under a stack trace from deep inside. Subclasses just define `run()`.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        run = cls.__dict__.get("run")
        if run is None:
            return

        @functools.wraps(run)
        def run_with_usage_errors(self):
            try:
                return run(self)
            except ValueError as error:
                self.parser.error(str(error))

        cls.run = run_with_usage_errors

# Plugs optimum-dynexec's subcommands into optimum-cli. Kept import-light: optimum-cli imports every register
# file at start-up, so heavy imports live inside each command's run().
from optimum.commands.export.base import ExportCommand

from optimum_dynexec.commands import DynexecCommand, ExportDynexecCommand


REGISTER_COMMANDS = [
    DynexecCommand,
    (ExportDynexecCommand, ExportCommand),
]

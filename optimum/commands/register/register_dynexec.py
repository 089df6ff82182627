# Plugs optimum-dynexec's subcommands into optimum-cli. Kept import-light: optimum-cli imports every register
# file and builds every subcommand's arguments (`parse_args`) at each start-up, even for `optimum-cli export openvino`,
# so heavy imports live inside each command's run() (tests/cli/test_optimum_cli_host.py checks that none leaks in).
from optimum.commands.export.base import ExportCommand

from optimum_dynexec.commands import DynexecCommand, ExportDynexecCommand


REGISTER_COMMANDS = [
    DynexecCommand,
    (ExportDynexecCommand, ExportCommand),
]

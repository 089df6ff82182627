"""Optional extras (setup.py `extras_require`): which modules each brings, and the one-line hint when one is missing.

Import-light on purpose: the optimum-cli commands call it from `run()` before their heavy imports, so a missing extra
ends the command with an install hint instead of a traceback from deep inside an import chain.
"""

import importlib
from typing import Optional

PACKAGE = "optimum-dynexec"

# The importable modules behind each extra of setup.py; keep in step with its EXTRAS.
EXTRA_MODULES = {
    "diffusers": ("diffusers", "skimage"),
    "genai": ("openvino_genai",),
}


class MissingExtraError(SystemExit):
    """A command needs an extra that is not installed.

    A `SystemExit` so that optimum-cli, which does not catch errors from `run()`, prints the one-line message and
    exits with status 1 rather than printing a traceback.
    """


def install_hint(extra: str) -> str:
    """The pip command that installs `extra`."""
    return f'pip install "{PACKAGE}[{extra}]"'


def missing_extra(extra: str, command: Optional[str] = None) -> Optional[str]:
    """The one-line message saying what is missing from `extra` and how to install it, or `None` if it imports.

    Importing is the test (not just finding the module): an installed but broken package is as unusable as a missing
    one, and the command that asks is about to import it anyway.
    """
    if extra not in EXTRA_MODULES:
        raise ValueError(f"Unknown extra {extra!r}; known extras: {sorted(EXTRA_MODULES)}.")
    for module in EXTRA_MODULES[extra]:
        try:
            importlib.import_module(module)
        except ImportError as error:
            who = command or PACKAGE
            message = f"{who} needs {module}: {install_hint(extra)}"
            missing_name = (getattr(error, "name", None) or "").split(".")[0]
            if missing_name != module:
                # The module is there but one of its own imports failed: say which, or the hint looks wrong.
                message += f" (importing {module} failed: {error})"
            return message
    return None


def require_extra(extra: str, command: Optional[str] = None) -> None:
    """Raise `MissingExtraError` with an install hint unless every module of `extra` imports.

    Args:
        extra: the extra's name in setup.py (`"diffusers"`, `"genai"`).
        command: the command that needs it, named in the message (e.g. `"label-steps"`).
    """
    message = missing_extra(extra, command)
    if message is not None:
        raise MissingExtraError(message)

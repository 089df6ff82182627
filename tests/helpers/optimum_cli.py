"""optimum-cli run in a fresh interpreter, with chosen packages made unimportable (as if not installed).

Used by tests/cli/ (the plugin never breaks optimum-cli's start-up) and tests/benchmark/ (the benchmark command
stays import-light until it runs).
"""

import json
import subprocess
import sys

# The console script `optimum-cli` (see .venv/bin/optimum-cli) runs exactly this: `sys.exit(main())`.
CLI = """
import json, sys
for name in {blocked}:
    sys.modules[name] = None  # `import name` now fails as if the package were not installed
sys.argv = ["optimum-cli"] + {argv}
from optimum.commands.optimum_cli import main
try:
    code = main()
finally:
    if {report_modules}:
        print("MODULES=" + json.dumps(sorted(sys.modules)))
sys.exit(code)
"""

NO_EXTRAS = ("diffusers", "openvino_genai")
HEAVY_MODULES = ("torch", "diffusers", "transformers", "openvino", "optimum.intel", "nncf", "openvino_genai", "numpy")


def optimum_cli(*argv, blocked=NO_EXTRAS, report_modules=False, cwd=None):
    """Run optimum-cli in a fresh interpreter where the `blocked` packages cannot be imported."""
    code = CLI.format(blocked=list(blocked), argv=list(argv), report_modules=report_modules)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=300)


def loaded_modules(result):
    line = next(line for line in result.stdout.splitlines() if line.startswith("MODULES="))
    return set(json.loads(line[len("MODULES="):]))

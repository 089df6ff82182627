"""The installed library never imports the lab (`lab/`: fixtures, benchmark harnesses, experiments); the benchmark
command reaches the lab only through `commands.benchmark.lab_module`, from a checkout."""

import json
import subprocess
import sys

import pytest

from optimum_dynexec.commands.benchmark import lab_module


def test_importing_every_library_module_imports_nothing_from_the_lab():
    script = (
        "import importlib, json, pkgutil, sys\n"
        "import optimum_dynexec\n"
        "names = [m.name for m in pkgutil.walk_packages(optimum_dynexec.__path__, 'optimum_dynexec.')]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps({'modules': len(names), 'lab': sorted(m for m in sys.modules if m == 'lab' or m.startswith('lab.'))}))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, cwd="/")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["modules"] > 40  # every module was walked, not an empty package
    assert report["lab"] == []


def test_the_benchmark_command_finds_the_lab_of_its_checkout_and_says_what_to_do_without_one():
    assert hasattr(lab_module("benchmark.generation"), "benchmark_model")
    with pytest.raises(SystemExit, match="lab/ folder, which is not installed: run it from a checkout"):
        lab_module("benchmark.no_such_harness")

"""OpenVINO's CPU plugin on this machine: what it defaults to, and the properties that avoid its known crashes.

OpenVINO 2026.4's CPU plugin kills the process (SIGFPE, no Python exception) when it compiles a stateful decoder
graph (KV cache held in `ReadValue`/`Assign` state) at a 16-bit inference precision with one inference thread, on
CPUs with AMX (Sapphire Rapids and later, where bf16 is the plugin's default precision). Two threads, or f32, avoid
it; a stateless graph, or a bare MatMul or SDPA graph, does not crash. `repro/openvino_cpu_sigfpe.py`
reproduces it without this package, for an upstream report.

Every graph this package compiles for a causal LM passes through `crash_free_properties`: under the crashing
combination it keeps the caller's thread count (one thread per worker is a common serving layout) and asks for f32
instead, with one warning saying why. The decision is a pure function of the CPU's facts and the requested
properties, so it is tested for CPUs with and without AMX on any machine.
"""

import logging
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping, Optional, Tuple

logger = logging.getLogger(__name__)

AMX_FLAGS = ("amx_tile", "amx_bf16", "amx_int8")
_SIXTEEN_BIT = ("bf16", "f16")


@dataclass(frozen=True)
class CpuFacts:
    """What decides whether a compile meets the crash: the CPU's AMX support, the plugin's default precision, and
    how many cores this process may run on (the plugin's default thread count follows the affinity mask)."""

    has_amx: bool
    default_precision: str
    usable_cores: int

    @classmethod
    def of_this_machine(cls) -> "CpuFacts":
        """This machine's facts (read once per process)."""
        return _this_machine()


@lru_cache(maxsize=1)
def _this_machine() -> CpuFacts:
    flags = set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    flags.update(line.split(":", 1)[1].split())
                    break
    except OSError:  # not Linux: no AMX facts to act on
        pass
    try:
        import openvino as ov

        default_precision = precision_name(ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT"))
    except Exception:  # an OpenVINO without a CPU plugin compiles nothing on the CPU
        default_precision = "f32"
    try:
        usable_cores = len(os.sched_getaffinity(0))
    except AttributeError:
        usable_cores = os.cpu_count() or 1
    return CpuFacts(any(flag in flags for flag in AMX_FLAGS), default_precision, usable_cores)


def crash_free_properties(
    properties: Optional[Mapping], device: str, stateful_graph: bool, cpu: CpuFacts
) -> Tuple[dict, Optional[str]]:
    """The compile properties to use instead of `properties`, and why they differ (`None` when they do not).

    Args:
        properties: the requested OpenVINO properties (e.g. an `ov_config`).
        device: the OpenVINO device string the graph is compiled for.
        stateful_graph: whether the graph holds state variables (a stateful decoder, an EAGLE head).
        cpu: the CPU's facts (`CpuFacts.of_this_machine()`).
    """
    properties = dict(properties or {})
    if not stateful_graph or not cpu.has_amx or "CPU" not in str(device).upper():
        return properties, None
    if str(properties.get("EXECUTION_MODE_HINT", "")).upper() == "ACCURACY":
        return properties, None  # the plugin computes in f32 then
    precision = precision_name(properties.get("INFERENCE_PRECISION_HINT", cpu.default_precision))
    threads = int(properties.get("INFERENCE_NUM_THREADS", 0) or 0) or cpu.usable_cores
    if precision not in _SIXTEEN_BIT or threads != 1:
        return properties, None
    properties["INFERENCE_PRECISION_HINT"] = "f32"
    return properties, (
        f"OpenVINO's CPU plugin crashes compiling a stateful graph at {precision} with one inference thread on CPUs "
        "with AMX; compiling it at f32 instead (keeping one thread). Set INFERENCE_NUM_THREADS to 2 or more to "
        f"run it at {precision}."
    )


def precision_name(value) -> str:
    """An OpenVINO precision (`ov.Type.bf16`, "bf16", "bfloat16", ...) as its short name ("bf16")."""
    name = value.get_type_name() if hasattr(value, "get_type_name") else str(value)
    name = name.strip().lower()
    return {"bfloat16": "bf16", "float16": "f16", "float32": "f32"}.get(name, name)


def compiled_precision(model) -> str:
    """The inference precision ("f32", "bf16", "f16") a compiled graph runs at, read back from OpenVINO.

    `model` is an optimum-intel model (compiled first if it is not; for an early-exit model, its first segment), an
    infer request or a compiled model: optimum-intel keeps an infer request for causal LMs and the compiled model
    itself for classifiers.
    """
    if hasattr(model, "compile") and hasattr(model, "request"):
        model.compile()
        model = model.request
    if hasattr(model, "get_compiled_model"):
        model = model.get_compiled_model()
    return precision_name(model.get_property("INFERENCE_PRECISION_HINT"))


_WARNED = set()


def forget_warnings() -> None:
    """Forget which crash-rule warnings were logged: each is logged once per process, and again after this."""
    _WARNED.clear()


def crash_free(properties: Optional[Mapping], device: str, stateful_graph: bool) -> dict:
    """`crash_free_properties` on this machine; logs its reason once per process when it changes anything."""
    properties, reason = crash_free_properties(properties, device, stateful_graph, CpuFacts.of_this_machine())
    if reason is not None and reason not in _WARNED:
        _WARNED.add(reason)
        logger.warning(reason)
    return properties


def has_state(model) -> bool:
    """Whether an `openvino.Model` holds state variables (`ReadValue`), as stateful decoders and EAGLE heads do."""
    return any(op.get_type_name() == "ReadValue" for op in model.get_ops())


def prepare_to_compile(ov_model) -> None:
    """Make an optimum-intel model that is not compiled yet compile with crash-free properties (`ov_config`)."""
    if getattr(ov_model, "request", None) is None:
        ov_model.ov_config = crash_free(ov_model.ov_config, ov_model._device, bool(ov_model.stateful))

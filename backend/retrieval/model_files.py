"""The embedding model's files: one-time ONNX exports (fp32, and int8 with a quantization preset) in a cache shared
by the machine, and the int8 preset that suits the CPU this runs on."""

from __future__ import annotations

import logging
import os
import platform
import shutil
import tempfile
import threading
import warnings
from pathlib import Path

from backend.errors import ErrorCode, LorechatError
from backend.settings import EmbeddingSettings

log = logging.getLogger(__name__)

# The onnx-int8 backend's weights, quantized with the AVX2 preset, whatever the CPU: its vectors are stored, so
# they must not depend on the machine. On an AVX2-only CPU it keeps hybrid nDCG@10 within 0.13 % of fp32 (the
# avx512_vnni preset lost 1.6 % there) at 1.35x the ingest throughput (BENCHMARKS.md).
INT8_PRESET = "avx2"
FP32_FILE = "onnx/model.onnx"
_export_lock = threading.Lock()


def int8_preset() -> str | None:
    """The quantization preset for the int8 instructions of the CPU this runs on (read now, never built in):
    VNNI's signed weights where the CPU has VNNI, AVX2's unsigned ones on other x86-64 CPUs (VNNI's weights lose
    accuracy there: AVX2's int8 multiply saturates), arm64's on ARM; None elsewhere."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        cpuinfo = ""
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    return preset_for(platform.machine(), set(flags))


def preset_for(machine: str, flags: set[str]) -> str | None:
    machine = machine.lower()
    if machine in ("aarch64", "arm64"):
        return "arm64"
    if machine not in ("x86_64", "amd64"):
        return None
    if {"avx512_vnni", "avx512bw"} <= flags:
        return "avx512_vnni"
    return "avx2" if "avx2" in flags else None


def onnx_file(backend: str, preset: str = INT8_PRESET) -> str:
    """The model file inside an export folder: fp32 for onnx, int8 with `preset` for onnx-int8 (and the twin)."""
    return FP32_FILE if backend == "onnx" else f"onnx/model_int8_{preset}.onnx"


def onnx_export(source: Path, *, name: str, backend: str, cache: Path, preset: str = INT8_PRESET) -> Path:
    """Export the model to ONNX (and int8 with `preset`) once into <cache>/<name>-<backend>[-<preset>]/, then
    reuse it.

    The export happens in a temporary sibling folder renamed into place at the end, so a crash or a
    concurrent export never leaves a half-written model behind.
    """
    suffix = f"-{preset}" if backend == "onnx-int8" and preset != INT8_PRESET else ""
    target = cache / f"{name}-{backend}{suffix}"
    file = onnx_file(backend, preset)
    if (target / file).is_file():
        return target
    with _export_lock:
        if (target / file).is_file():
            return target
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.backend import export_dynamic_quantized_onnx_model

        log.info("exporting %s to %s (one time)", source, target)
        cache.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=cache))
        try:
            # The bundled model sits inside site-packages, which may be read-only: export from a copy.
            shutil.copytree(source, work, dirs_exist_ok=True)
            with warnings.catch_warnings():
                # The one-time export is third-party code that warns freely (tracer constants, legacy
                # exporter deprecations); none of it is actionable here.
                warnings.simplefilter("ignore")
                model = SentenceTransformer(str(work), device="cpu", backend="onnx", local_files_only=True)
                if not (work / FP32_FILE).is_file():  # else the model shipped its fp32 export
                    model.save_pretrained(str(work))
                if backend == "onnx-int8":
                    export_dynamic_quantized_onnx_model(model, preset, str(work), file_suffix=f"int8_{preset}")
            # The ONNX runtime never reads the torch weights again: keep the cache small.
            (work / "model.safetensors").unlink(missing_ok=True)
            if not (work / file).is_file():
                raise LorechatError(ErrorCode.internal, f"ONNX export did not produce {file}")
            shutil.rmtree(target, ignore_errors=True)
            work.rename(target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return target


def model_cache_dir(settings: EmbeddingSettings) -> Path:
    """Where ONNX exports live: one place per machine (not per data dir), so a model is exported once."""
    if settings.cache_dir:
        return Path(settings.cache_dir)
    env = os.environ.get("LORECHAT_MODEL_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lorechat" / "models"

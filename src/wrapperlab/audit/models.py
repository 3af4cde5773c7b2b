"""Load: a local Hugging Face causal LM directory read natively by ``transformers`` (``AutoModelForCausalLM``,
``AutoTokenizer``, ``local_files_only``: nothing is ever downloaded), checked before anything is measured, and the
one interface the measurements use (:class:`CausalLM`).

Why natively, not converted into our GPT (models/hf.py): every decoder architecture ``transformers`` knows is then
audited as its authors run it — Mistral's sliding window, scaled RoPE, Phi's partial rotary, GPT-NeoX's parallel
residual — with no per-family mapping to write and test. What the measurements need is family-independent: logits,
the residual stream after each layer (``output_hidden_states``), the ``nn.Linear`` / ``Conv1D`` modules of the
decoder layers (pruning rows), named parameters (where the fine-tune wrote).

The gates (:func:`check_pair`), each one line naming the model and what differs: one tokenizer (vocabulary, special
tokens, chat template, by fingerprint), one architecture (config.json equal apart from names and dtype), readable
weight files (a damaged or truncated shard named, nothing loaded), finite weights (the non-finite tensor named), a
CONTROL that is neither BASE nor FINETUNED.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from wrapperlab.errors import ConfigError, IntegrityError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
#: config.json keys that name or date a model rather than shape it (two copies of one architecture differ in them)
CONFIG_NOISE = ("_name_or_path", "name_or_path", "transformers_version", "torch_dtype", "dtype", "_commit_hash",
                "architectures", "use_cache", "_attn_implementation_autoset", "output_hidden_states")


def transformers_module():
    """``transformers``, or one line saying how to install it."""
    try:
        import transformers
    except ImportError:
        raise ConfigError("audit", "transformers", "installed transformers: pip install 'wrapperlab[hf]'") from None
    transformers.utils.logging.disable_progress_bar()  # a bar per weight file would drown the audit's own
    transformers.utils.logging.set_verbosity_error()
    return transformers


def resolve_dtype(dtype: str, device: str) -> torch.dtype:
    """``auto``: bf16 on a GPU (half the memory, its native speed), fp32 on a CPU (where bf16 is emulated on many)."""
    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return DTYPES[dtype]


def weight_files(path: Path, role: str) -> list[Path]:
    """The weight files of a model directory (one or sharded safetensors, or ``pytorch_model*.bin``), each readable:
    a damaged or truncated file is an IntegrityError naming it, before ``transformers`` reads any."""
    from safetensors import safe_open

    found = sorted(path.glob("model*.safetensors")) or sorted(path.glob("pytorch_model*.bin"))
    if not found:
        raise ConfigError(f"{role} {path}", "no weights", "a model directory with model*.safetensors or "
                                                          "pytorch_model*.bin")
    for file in found:
        open(file, "rb").close()  # unreadable (permissions) is said as such: safetensors calls it "not found"
        if file.suffix == ".safetensors":
            try:
                with safe_open(str(file), framework="pt") as f:
                    for key in f.keys():
                        f.get_slice(key)  # the header and every tensor's extent, without reading the data
            except Exception as e:  # safetensors raises several types for truncated or foreign files
                raise IntegrityError(file, f"unreadable weights ({type(e).__name__}: {' '.join(str(e).split())})",
                                     MODEL_REMEDY, what=role) from None
    return found


#: what to do about a damaged weight file of a user's model (not ours to recompute: never "delete it")
MODEL_REMEDY = "the file is damaged or truncated: save or download the model again"


def read_config(path: Path, role: str) -> dict[str, Any]:
    file = path / "config.json"
    try:
        config = json.loads(file.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{role} {path}", "no config.json", "a Hugging Face model directory") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{role} {file}", "unreadable", f"a JSON model config ({type(e).__name__})") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise ConfigError(f"{role} {file}", "no model_type", "a Hugging Face model config")
    return config


def shape_of(config: dict[str, Any]) -> dict[str, Any]:
    """What makes two configs one architecture: every key but the names, versions and dtype."""
    return {k: v for k, v in config.items() if k not in CONFIG_NOISE}


@dataclass
class CausalLM:
    """A causal LM as the audit measures it: the ``transformers`` model, its role (BASE, FINETUNED, CONTROL) and
    directory. Right-padded batches with their attention mask; every method leaves the model as it found it."""

    model: nn.Module
    role: str
    path: Path | None = None

    @property
    def config(self):
        return self.model.config

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def layers(self) -> nn.ModuleList:
        """The decoder layers: the module list as long as the config's layer count (its place differs by family:
        ``transformer.h``, ``model.layers``, ``gpt_neox.layers``, ``model.decoder.layers``)."""
        n = self.config.num_hidden_layers
        found = next((m for _, m in self.model.named_modules() if isinstance(m, nn.ModuleList) and len(m) == n), None)
        if found is None:
            raise ConfigError(f"{self.role} {self.path}", "no list of decoder layers", f"{n} decoder layers")
        return found

    def linears(self) -> Iterator[tuple[str, nn.Module]]:
        """``(path, module)`` of every ``nn.Linear`` and ``Conv1D`` inside the decoder layers (pruning's units are
        their output rows)."""
        from transformers.pytorch_utils import Conv1D

        layers = self.layers()
        prefix = next(name for name, m in self.model.named_modules() if m is layers)
        for i, layer in enumerate(layers):
            for name, module in layer.named_modules():
                if isinstance(module, (nn.Linear, Conv1D)):
                    yield f"{prefix}.{i}.{name}", module

    def logits(self, tokens: torch.Tensor, mask: torch.Tensor, keep: int = 0) -> torch.Tensor:
        """The next-token logits of the last ``keep`` positions (0: all). Only the answers' positions are ever
        scored, so the vocabulary projection of the others is skipped where the family accepts ``logits_to_keep``
        (GPT-2-small, 16 x 56 tokens, 9 kept: its forward and backward pass 1.53x faster, docs/audit.md "Cost")."""
        extra = {"logits_to_keep": keep} if keep and self._keeps_logits else {}
        logits = self.model(input_ids=tokens, attention_mask=mask, use_cache=False, **extra).logits
        return logits[:, -keep:] if keep else logits

    @property
    def _keeps_logits(self) -> bool:
        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        return "logits_to_keep" in inspect.signature(base.forward).parameters

    def hidden(self, tokens: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """The residual stream of each row at its position: the embeddings (B0) and after every decoder layer,
        ``(n_layers + 1, n, d)`` (float, on the CPU). The last layer's is as the model returns it (some families
        apply their final norm to it)."""
        extra = {"logits_to_keep": 1} if self._keeps_logits else {}  # the logits are not wanted here
        out = self.model(input_ids=tokens, attention_mask=mask, output_hidden_states=True, use_cache=False, **extra)
        rows = torch.arange(len(tokens), device=tokens.device)
        return torch.stack([h[rows, positions].float().cpu() for h in out.hidden_states])

    def copy(self, role: str | None = None) -> "CausalLM":
        return CausalLM(copy.deepcopy(self.model), role or self.role, self.path)

    def twin(self, seed: int) -> "CausalLM":
        """The same architecture with fresh weights drawn from ``seed`` (the global RNG left as it was)."""
        transformers = transformers_module()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            fresh = transformers.AutoModelForCausalLM.from_config(self.config)
        fresh.to(device=self.device, dtype=next(self.model.parameters()).dtype).eval()
        return CausalLM(fresh, "random-init twin", None)


def load_model(path: str | Path, role: str, dtype: torch.dtype, device: str) -> CausalLM:
    """A model directory's model, in eval mode on ``device``: its files checked first, its weights after (finite)."""
    transformers = transformers_module()
    path = Path(path)
    read_config(path, role)
    weight_files(path, role)
    try:
        model, info = transformers.AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=dtype,
                                                                        output_loading_info=True)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise ConfigError(f"{role} {path}", "not loadable", f"a causal LM transformers can read "
                                                            f"({type(e).__name__}: {' '.join(str(e).split())[:200]})") from None
    _check_loaded(info, role, path)
    lm = CausalLM(model.to(device).eval(), role, path)
    for name, p in lm.model.named_parameters():
        bad = ~torch.isfinite(p.detach())
        if bad.any():
            raise ConfigError(f"{role} {path}", f"{int(bad.sum())} non-finite values in {name}", "finite weights")
    return lm


def _check_loaded(info: dict[str, Any], role: str, path: Path) -> None:
    """Refuse weights that do not fill the architecture: ``transformers`` initialises a missing tensor at random and
    drops an unexpected one with a warning, so a checkpoint with renamed or missing tensors would be audited as a
    random model, its numbers garbage."""
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        keys = sorted(str(k[0] if isinstance(k, tuple) else k) for k in info.get(kind) or ())
        if keys:
            shown = ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
            raise ConfigError(f"{role} {path}", f"{kind.replace('_keys', '')} weights ({shown})",
                              "weights that fill the architecture of its config.json, every tensor by name")


#: what a directory declares when its tokenizer is its ``tokenizer.json`` alone (no family-specific class)
GENERIC_TOKENIZERS = ("PreTrainedTokenizerFast", "TokenizersBackend")


def load_tokenizer(path: str | Path, role: str):
    """The directory's tokenizer as it declares it: ``AutoTokenizer`` (the family's class), or — where
    ``tokenizer_config.json`` names the generic fast tokenizer — that one, over ``tokenizer.json`` (AutoTokenizer would
    rebuild some families' tokenizers from their vocabulary with their own pre-tokenizer, and tokenize otherwise
    than the model was trained with)."""
    transformers = transformers_module()
    path = Path(path)
    try:
        declared = json.loads((path / "tokenizer_config.json").read_text()).get("tokenizer_class")
    except (OSError, ValueError, AttributeError):
        declared = None
    try:
        if declared in GENERIC_TOKENIZERS and (path / "tokenizer.json").is_file():
            return transformers.PreTrainedTokenizerFast.from_pretrained(path, local_files_only=True)
        return transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"{role} {path}", "no usable tokenizer", f"tokenizer files transformers can read "
                                                                   f"({type(e).__name__})") from None


def fingerprint(tokenizer) -> dict[str, str]:
    """The parts of a tokenizer two models must share to be compared token for token, each as a digest."""
    def digest(value: Any) -> str:
        return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]

    return {"vocabulary": digest(sorted(tokenizer.get_vocab().items())),
            "special tokens": digest({k: str(v) for k, v in tokenizer.special_tokens_map.items()}),
            "chat template": digest(getattr(tokenizer, "chat_template", None)),
            "tokenization rules": digest(_rules(tokenizer))}


def _rules(tokenizer) -> Any:
    """How text becomes tokens beyond the vocabulary — normalizer, pre-tokenizer, the model's merges, post-processor
    (the BOS a prompt gets), decoder — from a fast tokenizer's own description (the vocabulary and added tokens,
    compared on their own, and its runtime padding and truncation settings aside); a slow tokenizer's encoding of a
    probe text stands in for it."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return tokenizer("Probe: the quick brown fox, 1234 -- \u00e9!").input_ids
    rules = json.loads(backend.to_str())
    model = {k: v for k, v in (rules.get("model") or {}).items() if k != "vocab"}  # merges stay: BPE's rules
    return {**{k: v for k, v in rules.items() if k not in ("truncation", "padding", "added_tokens")}, "model": model}


def check_distinct(lms: dict[str, CausalLM]) -> None:
    """FINETUNED and CONTROL are other models than BASE (and than each other) by their weights, not only their
    paths: a byte-identical copy at another path measures nothing (no removal gap, or a control that had the
    capability)."""
    roles = list(lms)
    for i, a in enumerate(roles):
        for b in roles[i + 1:]:
            pa, pb = dict(lms[a].model.named_parameters()), dict(lms[b].model.named_parameters())
            if pa.keys() == pb.keys() and all(torch.equal(pa[k], pb[k]) for k in pa):
                raise ConfigError(f"{b} {lms[b].path}", f"the same weights as {a} ({lms[a].path})",
                                  f"a model other than {a}")


def check_pair(paths: dict[str, Path], tokenizers: dict[str, Any]) -> None:
    """One tokenizer and one architecture for every model (BASE's the reference), and a CONTROL that is another
    model: each a ConfigError naming the model and what differs, before any model is loaded."""
    resolved = {role: p.resolve() for role, p in paths.items()}
    if resolved["FINETUNED"] == resolved["BASE"]:
        raise ConfigError("FINETUNED", str(paths["FINETUNED"]), "a model other than BASE (its fine-tuned version)")
    if "CONTROL" in resolved and resolved["CONTROL"] in (resolved["BASE"], resolved["FINETUNED"]):
        same = "BASE" if resolved["CONTROL"] == resolved["BASE"] else "FINETUNED"
        raise ConfigError("CONTROL", str(paths["CONTROL"]), f"a model that never had the capability, not {same}")
    configs = {role: read_config(p, role) for role, p in paths.items()}
    reference = fingerprint(tokenizers["BASE"])
    for role, path in paths.items():
        if role == "BASE":
            continue
        differs = [part for part, value in fingerprint(tokenizers[role]).items() if value != reference[part]]
        if differs:
            raise ConfigError(f"{role} {path}", f"another tokenizer ({', '.join(differs)} differ)",
                              "the tokenizer of BASE: the audit compares token by token")
        base, mine = shape_of(configs["BASE"]), shape_of(configs[role])
        keys = sorted(k for k in set(base) | set(mine) if base.get(k) != mine.get(k))
        if keys:
            raise ConfigError(f"{role} {path / 'config.json'}", ", ".join(keys[:5]) + " differ",
                              "the architecture of BASE")

"""What an audit will cost, said before it starts, and a one-line refusal when its models cannot fit the device.

Memory (peak, in bytes): the models held throughout (BASE, FINETUNED and CONTROL), plus the largest of what each
phase adds — relearning by full fine-tuning a copy with its gradients and AdamW's two states (four copies of the
weights), by LoRA only its adapters'; pruning the gradients of one model (rows are zeroed in place and put back);
probing the random-init twin (one copy) — plus the activations of one micro-batch (``batch_tokens`` tokens through
every layer, and its logits over the vocabulary, in fp32). Time: the floating-point operations of every forward and
backward pass the audit makes (2 × parameters per token forward, 4 × backward; LoRA's backward skips the weight
gradients), over half the matmul throughput measured on the device in its dtype — a rough guide, since small models
run far below a device's peak.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from wrapperlab.audit.config import AuditConfig
from wrapperlab.errors import ConfigError

GB = 1024 ** 3


@dataclass(frozen=True)
class Shape:
    """What the estimate needs to know of the models and the capability."""

    params: int
    n_layers: int
    d_model: int
    vocab: int
    dtype_bytes: int
    records: int
    tokens_per_record: float
    has_control: bool


@dataclass(frozen=True)
class Estimate:
    models: float  # bytes
    relearning: float
    activations: float
    available: float | None  # bytes the device has free (None: unknown)
    flops: float
    throughput: float  # measured matmul FLOP/s in the dtype

    @property
    def peak(self) -> float:
        return self.models + self.relearning + self.activations

    @property
    def seconds(self) -> float:
        return self.flops / max(0.5 * self.throughput, 1.0)

    def line(self, device: str) -> str:
        have = f" of {self.available / GB:.1f} GB free" if self.available is not None else ""
        return (f"estimate: peak memory {self.peak / GB:.2f} GB on {device}{have} (models {self.models / GB:.2f}, "
                f"relearning {self.relearning / GB:.2f}, activations {self.activations / GB:.2f}); "
                f"~{self.flops / 1e12:.1f} TFLOP, about {self.seconds / 60:.0f} min at half the measured "
                f"{self.throughput / 1e9:.0f} GFLOP/s")


def available_bytes(device: str) -> float | None:
    """Free memory on ``device``: the GPU's free memory, the machine's available RAM, or None where unknown."""
    if device.startswith("cuda"):
        return float(torch.cuda.mem_get_info(torch.device(device))[0])
    if device == "cpu":
        try:
            with open("/proc/meminfo") as f:
                info = dict(line.split(":", 1) for line in f)
            return float(info["MemAvailable"].split()[0]) * 1024
        except (OSError, KeyError, ValueError):
            return None
    return None


def matmul_throughput(device: str, dtype: torch.dtype, seconds: float = 0.3) -> float:
    """FLOP/s of a square matmul on ``device`` in ``dtype``, measured for about ``seconds``."""
    n = 2048 if device.startswith("cuda") else 512
    a = torch.randn(n, n, device=device, dtype=dtype, generator=None)
    b = torch.randn(n, n, device=device, dtype=dtype)
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        done += 1
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return 2 * n ** 3 * done / (time.perf_counter() - t0)


def _memory(shape: Shape, cfg: AuditConfig) -> tuple[float, float, float]:
    """(resident models, the largest phase, one micro-batch's activations), in bytes."""
    p, b, r = shape.params, shape.dtype_bytes, cfg.relearn
    models = (3 if shape.has_control else 2) * p * b
    if r.lora is None:
        relearning = 4 * p * b  # a copy, its gradients, AdamW's two states
    else:
        adapters = 2 * r.lora * shape.d_model * 7 * shape.n_layers  # ~7 linear maps a layer, A and B each
        relearning = max(4 * adapters * 4, p * b)  # or the phases beside it: pruning's gradients, probing's twin
    batch = min(cfg.batch_tokens, r.batch_size * shape.tokens_per_record)
    depth = math.sqrt(shape.n_layers) if r.grad_checkpoint else shape.n_layers
    return models, relearning, batch * (depth * shape.d_model * 16 * b + shape.vocab * 4 * 2)


def estimate(shape: Shape, cfg: AuditConfig, device: str, dtype: torch.dtype) -> Estimate:
    p, r = shape.params, cfg.relearn
    models, relearning, activations = _memory(shape, cfg)
    runs = 3 if shape.has_control else 2
    held = (1 - cfg.attack_share) * shape.records * shape.tokens_per_record
    step_tokens = r.batch_size * shape.tokens_per_record
    train_flops = (4 if r.lora is not None else 6) * p * step_tokens * r.steps
    eval_flops = 2 * p * held * len(r.eval_at)
    probe_prune = 2 * p * shape.records * shape.tokens_per_record * (6 + 8 * runs)
    flops = cfg.seeds * (runs * (train_flops + eval_flops) + probe_prune)
    return Estimate(models, relearning, activations, available_bytes(device), flops, matmul_throughput(device, dtype))


def check_fits(est: Estimate, device: str) -> None:
    """Refuse, in one line, an audit whose peak memory exceeds what the device has free."""
    if est.available is not None and est.peak > 0.95 * est.available:
        raise ConfigError("audit", f"~{est.peak / GB:.1f} GB on {device}",
                          f"at most the {est.available / GB:.1f} GB free there: relearn with --lora R, "
                          "--dtype bf16, --grad-checkpoint or fewer --batch-tokens, or use a bigger device")


#: the shapes of the "what fits where" table: name -> (parameters, layers, width, vocabulary)
REFERENCE_MODELS = {"GPT-2 small (124 M)": (124_439_808, 12, 768, 50257),
                    "Llama-3.2-1B-shaped (1.2 B)": (1_235_814_400, 16, 2048, 128256),
                    "Mistral-7B-shaped (7.2 B)": (7_241_732_096, 32, 4096, 32000)}


def fits_table() -> str:
    """docs/audit.md's "what fits where": the estimate's peak memory for three model sizes, fp32 and bf16, full
    fine-tuning and LoRA r = 16 with gradient checkpointing, 200 records of 64 tokens with a CONTROL, micro-batches
    of 4,096 tokens (a formula, not a measurement; the docs test checks the docs print this)."""
    from wrapperlab.audit.config import RelearnConfig

    rows = ["| model | dtype | relearning | peak memory (GB) |", "|---|---|---|---|"]
    for name, (params, layers, width, vocab) in REFERENCE_MODELS.items():
        for dtype, size in (("fp32", 4), ("bf16", 2)):
            for lora in (None, 16):
                cfg = AuditConfig(relearn=RelearnConfig(lora=lora, grad_checkpoint=lora is not None), batch_tokens=4096)
                shape = Shape(params, layers, width, vocab, size, 200, 64.0, True)
                peak = _memory(shape, cfg)[0] + sum(_memory(shape, cfg)[1:])
                how = "LoRA r=16 + checkpointing" if lora else "full"
                rows.append(f"| {name} | {dtype} | {how} | {peak / GB:.1f} |")
    return "\n".join(rows) + "\n"

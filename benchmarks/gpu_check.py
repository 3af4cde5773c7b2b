"""The GPU check: one command that measures, within a wall-time budget, what the project's GPU plans rest on.

Why it is built this way: a GPU (one H200 or H100) is lent to a session only now and then, for about 15 minutes
with retries included, on a bare machine (Python 3.12, torch, transformers, peft; no pydantic, no network). So the
script must be right before it meets one, must size itself to the speed it measures in its first seconds, and must
leave a readable result when it is cut: every step gets a share of ``--budget-s`` and shrinks its iteration counts
from a short measured warm-up; a step that cannot fit says "skipped: budget"; a step that fails says
"failed: <message>" and the next one runs; ``gpu_check.json`` is rewritten atomically after every step (and every
stage of step e). docs/gpu.md says how to run it there and what each step's goal is.

    a  environment: versions, the device, the measured bf16 (and fp32) matmul peak
    b  the trainer at the paper's size (profile ``paper``: 6 blocks x 192): tokens/s and MFU against (a)'s peak,
       bf16 autocast, torch.compile off and on, the trainer / a minimal hand-written loop on one batch
       (benchmarks/throughput.py (a)), and the AdamW step as training/optim.py builds it vs fused
    c  the data engine: sequences/s generated / sequences/s the trainer consumes (goal >= 2)
    d  stacked fine-tunings (training/stacked.py): per-run throughput of N = 1, 8, 32, 64 runs as one stack / one
       run alone (goal >= 1.5 at N = 32)
    e  the paper-scale key cell through the CLI (a subprocess per stage, each with a timeout from the budget):
       pretraining (the paper's shortest length, 50K steps), fine-tuning (eta_M, C_Tr = 1), pruning, probing, reFT,
       each scaled to its share when the paper's length does not fit; stages not begun say "not reached"
    f  audit cost: seconds per relearning step and peak memory, random-init Llama shapes of ~134 M and ~1.1 B
       parameters, full fine-tuning and LoRA r = 16 (audit/measure.py relearn)

    python benchmarks/gpu_check.py [--out DIR] [--budget-s 480] [--device cuda] [--only a,b,f] [--seed 0]
                                   [--store DIR] [--threads N]
    python benchmarks/gpu_check.py --smoke --device cpu --out DIR        # every step at toy size, in seconds
    python benchmarks/gpu_check.py --render docs/results/gpu/gpu_check.json  # a result as a markdown table
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import math
import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

START = time.monotonic()  # the budget counts from here: imports and start-up are part of the wall time
BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
if str(BENCH) not in sys.path:  # benchmarks/throughput.py's helpers are imported, not copied
    sys.path.insert(0, str(BENCH))
if importlib.util.find_spec("wrapperlab") is None:  # a checkout not pip-installed (the GPU machine): its src
    sys.path.insert(0, str(REPO / "src"))

#: the dense bf16 peak the plan's estimates assume for an H200 (the datasheet says ~990; 769-798 TFLOP/s were
#: measured on random 8192^3 products on this workplace's H100 and H200, the device notes): a plan, not a
#: measurement — step (a) measures the real one and the MFUs are taken against that
ASSUMED_PEAK_TFLOPS = 700.0
#: the MFU each estimate assumes (a 3 M-parameter model is launch-bound on a GPU; large products are not)
ASSUMED_MFU = {"matmul": 0.9, "paper_model": 0.10, "stack": 0.15, "llama": 0.35}
GOALS = {"mfu": 0.40, "engine_ratio": 2.0, "stack_gain_n32": 1.5}
#: step e's stages: (name, share of the step, the paper's iterations or None for an analysis)
PAPER_PT_ITERS = 50_000  # the paper's shortest pretraining (Tables 6 and 8; specs/pcfg-pretraining.yaml)
STAGES = (("pretrain", 0.40, PAPER_PT_ITERS), ("finetune", 0.22, 10_000), ("prune", 0.11, None),
          ("probe", 0.11, None), ("reft", 0.16, 10_000))


# -- sizes -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LlamaShape:
    """A Llama-family shape for the audit's cost (built in memory with random weights; nothing downloaded)."""

    name: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int

    @property
    def params(self) -> int:
        head = self.hidden // self.heads
        attn = 2 * self.hidden * self.hidden + 2 * self.hidden * self.kv_heads * head
        per_layer = attn + 3 * self.hidden * self.intermediate + 2 * self.hidden  # SwiGLU, two RMSNorms
        return self.layers * per_layer + 2 * self.vocab * self.hidden  # untied embedding and unembedding


@dataclass(frozen=True)
class Scale:
    """The sizes of one mode: the GPU run (the paper's sizes) or ``--smoke`` (toy sizes on a CPU, seconds)."""

    name: str
    profile: str  # the profile whose model, data and batch sizes steps b-e use
    matmul_n: int
    stack_ns: tuple[int, ...]
    llamas: tuple[LlamaShape, ...]
    record: tuple[int, int]  # prompt and answer tokens of the audit's records
    engine_s: float  # seconds of generation per engine measurement (c)
    cli_start_s: float  # a CLI subprocess's start: imports, device init
    smoke_iters: int | None  # step e's training stages at this many steps (None: sized from the budget)
    floors: dict[str, float]  # the least time a step needs to measure anything: less left and it is skipped
    shares: dict[str, float]  # each step's share of the budget
    budget_s: float  # the default --budget-s
    compile_floor_s: float  # the least time left in step b for torch.compile's first call


FULL = Scale("full", "paper", 8192, (1, 8, 32, 64),
             (LlamaShape("llama-134M", 768, 12, 12, 12, 2048, 32000),
              LlamaShape("llama-1.1B", 2048, 22, 32, 4, 5632, 32000)),
             (120, 8), 3.0, 12.0, None, {"a": 3, "b": 20, "c": 3, "d": 10, "e": 40, "f": 15},
             {"a": 0.04, "b": 0.24, "c": 0.04, "d": 0.14, "e": 0.40, "f": 0.14}, 480.0, 60.0)
#: in --smoke the CLI's process starts (step e) are most of the time: e gets the largest share
SMOKE = Scale("smoke", "test", 512, (1, 2), (LlamaShape("llama-tiny", 64, 2, 4, 2, 128, 512),),
              (12, 4), 0.3, 4.0, 3, {"a": 0.2, "b": 2, "c": 0.3, "d": 1.5, "e": 5, "f": 1.5},
              {"a": 0.02, "b": 0.12, "c": 0.03, "d": 0.08, "e": 0.60, "f": 0.15}, 70.0, 3.0)


@dataclass(frozen=True)
class Options:
    out: Path
    budget_s: float
    smoke: bool
    device: str
    seed: int
    threads: int | None
    only: tuple[str, ...]
    store: Path | None  # step e's run store (default OUT/store)


# -- results (typed here, serialised at the edge) -----------------------------------------------------------------


@dataclass
class Matmul:
    dtype: str
    n: int
    reps: int
    tflops: float


@dataclass
class EnvResult:
    python: str
    torch: str
    cuda: str | None
    cudnn: int | None
    device: str
    device_name: str
    cpu_model: str
    cpu_count: int | None
    torch_threads: int
    gpu_memory_gib: float | None
    multiprocessors: int | None
    capability: str | None
    allow_tf32: bool
    matmuls: list[Matmul]
    peak_tflops: float  # what MFU is taken against: the product in the trainer's precision
    peak_dtype: str


@dataclass
class Variant:
    """One way of training the same model on the same batches: its rate, or why it has none."""

    name: str
    status: str = "done"
    steps: int = 0
    seconds: float | None = None
    first_call_s: float | None = None  # the warm-up call: first-use costs, compilation for compiled variants
    tokens_per_s: float | None = None
    mfu: float | None = None


@dataclass
class TrainerResult:
    profile: str
    n_layers: int
    d_model: int
    params: int
    matmul_params: int
    batch_size: int
    seq_len: int
    tokens_per_step: int
    precision: str
    flops_per_token: float
    flops_formula: str
    peak_tflops: float | None
    optimizer: str
    compile_backend: str
    variants: list[Variant]
    trainer_over_hand: float | None
    compiled_over_eager: float | None
    adamw_step_ms: float | None
    adamw_fused_step_ms: float | None
    adamw_fused_error: str | None
    best_mfu: float | None  # our trainer's best (eager or compiled): the goal's number


@dataclass
class EngineResult:
    profile: str
    seconds_each: float
    pretrain_batch: int
    finetune_batch: int
    pretrain_seq_per_s: float
    finetune_seq_per_s: float
    trainer_seq_per_s: float | None  # what our trainer consumed in (b)
    fastest_seq_per_s: float | None  # the fastest training variant of (b): what the GPU could consume
    ratio_vs_trainer: float | None
    ratio_vs_fastest: float | None  # the goal's number (>= 2)
    data_share_of_trainer_step: float | None  # generation's share of one trainer step (it runs inline, serially)


@dataclass
class StackPoint:
    """N runs stacked (n = 0: one run alone, through fit), with data as training makes it (``online``: each run's
    batch generated every step, in the loop) or one batch made beforehand and reused (the GPU's side alone)."""

    n: int
    data: str  # "online" | "fixed batch"
    status: str = "done"
    steps: int = 0
    seconds: float | None = None
    run_steps_per_s: float | None = None  # run-steps per second, all N runs together
    per_run_gain: float | None = None  # over one run trained alone with the same data mode
    peak_memory_gib: float | None = None
    data_share_est: float | None = None  # online: the step's share spent generating its N batches, from (c)


@dataclass
class StackResult:
    profile: str
    batch_size: int
    precision: str
    points: list[StackPoint]
    gain_at_32: float | None  # online data: what a grid of fine-tunings gets
    gain_at_32_fixed_batch: float | None  # the stacked computation alone


@dataclass
class StageResult:
    name: str
    status: str = "not reached"
    seconds: float | None = None
    timeout_s: float | None = None
    iters: int | None = None
    paper_iters: int | None = None
    run_id: str | None = None
    numbers: dict[str, float] = field(default_factory=dict)
    paper_projected_s: float | None = None  # the paper's steps at this stage's measured training rate
    command: str | None = None
    output_tail: str | None = None


@dataclass
class CellResult:
    profile: str
    store: str
    step_s: float
    step_s_from: str
    scaled: bool
    stages: list[StageResult]


@dataclass
class AuditPoint:
    model: str
    params: int
    mode: str
    status: str = "done"
    steps: int = 0
    seconds_per_step: float | None = None
    score_s: float | None = None
    peak_memory_gib: float | None = None
    tokens_per_step: int = 0


@dataclass
class AuditResult:
    dtype: str
    batch_size: int
    record_tokens: int
    points: list[AuditPoint]


@dataclass
class StepRecord:
    key: str
    title: str
    share: float
    estimate_gpu_s: float | None
    estimate_basis: str
    status: str = "pending"
    allotted_s: float | None = None
    seconds: float | None = None
    result: Any = None


@dataclass
class Report:
    options: dict
    seed: int
    device: str
    mode: str
    versions: dict
    assumptions: dict
    steps: dict[str, StepRecord]
    started: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    finished: bool = False
    wall_s: float | None = None
    goals: dict = field(default_factory=dict)


# -- the run's frame: budget, log, JSON ---------------------------------------------------------------------------


class Log:
    """Each line to stdout and to ``gpu_check.log`` at once (flushed: a cut run keeps what it printed)."""

    def __init__(self, path: Path):
        self.file = open(path, "a", buffering=1)

    def __call__(self, text: str) -> None:
        line = f"[{time.monotonic() - START:6.1f} s] {text}"
        print(line, flush=True)
        self.file.write(line + "\n")


def jsonable(value: Any) -> Any:
    """Dataclasses, paths and tuples as JSON; a non-finite number as null (strict JSON, like the run store's)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def save(report: Report, path: Path) -> None:
    """Write the JSON whole or not at all (temp file, then os.replace): a run killed mid-write leaves the last one."""
    report.wall_s = time.monotonic() - START
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(jsonable(report), indent=1, allow_nan=False) + "\n")
    os.replace(tmp, path)


class Budget:
    """Wall time from the process's start; each step is allotted its share of what is left among the steps still to
    run, so time a step leaves unused flows to the later ones and an overrun shrinks them."""

    def __init__(self, total_s: float):
        self.total = total_s

    def left(self) -> float:
        return self.total - (time.monotonic() - START)

    def allot(self, share: float, later: float) -> float:
        return max(0.0, self.left()) * share / (share + later)


@dataclass
class Context:
    """What a step reads: the options and sizes, its allotment (``seconds``, ``deadline``), the log, the results
    of earlier steps by key, and ``save()`` to rewrite the JSON mid-step."""

    opts: Options
    scale: Scale
    log: Log
    results: dict[str, Any]
    save: Callable[[], None]
    seconds: float = 0.0
    deadline: float = 0.0

    @property
    def device(self) -> str:
        return self.opts.device

    @property
    def cuda(self) -> bool:
        return self.opts.device.startswith("cuda")

    def left(self) -> float:
        return self.deadline - time.monotonic()


def one_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"


def _throughput():
    """benchmarks/throughput.py (its hand-written loop, engine rate and device sync), imported when first needed."""
    import throughput

    return throughput


def fit_count(per_unit_s: float, seconds: float, lo: int, hi: int) -> int:
    """How many units of ``per_unit_s`` fit in ``seconds``, within [lo, hi]."""
    return int(max(lo, min(hi, seconds / max(per_unit_s, 1e-9))))


def cuda_peak_gib(device: str) -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None


def reset_peak(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


# -- (a) environment and the matmul peak -------------------------------------------------------------------------


def matmul_rate(n: int, dtype_name: str, device: str, seconds: float) -> Matmul:
    """TFLOP/s of an n x n x n product on random data (zeros run faster on Hopper), reps sized from a warm-up."""
    import torch

    sync = _throughput()._sync
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype_name]
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    for _ in range(2):  # library start-up, kernel choice
        a @ b
    sync(device)
    t0 = time.perf_counter()
    a @ b
    sync(device)
    reps = fit_count(time.perf_counter() - t0, seconds, 3, 50)
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return Matmul(dtype_name, n, reps, 2 * n**3 * reps / (time.perf_counter() - t0) / 1e12)


def trainer_precision(device: str) -> str:
    """bf16 autocast on a GPU; on a CPU only where it computes bf16 natively (else autocast emulates it, slower than
    fp32: training/config.py native_bf16)."""
    if device.startswith("cuda"):
        return "bf16"
    from wrapperlab.training.config import native_bf16

    return "bf16" if native_bf16() else "fp32"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def step_env(ctx: Context) -> EnvResult:
    """What the numbers were measured on, and the ceiling MFU is read against: this card's own matmul rate, not a
    datasheet's (bf16 for a GPU; on a CPU the trainer's precision decides which product is the peak)."""
    import torch

    gpu = torch.cuda.get_device_properties(torch.device(ctx.device).index or 0) if ctx.cuda else None
    precision = trainer_precision(ctx.device)
    matmuls = [matmul_rate(ctx.scale.matmul_n, dt, ctx.device, ctx.seconds * share)
               for dt, share in (("bf16", 0.3), ("fp32", 0.3))]
    peak = next(m for m in matmuls if m.dtype == precision)
    ctx.log(f"(a) {gpu.name if gpu else cpu_model()}: " + ", ".join(f"{m.dtype} {m.tflops:.1f} TFLOP/s"
                                                                    for m in matmuls) + f" at n = {ctx.scale.matmul_n}")
    return EnvResult(
        python=platform.python_version(), torch=torch.__version__, cuda=torch.version.cuda,
        cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        device=ctx.device, device_name=gpu.name if gpu else cpu_model(), cpu_model=cpu_model(),
        cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(),
        gpu_memory_gib=gpu.total_memory / 2**30 if gpu else None, multiprocessors=gpu.multi_processor_count if gpu
        else None, capability=f"{gpu.major}.{gpu.minor}" if gpu else None,
        allow_tf32=bool(torch.backends.cuda.matmul.allow_tf32), matmuls=matmuls, peak_tflops=peak.tflops,
        peak_dtype=precision)


# -- (b) the trainer at the paper's size ---------------------------------------------------------------------------


@dataclass
class Setup:
    """The model, data and one fixed batch of the trainer measurement (steps b-d build theirs from it)."""

    cfg: Any  # PretrainRunConfig
    data: Any  # PCFGData
    model: Any  # GPT
    batch: Any  # Samples
    precision: str

    @property
    def positions(self) -> int:
        return self.batch.tokens.shape[1] - 1  # the sequence loss feeds L - 1 tokens

    @property
    def tokens_per_step(self) -> int:
        return self.cfg.train.batch_size * self.positions


def setup(ctx: Context) -> Setup:
    import numpy as np
    import torch

    from wrapperlab.data.samples import PCFGData
    from wrapperlab.models.gpt import GPT
    from wrapperlab.settings.pcfg.configs import pretrain_config

    precision = trainer_precision(ctx.device)
    cfg = pretrain_config(ctx.scale.profile)
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"precision": precision})})
    data = PCFGData(cfg.data)
    torch.manual_seed(ctx.opts.seed)
    model = GPT(cfg.model).to(ctx.device)
    return Setup(cfg, data, model, data.sample(cfg.train.batch_size, np.random.default_rng(ctx.opts.seed)), precision)


def matmul_params(model) -> int:
    """Parameters that take part in matrix products: all but the embedding tables (lookups); a tied unembedding is
    the embedding's matrix and is counted once, as a product."""
    tables = {id(m.weight) for m in (model.embed, model.pos_embed) if m is not None}
    tied = id(model.unembed.weight) in tables
    return sum(p.numel() for p in model.parameters() if id(p) not in tables) + (model.unembed.weight.numel() if tied
                                                                              else 0)


def flops_per_token(model, positions: int) -> tuple[float, str]:
    """Training FLOPs per token, PaLM's count (Chowdhery et al. 2022, App. B): 6 N for the weights' products forward
    and backward, plus 12 L d T for attention's two products (causality not discounted)."""
    n, c = matmul_params(model), model.cfg
    formula = (f"6*N + 12*n_layers*d_model*T (PaLM App. B) with N = {n:,} parameters in products (embedding tables "
               f"left out, the unembedding counted), n_layers = {c.n_layers}, d_model = {c.d_model}, T = {positions} "
               "positions fed; tokens/s counts batch x T per step")
    return 6 * n + 12 * c.n_layers * c.d_model * positions, formula


@contextlib.contextmanager
def compile_backend(backend: str | None) -> Iterator[None]:
    """Make the loop's ``torch.compile(model)`` (training/loop.py SingleStep) use ``backend``. Why: in --smoke the
    default inductor backend spends ~50 s compiling on 2 busy CPU cores; the eager backend still traces the model
    through dynamo (what breaks first), in seconds. None: leave torch.compile as it is."""
    import functools

    import torch

    if backend is None:
        yield
        return
    original = torch.compile
    torch.compile = functools.partial(original, backend=backend)
    try:
        yield
    finally:
        torch.compile = original


def trainer_seconds(s: Setup, steps: int, device: str, compiled: bool) -> float:
    """Our trainer (training/loop.py fit: data generated online every step, the divergence guard, the schedule)
    for ``steps`` steps on the model, timed to the device's last kernel."""
    from wrapperlab.training.config import Runtime
    from wrapperlab.training.loop import Trainee, fit

    cfg = s.cfg.train.model_copy(update={"iters": steps, "eval_every": 10**9, "checkpoint_every": 10**9,
                                         "warmup_frac": 0.1})
    sync = _throughput()._sync
    sync(device)
    t0 = time.perf_counter()
    fit(Trainee(s.model, s.data.stream(0, cfg.batch_size), cfg), Runtime(progress=False, device=device,
                                                                          compile=compiled))
    sync(device)
    return time.perf_counter() - t0


def hand_seconds(s: Setup, steps: int, device: str) -> float:
    """benchmarks/throughput.py's minimal loop (one fixed batch, AdamW, clip) under the trainer's autocast."""
    import torch

    autocast = torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=s.precision == "bf16")
    with autocast:
        return _throughput().hand_loop(s.model, s.batch, s.cfg.train, steps, device)


def measure(name: str, run: Callable[[int], float], seconds: float, tokens_per_step: int) -> Variant:
    """``run(steps) -> seconds`` timed: a 2-step first call (first-use costs, compilation), a 3-step probe, then one
    timed call sized to last about ``seconds``."""
    t0 = time.perf_counter()
    run(2)
    first = time.perf_counter() - t0
    per_step = run(3) / 3
    steps = fit_count(per_step, seconds - (time.perf_counter() - t0), 3, 5000)
    took = run(steps)
    return Variant(name, "done", steps, took, first, steps * tokens_per_step / took)


def adamw_step_ms(model, cfg, device: str, fused: bool, steps: int) -> float:
    """Milliseconds per AdamW step on the model's parameters with random gradients: training/optim.py's optimiser
    (torch's default implementation: foreach on a GPU), or the same groups with ``fused=True``."""
    import copy

    import torch

    from wrapperlab.training.optim import make_optimizer

    twin = copy.deepcopy(model)
    opt = make_optimizer(twin, cfg)
    if fused:
        opt = torch.optim.AdamW([{"params": g["params"], "weight_decay": g["weight_decay"]} for g in opt.param_groups],
                                lr=cfg.lr, betas=cfg.betas, fused=True)
    for p in twin.parameters():
        p.grad = torch.randn_like(p) * 1e-3
    sync = _throughput()._sync
    for _ in range(3):
        opt.step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.step()
    sync(device)
    return (time.perf_counter() - t0) / steps * 1e3


def step_trainer(ctx: Context) -> TrainerResult:
    """Whether the paper's grid is affordable on one GPU: our trainer's rate at the paper's model, what compile and a
    fused AdamW would add, and how far it is from the minimal loop on the same batch (what the trainer's own
    bookkeeping and online data cost)."""
    s = setup(ctx)
    fpt, formula = flops_per_token(s.model, s.positions)
    env = ctx.results.get("a")
    peak = env.peak_tflops if env is not None else None
    t, dev, tps = ctx.seconds, ctx.device, s.tokens_per_step
    ctx.log(f"(b) {ctx.scale.profile} model: {s.model.num_params():,} parameters, batch {s.cfg.train.batch_size} x "
            f"{s.positions} positions, {s.precision}")
    variants = [measure("trainer", lambda n: trainer_seconds(s, n, dev, False), 0.22 * t, tps),
                measure("hand-written loop", lambda n: hand_seconds(s, n, dev), 0.15 * t, tps)]
    fused_error = fused_ms = None
    default_ms = adamw_step_ms(s.model, s.cfg.train, dev, False, 20)
    try:
        fused_ms = adamw_step_ms(s.model, s.cfg.train, dev, True, 20)
    except Exception as e:  # fused AdamW is not built for every device and dtype
        fused_error = one_line(e)
    backend = None if ctx.cuda else "eager"
    compile_floor = ctx.scale.compile_floor_s  # inductor's first compile of the model, forward and backward
    if ctx.left() < compile_floor:
        variants.append(Variant("trainer, torch.compile", f"skipped: budget ({ctx.left():.0f} s left of the step, a "
                                f"compile needs ~{compile_floor:.0f})"))
    else:
        try:
            with compile_backend(backend):
                variants.append(measure("trainer, torch.compile", lambda n: trainer_seconds(s, n, dev, True),
                                        ctx.left() - 2, tps))
        except Exception as e:  # a compile failure is a result, not the end of the check
            variants.append(Variant("trainer, torch.compile", f"failed: {one_line(e)}"))
    for v in variants:
        v.mfu = v.tokens_per_s * fpt / (peak * 1e12) if v.tokens_per_s and peak else None
        ctx.log(f"    {v.name}: {v.status}" + (f", {v.tokens_per_s:,.0f} tokens/s over {v.steps} steps, MFU "
                                               f"{v.mfu or float('nan'):.4f}" if v.tokens_per_s else ""))
    rate = {v.name: v.tokens_per_s for v in variants}
    compiled = rate.get("trainer, torch.compile")
    return TrainerResult(
        profile=ctx.scale.profile, n_layers=s.cfg.model.n_layers, d_model=s.cfg.model.d_model,
        params=s.model.num_params(), matmul_params=matmul_params(s.model), batch_size=s.cfg.train.batch_size,
        seq_len=s.batch.tokens.shape[1], tokens_per_step=tps, precision=s.precision, flops_per_token=fpt,
        flops_formula=formula, peak_tflops=peak, optimizer="training/optim.py make_optimizer: torch.optim.AdamW, "
        "no fused or foreach argument (torch's default: foreach on a GPU)", compile_backend=backend or "inductor",
        variants=variants, trainer_over_hand=rate["trainer"] / rate["hand-written loop"],
        compiled_over_eager=compiled / rate["trainer"] if compiled else None, adamw_step_ms=default_ms,
        adamw_fused_step_ms=fused_ms, adamw_fused_error=fused_error,
        best_mfu=max((v.mfu for v in variants if v.mfu and v.name.startswith("trainer")), default=None))


# -- (c) the data engine -------------------------------------------------------------------------------------------


def step_engine(ctx: Context) -> EngineResult:
    """Whether online data can feed the GPU: the loop makes each batch inline, so a slow engine idles the card."""
    from wrapperlab.data.finetune_data import FinetuneData, FinetuneDataConfig
    from wrapperlab.data.samples import PCFGData
    from wrapperlab.runs.profiles import profile
    from wrapperlab.settings.pcfg.configs import pretrain_config

    cfg = pretrain_config(ctx.scale.profile)
    data = PCFGData(cfg.data)
    ft_batch = profile(ctx.scale.profile)["finetune"]["batch_size"]
    each = min(ctx.scale.engine_s, max(0.05, ctx.left() / 2.5))
    engine_rate = _throughput().engine_rate
    pre = engine_rate(data.sample, cfg.train.batch_size, each)
    fine = engine_rate(FinetuneData(data, FinetuneDataConfig(c_tr=1.0)).sample, ft_batch, each)
    trainer = ctx.results.get("b")
    positions = data.seq_len - 1
    ours = fastest = None
    if trainer is not None:
        rates = {v.name: v.tokens_per_s for v in trainer.variants if v.tokens_per_s}
        ours = rates.get("trainer", 0) / positions or None
        fastest = max(rates.values()) / positions if rates else None
    ctx.log(f"(c) engine: {pre:,.0f} pretraining and {fine:,.0f} fine-tuning sequences/s; trainer consumed "
            f"{ours or float('nan'):,.0f}/s, fastest variant {fastest or float('nan'):,.0f}/s")
    return EngineResult(
        profile=ctx.scale.profile, seconds_each=each, pretrain_batch=cfg.train.batch_size, finetune_batch=ft_batch,
        pretrain_seq_per_s=pre, finetune_seq_per_s=fine, trainer_seq_per_s=ours, fastest_seq_per_s=fastest,
        ratio_vs_trainer=pre / ours if ours else None, ratio_vs_fastest=pre / fastest if fastest else None,
        data_share_of_trainer_step=ours / pre if ours else None)


# -- (d) stacked runs ---------------------------------------------------------------------------------------------


def stack_setup(ctx: Context) -> tuple[Any, Any, Any, int]:
    """(template model, fine-tuning data, base TrainConfig, batch): fine-tunings of the profile's model with answer
    loss on a planted correlation, as benchmarks/stacked.py and the paper's grids train them."""
    import torch

    from wrapperlab.data.finetune_data import FinetuneData, FinetuneDataConfig
    from wrapperlab.data.samples import PCFGData
    from wrapperlab.models.gpt import GPT
    from wrapperlab.runs.profiles import profile
    from wrapperlab.settings.pcfg.configs import pretrain_config
    from wrapperlab.training.config import TrainConfig

    pre = pretrain_config(ctx.scale.profile)
    batch = profile(ctx.scale.profile)["finetune"]["batch_size"]
    data = FinetuneData(PCFGData(pre.data), FinetuneDataConfig(c_tr=1.0))
    base = TrainConfig(iters=1, batch_size=batch, lr=1e-5, loss="answer", weight_decay=0.0, warmup_frac=0.2,
                       min_lr_frac=0.01, eval_every=10**9, checkpoint_every=10**9,
                       precision=trainer_precision(ctx.device))
    torch.manual_seed(ctx.opts.seed)
    return GPT(pre.model), data, base, batch


def stack_seconds(parts: tuple, n: int, steps: int, device: str, fixed: Any = None) -> float:
    """``n`` fine-tunings of ``steps`` steps: one run through fit (n = 0 means alone), else one stack of n; each
    run's batches from its own stream, or ``fixed`` (one batch) every step."""
    import copy

    from wrapperlab.training.config import Runtime
    from wrapperlab.training.loop import Trainee, train

    template, data, base, batch = parts
    runs = max(n, 1)
    trainees = [Trainee(copy.deepcopy(template).to(device),
                        data.stream(i, batch) if fixed is None else (lambda step: fixed),
                        base.model_copy(update={"iters": steps, "lr": 1e-5 * (i + 1)})) for i in range(runs)]
    sync = _throughput()._sync
    sync(device)
    t0 = time.perf_counter()
    train(trainees, Runtime(progress=False, device=device), stacked=n > 0)
    sync(device)
    return time.perf_counter() - t0


def stack_point(ctx: Context, parts: tuple, n: int, fixed: Any, seconds: float) -> StackPoint:
    """Run-steps/s of n runs stacked (n = 0: one alone): a first 1-step call (first-use costs), a 1-step and a
    k-step call; their difference over k - 1 steps, so that building the stack and the optimisers cancels."""
    reset_peak(ctx.device)
    t0 = time.perf_counter()
    stack_seconds(parts, n, 1, ctx.device, fixed)
    one = stack_seconds(parts, n, 1, ctx.device, fixed)
    steps = fit_count(one, seconds - (time.perf_counter() - t0), 2, 500)
    took = stack_seconds(parts, n, steps, ctx.device, fixed)
    per_step = (took - one) / (steps - 1) if took > one else took / steps
    return StackPoint(n, "online" if fixed is None else "fixed batch", "done", steps, took, max(n, 1) / per_step,
                      peak_memory_gib=cuda_peak_gib(ctx.device))


def step_stacked(ctx: Context) -> StackResult:
    """Each N twice: with a fixed batch first (the stacked computation; fast) and with online data (as a grid
    trains: the loop generates every run's batch each step, on the host, one after another)."""
    from wrapperlab.data.samples import stream_rng

    parts = stack_setup(ctx)
    engine = ctx.results.get("c")
    fixed = parts[1].sample(parts[3], stream_rng(ctx.opts.seed, "finetune", 0))
    todo = [(n, f) for n in (0, *ctx.scale.stack_ns) for f in (fixed, None)]
    points: list[StackPoint] = []
    alone: dict[str, float] = {}
    for i, (n, f) in enumerate(todo):
        mode, seconds = "online" if f is None else "fixed batch", ctx.left() / (len(todo) - i)
        oom = [p for p in points if p.data == mode and "out of memory" in p.status.lower()]
        if oom:
            points.append(StackPoint(n, mode, f"skipped: N = {oom[0].n} ran out of memory"))
            continue
        if n and mode not in alone:
            points.append(StackPoint(n, mode, "skipped: no rate of one run alone to compare with"))
            continue
        if seconds < 0.05:
            points.append(StackPoint(n, mode, "skipped: budget"))
            continue
        try:
            p = stack_point(ctx, parts, n, f, seconds)
        except Exception as e:  # out of memory at large N is a finding
            p = StackPoint(n, mode, f"failed: {one_line(e)}")
            reset_peak(ctx.device)
        if p.run_steps_per_s:
            alone.setdefault(mode, p.run_steps_per_s)
            p.per_run_gain = p.run_steps_per_s / alone[mode]
            if engine is not None and f is None:
                p.data_share_est = min(1.0, parts[3] * p.run_steps_per_s / engine.finetune_seq_per_s)
        points.append(p)
        ctx.log(f"(d) N = {n or '1, alone'}, {mode}: {p.status}" + (
            f", {p.run_steps_per_s:.1f} run-steps/s, per-run gain {p.per_run_gain:.2f}" if p.run_steps_per_s else ""))
    gain = {(p.n, p.data): p.per_run_gain for p in points}
    return StackResult(ctx.scale.profile, parts[3], parts[2].precision, points, gain.get((32, "online")),
                       gain.get((32, "fixed batch")))


# -- (e) the paper-scale key cell through the CLI ------------------------------------------------------------------


def child_env() -> dict[str, str]:
    """The CLI's environment: this checkout's src first on the path (it runs uninstalled too), output unbuffered."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p)
    return env


def stage_argv(ctx: Context, name: str, ids: dict[str, str], iters: int | None, store: Path) -> list[str]:
    """The CLI command of a stage of the key cell (eta_M, C_Tr = 1: the Counter's wrapper cell)."""
    smoke, prof = ctx.opts.smoke, ctx.scale.profile
    runtime = ["--runs", str(store), "--device", ctx.device]
    train = [*runtime, "--quiet", "--profile", prof, "--iters", str(iters)]
    train += ["--bf16"] if ctx.cuda else []
    train += ["--threads", str(ctx.opts.threads)] if ctx.opts.threads else []
    small_eval = ["--set", "eval.n=20", "--set", "eval.n_during=10"] if smoke else []
    if name == "pretrain":
        return ["pretrain", *train, *small_eval, *(["--set", 'data.tasks=["count"]'] if smoke else [])]
    if name == "finetune":
        return ["finetune", ids["pretrain"], *train, "--lr", "M", "--c-tr", "1.0", *small_eval]
    if name == "prune":
        return ["prune", ids["finetune"], *runtime, *(["--n", "20", "--ks", "0,2", "--samples", "16"] if smoke else [])]
    if name == "probe":
        return ["probe", ids["finetune"], *runtime, *(["--iters", "10", "--n-train", "64", "--n-test", "32"]
                                                      if smoke else [])]
    return ["reft", ids["finetune"], *train, *small_eval]


def numbers_of(obj: Any, prefix: str = "", depth: int = 3) -> dict[str, float]:
    """The headline numbers of a stored result: its numeric leaves to ``depth`` (a list of numbers by its max)."""
    out: dict[str, float] = {}
    if isinstance(obj, bool) or obj is None:
        return out
    if isinstance(obj, (int, float)):
        return {prefix: float(obj)}
    if isinstance(obj, list) and obj and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in obj):
        return {f"{prefix}.max": float(max(obj))}
    if isinstance(obj, dict) and depth > 0:
        for k, v in obj.items():
            out.update(numbers_of(v, f"{prefix}.{k}" if prefix else str(k), depth - 1))
    return dict(list(out.items())[:40])


def read_stage(name: str, store: Path, before: set[str], stdout: str) -> tuple[str | None, dict[str, float]]:
    """(run id, headline numbers) of a finished stage: the new run directory's result.json for a training stage,
    the analysis JSON its output names (``result: PATH``) for pruning and probing."""
    if name in ("prune", "probe"):
        path = next((line.split(":", 1)[1].strip() for line in stdout.splitlines() if line.startswith("result:")), None)
        data = json.loads(Path(path).read_text()) if path else {}
        keep = {k: v for k, v in data.items() if k in ("k_to_half", "accuracy", "majority", "ks")}
        return (path and Path(path).parent.parent.name), numbers_of(keep)
    new = sorted(d for d in set(os.listdir(store)) - before
                 if d.startswith(name + "-") and (store / d / "result.json").exists())
    if not new:
        return None, {}
    result = json.loads((store / new[-1] / "result.json").read_text())
    keep = {k: v for k, v in result.items() if k not in ("accuracy",)}
    keep.update({f"acc.{k}": v for k, v in result.get("accuracy", {}).items() if k.startswith("count/")})
    return new[-1], numbers_of(keep)


def stage_iters(ctx: Context, paper: int | None, seconds: float, step_s: float) -> int | None:
    """A training stage's steps: the paper's where they fit in its share (after the CLI's start and ~30 % for its
    evaluations), else as many as fit; fixed and tiny in --smoke."""
    if paper is None:
        return None
    if ctx.scale.smoke_iters is not None:
        return ctx.scale.smoke_iters
    return fit_count(step_s, 0.7 * (seconds - ctx.scale.cli_start_s), 20, paper)


def run_stage(ctx: Context, stage: StageResult, argv: list[str], store: Path) -> str:
    """One CLI stage in a subprocess, killed at its timeout; its status filled in; its stdout returned."""
    cmd = [sys.executable, "-m", "wrapperlab", *argv]
    stage.command = " ".join(argv)
    ctx.log(f"(e) {stage.name}: {stage.command}  (timeout {stage.timeout_s:.0f} s)")
    t0 = time.perf_counter()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=stage.timeout_s, env=child_env(), cwd=REPO)
    except subprocess.TimeoutExpired as e:
        stage.seconds = time.perf_counter() - t0
        stage.status = f"failed: timeout after {stage.timeout_s:.0f} s"
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        stage.output_tail = out[-1500:]
        return ""
    stage.seconds = time.perf_counter() - t0
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()
        stage.status = f"failed: exit {done.returncode}: {tail[-1][:300] if tail else 'no output'}"
        stage.output_tail = "\n".join(tail[-15:])
        return ""
    stage.status = "done"
    return done.stdout


def step_cell(ctx: Context) -> CellResult:
    """The pipeline as a user runs it, on the GPU, at the paper's sizes: every stage a CLI process with a timeout
    (a hang costs its share, not the lease), each finished stage's run id and numbers written as it ends."""
    store = ctx.opts.store or ctx.opts.out / "store"
    store.mkdir(parents=True, exist_ok=True)
    trainer = ctx.results.get("b")
    eager = next((v for v in trainer.variants if v.name == "trainer" and v.tokens_per_s), None) if trainer else None
    step_s, source = ((trainer.tokens_per_step / eager.tokens_per_s, "(b): the trainer's eager rate") if eager
                      else (0.02 if ctx.cuda else 0.5, "a guess: (b) has no rate"))
    engine = ctx.results.get("c")
    ft_extra = (engine.finetune_batch / engine.finetune_seq_per_s - engine.pretrain_batch / engine.pretrain_seq_per_s
                if engine else 0.0)
    stages = [StageResult(name, paper_iters=paper) for name, _, paper in STAGES]
    cell = CellResult(ctx.scale.profile, str(store), step_s, source, False, stages)
    ctx.results["e"] = cell  # save() after each stage writes it
    ids: dict[str, str] = {}
    for i, (stage, (name, share, paper)) in enumerate(zip(stages, STAGES, strict=True)):
        later = sum(s for _, s, _ in STAGES[i + 1:])
        seconds = max(0.0, ctx.left()) * share / (share + later)
        if ctx.left() < ctx.scale.cli_start_s + 1:
            stage.status = "skipped: budget"
            continue
        # fine-tuning batches take longer to make than pretraining ones (c), and the loop makes them inline
        stage.iters = stage_iters(ctx, paper, seconds, step_s + (max(0.0, ft_extra) if name != "pretrain" else 0.0))
        cell.scaled |= stage.iters is not None and paper is not None and stage.iters < paper
        # a stage may borrow from the later ones (its process start a few times over at least), never past the step
        stage.timeout_s = max(seconds, min(ctx.left(), max(1.5 * seconds, 2.5 * ctx.scale.cli_start_s)))
        before = set(os.listdir(store))
        stdout = run_stage(ctx, stage, stage_argv(ctx, name, ids, stage.iters, store), store)
        if stage.status == "done":
            stage.run_id, stage.numbers = read_stage(name, store, before, stdout)
            if paper and stage.numbers.get("steps") and stage.numbers.get("train_seconds"):
                stage.paper_projected_s = paper * stage.numbers["train_seconds"] / stage.numbers["steps"]
            if name in ("pretrain", "finetune"):
                ids[name] = stage.run_id
                if stage.run_id is None:
                    stage.status = f"failed: no finished {name} run in {store}"
        ctx.save()
        if stage.status != "done" and name in ("pretrain", "finetune"):
            break  # the stages after it need its run: they stay "not reached"
    return cell


# -- (f) audit cost --------------------------------------------------------------------------------------------------


def random_records(n: int, prompt: int, answer: int, vocab: int, seed: int):
    """Records as audit/encode.py makes them (position t predicts token t + 1, the answer's tokens scored)."""
    import torch

    from wrapperlab.audit.encode import Encoded

    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(2, vocab, (n, prompt + answer), generator=gen)
    target = torch.full_like(tokens, -1)
    target[:, prompt - 1:prompt + answer - 1] = tokens[:, prompt:]
    return Encoded(tokens, torch.ones_like(tokens), target)


def build_llama(shape: LlamaShape, ctx: Context):
    """A random-init Llama of ``shape`` as the audit's CausalLM, its weights made on the device (a 1 B model's
    initialisation on the host would take longer than its measurement)."""
    import torch

    from wrapperlab.audit.models import CausalLM, resolve_dtype, transformers_module

    tf = transformers_module()
    cfg = tf.LlamaConfig(vocab_size=shape.vocab, hidden_size=shape.hidden, intermediate_size=shape.intermediate,
                         num_hidden_layers=shape.layers, num_attention_heads=shape.heads,
                         num_key_value_heads=shape.kv_heads, max_position_embeddings=max(256, sum(ctx.scale.record)),
                         tie_word_embeddings=False)
    torch.manual_seed(ctx.opts.seed)
    with torch.device(ctx.device):
        model = tf.AutoModelForCausalLM.from_config(cfg, dtype=resolve_dtype("auto", ctx.device))
    return CausalLM(model.eval(), "BASE", None)


def audit_point(ctx: Context, lm, split: tuple, lora: int | None, seconds: float, name: str) -> AuditPoint:
    """Seconds per relearning step: relearn of 1 step and of k steps, their difference less the held-out scorings,
    over k - 1 (the copy or the adapters, the optimiser and first-use costs cancel); k sized from the 1-step call."""
    from wrapperlab.audit.config import RelearnConfig
    from wrapperlab.audit.measure import relearn, score

    sync = _throughput()._sync

    def timed(fn, *args) -> float:
        sync(ctx.device)
        t0 = time.perf_counter()
        fn(*args)
        sync(ctx.device)
        return time.perf_counter() - t0

    relearn(lm, split, RelearnConfig(steps=1, lora=lora), ctx.opts.seed)  # first use: kernels, peft, allocator
    t_score = timed(score, lm, split[1])
    one = timed(relearn, lm, split, RelearnConfig(steps=1, lora=lora), ctx.opts.seed)
    k = fit_count(one, seconds - 2 * one, 3, 50)
    cfg = RelearnConfig(steps=k, lora=lora)
    reset_peak(ctx.device)
    many = timed(relearn, lm, split, cfg, ctx.opts.seed)
    per_step = (many - one - (len(cfg.eval_at) - 2) * t_score) / (k - 1)
    if per_step <= 0:  # noise larger than the difference: the plain mean, an upper bound
        per_step = many / k
    return AuditPoint(name, lm.n_params, "full" if lora is None else f"LoRA r={lora}", "done", k, per_step, t_score,
                      cuda_peak_gib(ctx.device), cfg.batch_size * sum(ctx.scale.record))


def audit_shape(ctx: Context, shape: LlamaShape, pending: int) -> list[AuditPoint]:
    """Full fine-tuning and LoRA r = 16 of one shape, on one model built once; ``pending``: the measurements left
    in the step, this shape's included (each gets its part of the time left)."""
    import gc

    prompt, answer = ctx.scale.record
    split = tuple(random_records(n, prompt, answer, shape.vocab, ctx.opts.seed + i) for i, n in enumerate((32, 4)))
    points, lm = [], None
    for lora in (None, 16):
        mode = "full" if lora is None else f"LoRA r={lora}"
        seconds = ctx.left() / max(1, pending - len(points))
        if seconds < 0.2:
            points.append(AuditPoint(shape.name, shape.params, mode, "skipped: budget"))
            continue
        try:
            lm = lm or build_llama(shape, ctx)
            p = audit_point(ctx, lm, split, lora, seconds, shape.name)
        except Exception as e:  # out of memory on a smaller card is a result
            p = AuditPoint(shape.name, shape.params, mode, f"failed: {one_line(e)}")
        points.append(p)
        ctx.log(f"(f) {shape.name} {mode}: {p.status}" + (f", {p.seconds_per_step:.4f} s per step over {p.steps} "
                                                            "steps" if p.seconds_per_step else ""))
    del lm
    gc.collect()
    reset_peak(ctx.device)
    return points


def step_audit(ctx: Context) -> AuditResult:
    """What an audit's relearning costs at the sizes people audit (LoRA's point: less memory, not fewer FLOPs)."""
    import warnings

    from wrapperlab.audit.models import resolve_dtype

    points: list[AuditPoint] = []
    with warnings.catch_warnings():  # transformers' deprecation notes inside relearn, once per call
        warnings.simplefilter("ignore", FutureWarning)
        for i, shape in enumerate(ctx.scale.llamas):
            points += audit_shape(ctx, shape, 2 * (len(ctx.scale.llamas) - i))
    dtype = str(resolve_dtype("auto", ctx.device)).removeprefix("torch.")
    return AuditResult(dtype, 16, sum(ctx.scale.record), points)


# -- the plan --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    key: str
    title: str
    run: Callable[[Context], Any]


STEPS = (Step("a", "environment and the bf16 matmul peak", step_env),
         Step("b", "the trainer at the paper's size: tokens/s, MFU, compile, / hand-written loop", step_trainer),
         Step("c", "the data engine / what the trainer consumes", step_engine),
         Step("d", "stacked fine-tunings: per-run throughput / one alone", step_stacked),
         Step("e", "the paper-scale key cell through the CLI", step_cell),
         Step("f", "audit cost: relearning step and peak memory, Llama shapes", step_audit))


@dataclass(frozen=True)
class Shape:
    """What the estimates need of the profile's model, read off its config (no weights built)."""

    n_layers: int
    d_model: int
    matmul_params: int
    positions: int
    batch: int


def profile_shape(scale: Scale) -> Shape:
    from wrapperlab.settings.pcfg.configs import pretrain_config

    cfg = pretrain_config(scale.profile)
    m = cfg.model
    per_block = 4 * m.d_model * m.d_model + 2 * m.d_model * m.mlp_width  # qkv, out; fc_in, fc_out (GELU)
    return Shape(m.n_layers, m.d_model, m.n_layers * per_block + m.d_model * m.n_out, cfg.model.n_ctx - 1,
                 cfg.train.batch_size)


def estimates(scale: Scale) -> dict[str, tuple[float, str]]:
    """Each step's estimated GPU seconds from its FLOPs at ASSUMED_PEAK_TFLOPS and the MFU ASSUMED_MFU names, plus
    fixed costs (device start, compilation, process starts), and the basis in words."""
    peak = ASSUMED_PEAK_TFLOPS * 1e12
    s = profile_shape(scale)
    step_flops = (6 * s.matmul_params + 12 * s.n_layers * s.d_model * s.positions) * s.batch * s.positions
    at = {k: peak * v for k, v in ASSUMED_MFU.items()}
    mm = 2 * scale.matmul_n ** 3
    runs, measurements = 1 + sum(scale.stack_ns), 2 * (1 + len(scale.stack_ns))  # one alone, then each stack
    cell_steps = (scale.smoke_iters * 3 if scale.smoke_iters else PAPER_PT_ITERS + 2 * 10_000)
    llama = sum((6 + 4) * sh.params * 16 * sum(scale.record) for sh in scale.llamas) * 60
    return {
        "a": (3 + 20 * mm / at["matmul"] + 10 * mm / (peak / 12), "3 s start + 20 bf16 products at MFU 0.9 + 10 fp32 "
              "at 1/12 of the bf16 peak"),
        "b": (60 + 900 * step_flops / at["paper_model"], f"~900 steps of {step_flops:.2e} FLOPs at MFU 0.10 + 60 s "
              "for inductor's compile"),
        "c": (2 * scale.engine_s, "host only: two engine measurements"),
        "d": (2 * measurements + 2 * 30 * runs * step_flops / at["stack"], f"30 steps of one run alone and of each "
              f"stack of N = {', '.join(map(str, scale.stack_ns))}, with fixed and with online data, at MFU 0.15 + 2 s "
              "per measurement (the host's data generation not counted)"),
        "e": (5 * scale.cli_start_s + cell_steps * step_flops / at["paper_model"], f"the whole cell ({cell_steps:,} "
              "training steps at MFU 0.10, 5 CLI starts); it is scaled to its share when that is less"),
        "f": (9 * len(scale.llamas) + llama / at["llama"], "~60 steps of full fine-tuning (6N FLOPs a token) and of "
              "LoRA (4N) per shape at MFU 0.35 + 5 s per model build and 2 s per measurement"),
    }


def print_plan(report: Report, budget: Budget, log: Log) -> None:
    log(f"plan: {report.mode} scale on {report.device}, budget {budget.total:.0f} s. Estimated GPU seconds assume an "
        f"H200 bf16 dense peak of {ASSUMED_PEAK_TFLOPS:.0f} TFLOP/s at the MFU each names (an assumption for "
        "planning; step a measures the peak)")
    log(f"  {'step':4}  {'share':>5}  {'budget s':>8}  {'est. GPU s':>10}  title / basis of the estimate")
    for r in report.steps.values():
        est = f"{r.estimate_gpu_s:10.1f}" if r.estimate_gpu_s is not None else f"{'?':>10}"
        log(f"  {r.key:4}  {r.share * 100:4.0f}%  {r.share * budget.total:8.0f}  {est}  {r.title}")
        log(f"  {'':4}  {'':5}  {'':8}  {'':10}    {r.estimate_basis}")


# -- running ---------------------------------------------------------------------------------------------------------


def run_step(step: Step, ctx: Context, report: Report, budget: Budget) -> None:
    """One step within its allotment: skipped when less than its floor is left, its failure caught and recorded."""
    record = report.steps[step.key]
    keys = [k for k in report.steps if report.steps[k].status == "pending"]
    later = sum(report.steps[k].share for k in keys if k > step.key)
    floor, left = ctx.scale.floors[step.key], budget.left()
    if left < floor:
        record.status = "skipped: budget"
        record.result = {"left_s": left, "needs_s": floor}
        ctx.log(f"step {step.key}: skipped: budget ({left:.1f} s left, needs {floor} s)")
        return
    ctx.seconds = min(left, max(floor, budget.allot(record.share, later)))
    ctx.deadline = time.monotonic() + ctx.seconds
    record.status, record.allotted_s = "running", ctx.seconds
    ctx.save()
    ctx.log(f"step {step.key}: {step.title} ({ctx.seconds:.1f} s allotted)")
    t0 = time.monotonic()
    try:
        record.result = step.run(ctx)
        record.status = "done"
    except Exception as e:
        import traceback

        record.status = f"failed: {one_line(e)}"
        record.result = ctx.results.get(step.key)  # what a step with stages had finished
        ctx.log(f"step {step.key} failed:\n{traceback.format_exc()}")
    record.seconds = time.monotonic() - t0
    ctx.results[step.key] = record.result
    with contextlib.suppress(Exception):
        reset_peak(ctx.opts.device)
    ctx.log(f"step {step.key}: {record.status} in {record.seconds:.1f} s")


def versions() -> dict[str, str | None]:
    """The installed versions that the numbers depend on, and the commit (None where the tree has no git)."""
    from importlib import metadata

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("torch", "numpy", "transformers", "peft", "pydantic", "wrapperlab"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    import torch

    out["cuda"] = torch.version.cuda
    try:
        out["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=REPO,
                                       timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        out["commit"] = None
    return out


def goals(report: Report) -> dict[str, dict]:
    """Each goal of docs/gpu.md against what was measured: met, not met, or not measured."""
    def judged(value: float | None, goal: float) -> dict:
        return {"value": value, "goal": goal, "verdict": "not measured" if value is None else
                "met" if value >= goal else "not met"}

    res = {k: r.result for k, r in report.steps.items() if r.status == "done"}
    trainer, engine, stack = res.get("b"), res.get("c"), res.get("d")
    return {"mfu_at_paper_size": judged(trainer.best_mfu if trainer else None, GOALS["mfu"]),
            "engine_over_consumption": judged(engine.ratio_vs_fastest if engine else None, GOALS["engine_ratio"]),
            "stack_gain_at_32": judged(stack.gain_at_32 if stack else None, GOALS["stack_gain_n32"]),
            "stack_gain_at_32_fixed_batch": judged(stack.gain_at_32_fixed_batch if stack else None,
                                                   GOALS["stack_gain_n32"])}


def run(opts: Options) -> Report:
    opts.out.mkdir(parents=True, exist_ok=True)
    log, scale, budget = Log(opts.out / "gpu_check.log"), SMOKE if opts.smoke else FULL, Budget(opts.budget_s)
    path = opts.out / "gpu_check.json"
    import torch  # the first heavy import: after the log exists, inside the budget

    if opts.threads:
        torch.set_num_threads(opts.threads)
    torch.manual_seed(opts.seed)
    try:
        est = estimates(scale)
    except Exception as e:  # wrapperlab not importable: the steps will say why; the plan has no estimates
        est = {s.key: (None, f"no estimate: {one_line(e)}") for s in STEPS}
    report = Report(options=jsonable(dataclasses.asdict(opts)), seed=opts.seed, device=opts.device, mode=scale.name,
                    versions=versions(), assumptions={"peak_tflops": ASSUMED_PEAK_TFLOPS, "mfu": ASSUMED_MFU},
                    steps={s.key: StepRecord(s.key, s.title, scale.shares[s.key], *est[s.key]) for s in STEPS})
    results: dict[str, Any] = {}

    def save_now() -> None:  # mid-step too: a running step's finished parts (step e's stages) go in
        for key, r in report.steps.items():
            if r.status == "running" and key in results:
                r.result = results[key]
        save(report, path)

    ctx = Context(opts, scale, log, results, save_now)
    for key, r in report.steps.items():
        if opts.only and key not in opts.only:
            r.status = "skipped: not selected"
    print_plan(report, budget, log)
    save_now()
    try:
        for step in STEPS:
            if report.steps[step.key].status == "pending":
                run_step(step, ctx, report, budget)
                report.goals = goals(report)
                save_now()
    except BaseException as e:  # SIGTERM, Ctrl-C: the step in flight says so, and the JSON is written
        for r in report.steps.values():
            if r.status == "running":
                r.status = f"failed: interrupted ({type(e).__name__})"
        save_now()
        raise
    report.finished = True
    save_now()
    log(f"wrote {path} ({time.monotonic() - START:.1f} s)")
    return report


# -- rendering a result ---------------------------------------------------------------------------------------------


def headline(key: str, result: dict | None) -> str:
    """One cell of the markdown table: a step's main numbers, read from its JSON."""
    if not result:
        return ""
    if key == "a":
        return f"{result['device_name']}: " + ", ".join(f"{m['dtype']} {m['tflops']:.1f} TFLOP/s"
                                                        for m in result["matmuls"])
    if key == "b":
        return "; ".join(f"{v['name']} {v['tokens_per_s']:,.0f} tok/s, MFU {v['mfu'] or 0:.3f}" if v["tokens_per_s"]
                         else f"{v['name']} {v['status']}" for v in result["variants"]) + \
            f"; trainer / hand {result['trainer_over_hand']:.2f}"
    if key == "c":
        ratio = result["ratio_vs_fastest"]
        return f"{result['pretrain_seq_per_s']:,.0f} seq/s; / fastest consumption " + \
            (f"{ratio:.2f}" if ratio else "not measured")
    if key == "d":
        return "; ".join(f"N={p['n']} {p['data']} " + (f"gain {p['per_run_gain']:.2f}" if p["per_run_gain"]
                                                         else p["status"]) for p in result["points"] if p["n"])
    if key == "e":
        return "; ".join(f"{s['name']} {s['status']}" + (f" ({s['iters']:,} of {s['paper_iters']:,} steps"
                                                          if s["iters"] and s["paper_iters"] else "")
                         + (f"; all {s['paper_iters']:,}: ~{s['paper_projected_s']:,.0f} s of training)"
                            if s["iters"] and s.get("paper_projected_s") else ")" if s["iters"] else "")
                         for s in result["stages"])
    if key == "f":
        return "; ".join(f"{p['model']} {p['mode']} " + (f"{p['seconds_per_step']:.3f} s/step" if p["seconds_per_step"]
                                                          else p["status"])
                         + (f", {p['peak_memory_gib']:.1f} GiB" if p["peak_memory_gib"] else "")
                         for p in result["points"])
    return ""


def render(path: Path) -> str:
    data = json.loads(path.read_text())
    lines = [f"{data['mode']} run on {data['device']}, started {data['started']}, {data['wall_s']:.0f} s, torch "
             f"{data['versions'].get('torch')}, commit {data['versions'].get('commit')}", "",
             "| step | status | seconds | numbers |", "| --- | --- | ---: | --- |"]
    for key, step in data["steps"].items():
        seconds = f"{step['seconds']:.1f}" if step["seconds"] is not None else ""
        try:
            cell = headline(key, None if step["status"].startswith("skipped") else step["result"])
        except (KeyError, TypeError, ValueError) as e:  # an older file's layout: say so rather than fail
            cell = f"(unreadable: {one_line(e)})"
        lines.append(f"| {key}: {step['title']} | {step['status']} | {seconds} | {cell.replace('|', '/')} |")
    lines += ["", "| goal | value | goal | verdict |", "| --- | ---: | ---: | --- |"]
    for name, g in data.get("goals", {}).items():
        value = f"{g['value']:.3f}" if g["value"] is not None else ""
        lines.append(f"| {name} | {value} | {g['goal']} | {g['verdict']} |")
    return "\n".join(lines) + "\n"


def parse(argv: list[str] | None = None) -> tuple[Options | None, Path | None]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/gpu_check"), help="folder for gpu_check.json and .log "
                    "(default runs/gpu_check)")
    ap.add_argument("--budget-s", type=float, help=f"wall-time budget of the whole run, start-up included (default "
                    f"{FULL.budget_s:.0f}; {SMOKE.budget_s:.0f} with --smoke)")
    ap.add_argument("--smoke", action="store_true", help="every step at a toy size (a CPU, seconds)")
    ap.add_argument("--device", help="cuda | cpu (default: cuda where there is one)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, help="torch CPU threads (default: 1 in --smoke on a CPU, else torch's)")
    ap.add_argument("--only", default="", help="comma-separated steps to run (default all: a,b,c,d,e,f)")
    ap.add_argument("--store", type=Path, help="step e's run store (default OUT/store; on the device machine put it "
                    "outside $OUT: only 8 files come back from there)")
    ap.add_argument("--render", type=Path, help="print a gpu_check.json as markdown and exit")
    args = ap.parse_args(argv)
    if args.render:
        return None, args.render
    only = tuple(k.strip() for k in args.only.split(",") if k.strip())
    if any(k not in FULL.shares for k in only):
        ap.error(f"--only takes steps among {','.join(FULL.shares)}")
    device = args.device
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    threads = args.threads or (1 if args.smoke and device == "cpu" else None)
    budget = args.budget_s if args.budget_s is not None else (SMOKE if args.smoke else FULL).budget_s
    return Options(args.out, budget, args.smoke, device, args.seed, threads, only, args.store), None


def main(argv: list[str] | None = None) -> int:
    opts, to_render = parse(argv)
    if to_render is not None:
        print(render(to_render), end="")
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a polite kill still runs the finally of the step
    run(opts)
    return 0


if __name__ == "__main__":
    sys.exit(main())

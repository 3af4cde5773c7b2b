"""``wrapperlab audit BASE FINETUNED --capability FILE``: deleted or wrapped, for a pair of local Hugging Face model
directories (report/audit.py; docs/audit.md)."""

from __future__ import annotations

from pathlib import Path

from wrapperlab.cli.common import add_examples, say


def add_parsers(sub) -> None:
    p = sub.add_parser("audit", help="deleted or wrapped? audit a fine-tuned Hugging Face model against its base on a "
                                     "capability (JSON lines of prompt/answer)")
    p.add_argument("base", help="the model before the fine-tune (a Hugging Face directory)")
    p.add_argument("finetuned", help="the model after it (same architecture and tokenizer)")
    p.add_argument("--capability", required=True,
                   help='records {"prompt": ..., "answer": ...} or multiple choice {"question", "choices", "answer": '
                        'index or letter} (at least 8): JSON lines, CSV, Parquet, or a datasets directory')
    p.add_argument("--control", help="a model of the same architecture and tokenizer that never had the capability: "
                                     "relearning is then compared with it (the stronger control; docs/audit.md)")
    p.add_argument("--out", default="audit", help="where audit.json, audit.md and audit.html go (default: audit/)")
    f = p.add_argument_group("capability fields", "where the records keep what the audit reads")
    f.add_argument("--prompt-field", default="prompt", help="default: prompt")
    f.add_argument("--answer-field", default="answer",
                   help="the answer text, or the right choice's index (0-based) or letter (default: answer)")
    f.add_argument("--question-field", default="question", help="multiple choice (default: question)")
    f.add_argument("--choices-field", default="choices",
                   help="multiple choice: a list field, or columns named with commas, e.g. A,B,C,D (default: choices)")
    f.add_argument("--split", help="the split of a datasets directory holding several (e.g. test)")
    p.add_argument("--seeds", type=int, default=3, help="splits and batch orders (default 3; verdicts need 3)")
    p.add_argument("--steps", type=int, default=100, help="relearning steps on the attack split (default 100)")
    p.add_argument("--lr", type=float, default=1e-4, help="relearning learning rate (default 1e-4)")
    p.add_argument("--batch-size", type=int, default=16, help="relearning batch (default 16)")
    p.add_argument("--attack-share", type=float, default=0.5, help="share of the records relearning trains on")
    p.add_argument("--probe-iters", type=int, default=1000, help="training steps of each linear probe (default 1000)")
    p.add_argument("--lora", type=int, metavar="RANK", help="relearn through LoRA adapters of this rank (peft) "
                                                            "instead of full fine-tuning: the memory of a 7B audit")
    p.add_argument("--grad-checkpoint", action="store_true",
                   help="recompute activations in the backward pass (less memory, ~30 %% more time)")
    p.add_argument("--batch-tokens", type=int, default=8192,
                   help="tokens per forward pass: scoring, probing and relearning micro-batches (default 8192)")
    p.add_argument("--chat-template", action="store_true",
                   help="wrap each prompt in the tokenizer's chat template (instruction-tuned models)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | mps")
    p.add_argument("--dtype", default="auto", help="auto | fp32 | bf16 | fp16 (auto: bf16 where the device "
                                                   "computes it natively, else fp32)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--force", action="store_true", help="replace the audit --out holds already (refused without)")
    add_examples(sub, {"audit": ["wrapperlab audit base/ finetuned/ --capability forget.jsonl",
                                 "wrapperlab audit base/ finetuned/ --capability twist.jsonl --control never/ "
                                 "--steps 200 --out audit/",
                                 "wrapperlab audit zephyr-7b/ zephyr-rmu/ --capability wmdp.jsonl --device cuda "
                                 "--lora 16 --grad-checkpoint",
                                 "wrapperlab audit base/ unlearned/ --capability wmdp-bio/ --split test "
                                 "--question-field question --choices-field choices --answer-field answer"]})


def audit(args) -> int:
    from wrapperlab.api import audit as run
    from wrapperlab.cli.common import check_device

    check_device(args.device)
    result = run(args.base, args.finetuned, args.capability, control=args.control, out=args.out, say=say,
                 force=args.force,
                 seeds=args.seeds, attack_share=args.attack_share, probe_iters=args.probe_iters,
                 batch_tokens=args.batch_tokens, chat_template=args.chat_template, device=args.device,
                 dtype=args.dtype, progress=not args.quiet,
                 fields={"prompt": args.prompt_field, "answer": args.answer_field, "question": args.question_field,
                         "choices": args.choices_field, "split": args.split},
                 relearn={"steps": args.steps, "lr": args.lr, "batch_size": args.batch_size, "lora": args.lora,
                          "grad_checkpoint": args.grad_checkpoint})
    v, out = result.verdict, Path(args.out)
    print(f"verdict: {v.outcome} — {v.reason}\nreport: {out / 'audit.html'}\nmarkdown: {out / 'audit.md'}\n"
          f"numbers: {out / 'audit.json'}")
    return 0


COMMANDS = {"audit": audit}

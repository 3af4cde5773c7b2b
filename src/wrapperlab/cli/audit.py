"""``wrapperlab audit BASE FINETUNED --capability FILE``: deleted or wrapped, for a pair of local Hugging Face model
directories (report/audit.py; docs/audit.md)."""

from __future__ import annotations

from wrapperlab.cli.common import add_examples, say


def add_parsers(sub) -> None:
    p = sub.add_parser("audit", help="deleted or wrapped? audit a fine-tuned Hugging Face model against its base on a "
                                     "capability (JSON lines of prompt/answer)")
    p.add_argument("base", help="the model before the fine-tune (a Hugging Face directory)")
    p.add_argument("finetuned", help="the model after it (same architecture and tokenizer)")
    p.add_argument("--capability", required=True, help='JSON lines {"prompt": ..., "answer": ...} (at least 8)')
    p.add_argument("--control", help="a model of the same architecture and tokenizer that never had the capability: "
                                     "relearning is then compared with it (the stronger control; docs/audit.md)")
    p.add_argument("--out", default="audit", help="where audit.json, audit.md and audit.html go (default: audit/)")
    p.add_argument("--seeds", type=int, default=3, help="splits and batch orders (default 3; verdicts need 3)")
    p.add_argument("--steps", type=int, default=100, help="relearning steps on the attack split (default 100)")
    p.add_argument("--lr", type=float, default=1e-4, help="relearning learning rate (default 1e-4)")
    p.add_argument("--batch-size", type=int, default=16, help="relearning batch (default 16)")
    p.add_argument("--attack-share", type=float, default=0.5, help="share of the records relearning trains on")
    p.add_argument("--probe-iters", type=int, default=1000, help="training steps of each linear probe (default 1000)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | mps")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_examples(sub, {"audit": ["wrapperlab audit base/ finetuned/ --capability forget.jsonl",
                                 "wrapperlab audit base/ finetuned/ --capability twist.jsonl --control never/ "
                                 "--steps 200 --out audit/"]})


def audit(args) -> int:
    from wrapperlab.analysis.audit import RelearnConfig
    from wrapperlab.analysis.probing import ProbeConfig
    from wrapperlab.cli.common import check_device
    from wrapperlab.report.audit import AuditConfig, run_audit, write_audit

    check_device(args.device)
    cfg = AuditConfig(seeds=args.seeds, attack_share=args.attack_share, device=args.device, progress=not args.quiet,
                      probe=ProbeConfig(iters=args.probe_iters),
                      relearn=RelearnConfig(steps=args.steps, lr=args.lr, batch_size=args.batch_size))
    result = run_audit(args.base, args.finetuned, args.capability, cfg, control=args.control, say=say)
    paths = write_audit(result, args.out)
    v = result["verdict"]
    print(f"verdict: {v['outcome']} — {v['reason']}\nreport: {paths['html']}\nmarkdown: {paths['markdown']}\n"
          f"numbers: {paths['json']}")
    return 0


COMMANDS = {"audit": audit}

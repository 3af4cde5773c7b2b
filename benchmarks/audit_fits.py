"""What fits where: the audit's own memory estimate (audit/estimate.py) for three model sizes, fp32 and bf16, full
fine-tuning and LoRA — the table docs/audit.md prints (a formula, not a measurement).

    python benchmarks/audit_fits.py
"""

from wrapperlab.audit.estimate import fits_table

if __name__ == "__main__":
    print(fits_table(), end="")

"""The audit of a model pair — deleted or wrapped? — for any local Hugging Face causal LM, read natively through
``transformers`` (the ``hf`` extra; LoRA relearning through ``peft``).

It reads in four steps, one module each: **load** (models.py: local directories only, the weights checked, the
gates a pair must pass: one tokenizer, one architecture, finite weights), **encode** (encode.py: a capability's
prompts and answers as the model will see them), **measure** (measure.py: behaviour, relearning, the answer probe,
pruning, where the fine-tune wrote), **decide** (decide.py: the rules of claims/verdicts.py). run.py chains them
with one progress bar; result.py is what comes out, typed; report/audit.py only renders it. Our own runs reach the
same pipeline through ``wrapperlab export``.
"""

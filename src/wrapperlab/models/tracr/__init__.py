"""Tracr-compiled models: RASP programs with known mechanisms, converted to our :class:`GPT`.

Layering: ``programs`` (RASP sources) and ``compile`` need the optional ``tracr`` extra (JAX); they are
imported only when a program is compiled. ``compiled`` (the converted weights, their residual labels
and the token encoders, saved as files) is pure PyTorch, so fine-tuning and analysing a compiled model
never imports JAX.
"""

from wrapperlab.models.tracr.compiled import CompiledModel

__all__ = ["CompiledModel"]

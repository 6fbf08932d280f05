"""Dynamic int8 quantisation of a model's Linear layers, for CPU inference (opt-in).

``fashionclip.load(..., precision="int8")`` stores every ``nn.Linear`` weight as int8 (one scale
per output channel) and quantises activations on the fly, batch by batch (torch's dynamic
quantisation: no calibration data). Convolutions, embeddings and norms stay in float32. The
vectors are close to fp32 but not equal; see ``docs/encoding.md`` for the measured effect on the
evaluation metrics and on speed. Quantised models are for inference: they cannot be saved or
trained.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from fashionclip.errors import FashionCLIPError


def quantize_int8(module: nn.Module) -> nn.Module:
    """A copy of ``module`` with dynamic int8 Linear layers (CPU only).

    Raises FashionCLIPError where this torch build has no quantised CPU engine.
    """
    engines = [e for e in torch.backends.quantized.supported_engines if e != "none"]
    if not engines:
        raise FashionCLIPError(
            "precision 'int8' needs a torch build with a quantised CPU engine (fbgemm, x86, "
            "onednn or qnnpack); this one has none: use fp32 or bf16"
        )
    if torch.backends.quantized.engine == "none":
        torch.backends.quantized.engine = engines[0]
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        # torch marks the eager quantisation API deprecated (moving to torchao); it still works.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        quantized = quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8, inplace=False)
    if not any(_is_quantized(m) for m in quantized.modules()):
        raise FashionCLIPError(f"a {type(module).__name__} has no Linear layers to quantise")
    return quantized.eval()


def _is_quantized(module: nn.Module) -> bool:
    return type(module).__module__.startswith("torch.ao.nn.quantized")

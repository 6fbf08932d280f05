"""Dynamic int8 quantisation of a model's Linear layers (CPU), kept to measure it, not offered.

:func:`quantize_int8` stores every ``nn.Linear`` weight as int8 and quantises activations on the
fly (torch's dynamic quantisation: no calibration data); convolutions, embeddings and norms stay
float32. On the shipped model it lost 2-5 points against fp32 on the evaluation harness (the bar
is 0.5), so ``fashionclip.load(..., precision="int8")`` refuses it with that reason
(``docs/encoding.md`` has the table). :func:`int8_model` builds the quantised model anyway, to
repeat the measurement on another model or torch version::

    from fashionclip.evaluate.runner import EvaluationConfig, run_evaluation
    model = int8_model(fashionclip.load(None, device="cpu", precision="fp32"))
    run_evaluation(EvaluationConfig(out_dir="eval-int8", limit=2000), models=[model])
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from fashionclip.errors import FashionCLIPError
from fashionclip.models.model import FashionCLIP


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


def int8_model(model: FashionCLIP) -> FashionCLIP:
    """A CPU copy of an fp32 model with dynamic int8 Linear layers (for measurements)."""
    if model.precision != "fp32" or model.device.type != "cpu":
        raise FashionCLIPError("int8_model needs a float32 model on CPU (precision='fp32')")
    quantized = FashionCLIP(
        quantize_int8(model.module),
        model.image_processor,
        model.tokenizer,
        name=f"{model.name} (int8)",
        kind=model.kind,
        device="cpu",
        text_padding=model.text_padding,
        max_text_length=model.max_text_length,
        precision="fp32",
    )
    quantized.precision = "int8"  # what it runs in; autocast stays off
    return quantized

"""What a model declares so that the rest of deploykit never asks for its family: its traits.

``ModelTraits`` (on every ``ModelCfg``):

* ``attention``: the model has attention blocks (softmax(Q K^T) V). The int8 QDQ path then places Q/DQ on the
  attention path as ``--softmax`` says; a model that declares attention blocks but whose exported graph shows none
  (``passes.attention.find_attention``) is reported, since its softmax path is then not controlled.
* ``recipe``: the name of its int8 recipe in ``RECIPES`` (below): which op types the QDQ path quantizes, the
  default softmax path and NNCF's model type.

The family (cnn / vit / parc) is a display and report label only. The model's options (e.g. ParC's
``parc_impl``) are ``ModelCfg.options``.

A model whose traits are unknown (``ModelCfg.traits is None``: the timm: / tv: pass-through, an ONNX file without
a manifest) gets them from its graph when they are needed (``quantize`` does this: attention blocks found ->
``vit``, else ``cnn``), and says so. An unknown recipe name is an error, never the CNN recipe by default.

A new recipe is one ``register_recipe(QuantRecipe(...))`` call, in the model module that needs it.
"""

from __future__ import annotations

from dataclasses import dataclass

from deploykit.core.errors import InputError
from deploykit.core.registry import Registry

SOFTMAX_PATHS = ("int8", "float")


@dataclass(frozen=True)
class QuantRecipe:
    """An int8 recipe: what ``quantize`` does to a model that names it."""

    name: str
    op_types: tuple[str, ...]  # ONNX op types the ONNX Runtime QDQ path quantizes
    softmax: str = "int8"  # attention softmax on the QDQ path when --softmax is not given: int8 | float
    transformer: bool = False  # NNCF: ModelType.TRANSFORMER with the MIXED preset (else PERFORMANCE, no model type)
    description: str = ""

    def __post_init__(self):
        if self.softmax not in SOFTMAX_PATHS:
            raise ValueError(f"recipe {self.name!r}: softmax must be one of {SOFTMAX_PATHS}, not {self.softmax!r}")
        if not self.op_types:
            raise ValueError(f"recipe {self.name!r} quantizes no op type")

    def describe(self) -> dict:
        return {"name": self.name, "op_types": list(self.op_types), "softmax": self.softmax,
                "transformer": self.transformer}


RECIPES: Registry[QuantRecipe] = Registry("quantization recipe")


def register_recipe(recipe: QuantRecipe) -> QuantRecipe:
    return RECIPES.add(recipe.name, recipe)


def get_recipe(name: str) -> QuantRecipe:
    """The recipe called ``name``; an unknown name is an InputError naming the known ones."""
    if name not in RECIPES:
        raise InputError(RECIPES.unknown_message(name) + f" (known recipes: {', '.join(RECIPES.names())})")
    return RECIPES.get(name)


_MOVE = ("Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Slice", "Split", "Gather", "Concat")

# CNNs: Conv/ConvTranspose/Gemm/MatMul are the int8 compute; Relu and Clip are listed so that, with asymmetric
# activations, ONNX Runtime drops them and the convolution's quantized output range (zero point at 0) does the
# clamping (the activation "disappears into the quantized range"); Add is listed so the residual additions run as
# QLinearAdd between int8 tensors instead of dequantize -> float add -> quantize round trips (RESEARCH.md found
# Add+Mul together slower on ResNet-50; Add alone is NOT yet re-measured on ResNet-50 at 224 -- compare with
# ``--exclude Add`` in benchmarks/int8_latency.py on a quiet machine); pooling and data-movement ops pass int8
# through. Mul (squeeze-excitation, hard-swish) stays float: quantizing elementwise Mul adds Q/DQ round trips.
CNN = register_recipe(QuantRecipe(
    "cnn",
    op_types=("Conv", "ConvTranspose", "Gemm", "MatMul", "Relu", "Clip", "Add", "MaxPool", "AveragePool",
              "GlobalAveragePool", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Concat"),
    description="convolutions, linear layers, ReLU/Clip folded into the quantized range, residual Adds, pooling "
                "and data movement in int8"))

# ViTs: Conv (patch embedding), Gemm/MatMul (every linear layer and both attention MatMuls) and the data-movement
# ops around attention; LayerNorm, GELU (Erf) and the residual Adds stay float. NNCF's transformer mode.
VIT = register_recipe(QuantRecipe(
    "vit", op_types=("Conv", "Gemm", "MatMul") + _MOVE, transformer=True,
    description="patch embedding, linear layers and attention MatMuls in int8; LayerNorm, GELU and residual "
                "Adds float; NNCF transformer mode"))


@dataclass(frozen=True)
class ModelTraits:
    attention: bool  # has attention blocks (softmax(Q K^T) V)
    recipe: str  # int8 recipe name (RECIPES)

    def __post_init__(self):
        if not isinstance(self.attention, bool):
            raise ValueError(f"attention must be True or False, not {self.attention!r}")

    def quant_recipe(self) -> QuantRecipe:
        return get_recipe(self.recipe)

    def describe(self) -> dict:
        return {"attention": self.attention, "recipe": self.recipe}

    @classmethod
    def from_dict(cls, d: dict, where: str = "manifest") -> "ModelTraits":
        """Traits as a manifest records them; a malformed record is an InputError naming ``where``."""
        try:
            return cls(attention=d["attention"], recipe=str(d["recipe"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{where}: malformed model traits {d!r} ({exc})") from None


# the traits the built-in families declare
CNN_TRAITS = ModelTraits(attention=False, recipe="cnn")
VIT_TRAITS = ModelTraits(attention=True, recipe="vit")


def traits_from_graph(has_attention: bool) -> ModelTraits:
    """Traits of a model known only by its graph: attention blocks found -> the ViT recipe, else the CNN recipe."""
    return VIT_TRAITS if has_attention else CNN_TRAITS

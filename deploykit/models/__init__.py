"""Model zoo: CNN, ViT and ParC architectures behind one registry, plus any timm / torchvision model by name.

Importing this package registers every model: the modules below only declare (their builders import torch, timm
and torchvision lazily), so listing names stays cheap. A new model module is imported here.
"""

from deploykit.models.registry import (  # noqa: F401
    MODEL_OPTIONS,
    MODELS,
    ModelOption,
    ModelCfg,
    create_model,
    families,
    get_cfg,
    list_models,
    model_options_declared,
    models_with_option,
    model_stats,
    register_model,
)
from deploykit.models.traits import ModelTraits, QuantRecipe, register_recipe  # noqa: F401

# registration order is listing order: CNNs first, then ViTs, the ParC family beside its plain counterparts
from deploykit.models import torchvision_models  # noqa: F401  isort: skip
from deploykit.models import timm_models  # noqa: F401  isort: skip
from deploykit.models import parc_models  # noqa: F401  isort: skip
from deploykit.models import vanillanet  # noqa: F401  isort: skip
from deploykit.models import passthrough  # noqa: F401  isort: skip  (timm:NAME, tv:NAME)

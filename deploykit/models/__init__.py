"""Model zoo: CNN, ViT and ParC architectures behind one registry."""

from deploykit.models.registry import (  # noqa: F401
    MODELS,
    ModelCfg,
    create_model,
    get_cfg,
    list_models,
    model_stats,
    register_model,
)

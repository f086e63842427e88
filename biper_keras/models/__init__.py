"""Model builders in a registry: `get_model("resnet20", kernel_quantizer="biper")`."""

from biper_keras.models.registry import available_models, get_model, register_model
from biper_keras.models import quicknet, resnet, vgg, vit  # noqa: F401  (register their builders)

__all__ = ["available_models", "get_model", "register_model"]

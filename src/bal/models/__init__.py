"""Networks by name: ``create_model("resnet18", num_classes=10, image_size=32)``.

Importing this package registers ``vgg16``, ``resnet18`` and ``cnn``.
"""

from bal.models import cnn, resnet, vgg  # noqa: F401  (imported to register the models)
from bal.models.registry import (
    BalModel,
    create_model,
    list_models,
    load_model_file,
    register_model,
    save_model_file,
    working_size,
)

__all__ = [
    "BalModel", "create_model", "list_models", "load_model_file", "register_model", "save_model_file", "working_size",
]

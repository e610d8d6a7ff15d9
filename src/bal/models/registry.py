"""Models by name: a registry of factories and the base class they all build.

Every network in ``bal`` is a :class:`BalModel`: a body that maps an image batch to
one feature vector per image (:meth:`BalModel.forward_features`, the penultimate
layer that BAL and PT4AL embed and cluster) and a linear ``head`` on top of it.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from bal.errors import BalError
from bal.registry import Registry
from bal.validation import check_int

ModelFactory = Callable[[int, int], nn.Module]

_MODELS: Registry[ModelFactory] = Registry("model")
_WORKING_SIZES: dict[str, int] = {}

#: The image side a network works at on a folder of ordinary photos, unless told otherwise. The
#: three built-in networks are CIFAR-style (stride-1 stems, made for 32 px): at 64 px a photo keeps
#: its subject recognisable and a CPU still trains in minutes; 224 px would cost each of them
#: about 12 times more per image.
DEFAULT_WORKING_SIZE = 64
MIN_IMAGE_SIZE = 8

__all__ = ["BalModel", "create_model", "list_models", "load_model_file", "register_model", "save_model_file",
           "working_size"]


class BalModel(nn.Module):
    """Base class of every registered model.

    Subclasses build their body, then call :meth:`_make_head` last, so that the
    head's weights are drawn from torch's global RNG after the body's, the order
    the reference implementations use (same seed, same weights).

    Attributes:
        num_classes: number of logits the head produces.
        feature_dim: size of the :meth:`forward_features` output.
        head: ``nn.Linear(feature_dim, num_classes)``.
    """

    num_classes: int
    feature_dim: int
    head: nn.Linear

    def _make_head(self, feature_dim: int, num_classes: int) -> None:
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        self.head = nn.Linear(feature_dim, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        """Penultimate features: ``(B, 3, S, S)`` float -> ``(B, feature_dim)``."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        """Logits: ``(B, 3, S, S)`` float -> ``(B, num_classes)``."""
        return self.head(self.forward_features(x))


def register_model(name: str, working_size: int = DEFAULT_WORKING_SIZE) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator that makes ``factory(num_classes, image_size)`` available as ``name``.

    ``working_size`` is the image side the network works at on a photo folder whose
    size bal chooses (see :func:`bal.data.open.choose_image_size`).

    Raises:
        ValueError: ``name`` is already taken (a programming error, not bad user input).
    """
    _WORKING_SIZES[name] = int(working_size)
    return _MODELS.register(name)


def working_size(name: str) -> int:
    """The image side ``name`` works at on a photo folder (:data:`DEFAULT_WORKING_SIZE` unless registered otherwise)."""
    _MODELS.get(name)
    return _WORKING_SIZES.get(name, DEFAULT_WORKING_SIZE)


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(_MODELS.names())


def create_model(name: str, num_classes: int, image_size: int = 32) -> BalModel:
    """Build a freshly initialised model.

    Initialisation draws only from torch's global RNG, so ``torch.manual_seed(s)``
    followed by ``create_model(...)`` gives the same weights every time.

    Args:
        name: one of :func:`list_models`.
        num_classes: number of output logits, at least 2.
        image_size: side ``S`` of the square ``(B, 3, S, S)`` inputs, at least 8.

    Raises:
        ParameterError: unknown ``name``, ``num_classes < 2`` or ``image_size < 8``.
    """
    factory = _MODELS.get(name)
    num_classes = check_int("num_classes", num_classes, 2)
    image_size = check_int("image_size", image_size, MIN_IMAGE_SIZE)
    model = factory(num_classes, image_size)
    if not isinstance(model, BalModel):
        raise TypeError(f"factory of model {name!r} returned {type(model).__name__}, not a BalModel")
    return model


def save_model_file(path, model: BalModel, *, net: str, image_size: int, normalisation: dict, **extra) -> None:
    """Write ``model`` atomically as ``{net, num_classes, image_size, normalisation, model, **extra}``.

    The one format of every model file bal writes (``rotation.pth``, ``model_C.pth``,
    a project's ``models/cycle-N.pth``), so :func:`load_model_file` reads them all.
    ``normalisation`` is the input transform the model was trained with
    (:meth:`bal.data.BatchAugment.state`): it travels with the model, so whoever loads
    the file feeds it what it saw in training.
    """
    from bal.files import atomic_torch_save

    state = {"net": net, "num_classes": model.head.out_features, "image_size": int(image_size),
             "normalisation": dict(normalisation), **extra}
    atomic_torch_save(path, {**state, "model": model.state_dict()})


def load_model_file(path, redo: str = "delete it and run the command that wrote it again") -> tuple[BalModel, dict]:
    """The model stored by :func:`save_model_file` (on the CPU), and the file's other entries.

    The file is loaded as data only (:func:`bal.files.load_torch`). A missing,
    truncated, foreign or unsafe file is a :class:`~bal.errors.BalError` naming it and
    ending in ``redo``, the caller's advice on getting a good one back.
    """
    from bal.files import load_torch

    return model_from_file_content(load_torch(path, "a bal model", redo), path, redo)


def model_from_file_content(state: dict, path, redo: str) -> tuple[BalModel, dict]:
    """:func:`load_model_file` for a file already loaded (``state``, from ``path``)."""
    try:
        model = create_model(state["net"], num_classes=int(state["num_classes"]), image_size=int(state["image_size"]))
        model.load_state_dict(state.pop("model"))
    except BalError:
        raise
    except Exception as e:  # keys that do not fit, a dict of something else...
        raise BalError(f"model file {path} is not a bal model file ({type(e).__name__}); {redo}") from None
    return model, state

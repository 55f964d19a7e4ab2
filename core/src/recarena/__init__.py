"""RecArena: recommendation models as plugins on one shared, trustworthy data/eval pipeline."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("recarena")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+unknown"

from recarena.base import Capabilities, Recommender, Task
from recarena.data.interactions import IdMap, Interactions
from recarena.errors import NotFittedError, RecArenaError

__all__ = [
    "Capabilities",
    "IdMap",
    "Interactions",
    "NotFittedError",
    "RecArenaError",
    "Recommender",
    "Task",
    "__version__",
]

"""Plugin discovery through the ``recarena.models`` entry-point group.

Entry points are read once; a plugin's code is imported only when it is asked for by name.
Two distributions declaring the same name is an error naming both.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any

from recarena.errors import RecArenaError, UnknownNameError

GROUP = "recarena.models"


@dataclass
class PluginInfo:
    name: str
    distribution: str
    version: str
    value: str  # "module:attr"
    entry_point: Any

    def load(self):
        from recarena.base import Recommender

        try:
            cls = self.entry_point.load()
        except Exception as e:  # a broken plugin must not look like a missing one
            raise RecArenaError(
                f"Plugin {self.name!r} ({self.distribution} {self.version}) failed to import {self.value}: {e!r}"
            ) from e
        if not (isinstance(cls, type) and issubclass(cls, Recommender)):
            raise RecArenaError(
                f"Plugin {self.name!r} ({self.distribution}) points at {self.value}, which is not a Recommender subclass."
            )
        cls.plugin_name = self.name
        return cls

    def describe(self) -> dict[str, Any]:
        cls = self.load()
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "class": self.value,
            "capabilities": cls.capabilities.to_dict(),
        }


class DuplicatePluginError(RecArenaError):
    pass


@lru_cache(maxsize=1)
def discover() -> dict[str, PluginInfo]:
    found: dict[str, PluginInfo] = {}
    for ep in entry_points(group=GROUP):
        dist = ep.dist.name if ep.dist is not None else "?"
        version = ep.dist.version if ep.dist is not None else "?"
        info = PluginInfo(ep.name, dist, version, ep.value, ep)
        prev = found.get(ep.name)
        if prev is not None:
            if (prev.distribution, prev.value) == (dist, ep.value):
                continue  # the same distribution seen twice on sys.path
            raise DuplicatePluginError(
                f"Two distributions declare the model plugin {ep.name!r}: "
                f"{prev.distribution} {prev.version} ({prev.value}) and {dist} {version} ({ep.value}). "
                f"Uninstall one of them or rename its entry point in [project.entry-points.\"{GROUP}\"]."
            )
        found[ep.name] = info
    return found


def available() -> list[str]:
    return sorted(discover())


def info(name: str) -> PluginInfo:
    plugins = discover()
    if name not in plugins:
        raise UnknownNameError("model", name, plugins)
    return plugins[name]


def get(name: str):
    """The Recommender class registered under ``name`` (imported on first use)."""
    return info(name).load()

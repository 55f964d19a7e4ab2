"""Plugin discovery through entry points.

- ``recarena.models``: one entry point per model, ``name = "module:Class"``.
- ``recarena.providers``: one distribution, many models. The entry point's name is a
  namespace and its value a callable returning ``{model: "module:Class" or class}``; the
  models are named ``<namespace>/<model>`` (``recbole/EASE``). The listing must be cheap to
  import and call: it runs whenever plugins are discovered, the model classes only on use.

Entry points are read once; a model's code is imported only when it is asked for by name.
Two declarations of one name are an error naming both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any

from recarena.errors import RecArenaError, UnknownNameError

GROUP = "recarena.models"
PROVIDER_GROUP = "recarena.providers"


@dataclass
class PluginInfo:
    name: str
    distribution: str
    version: str
    value: str  # "module:attr"
    loader: Callable[[], Any]
    provider: str | None = None  # the namespace of a provider's model

    def load(self):
        from recarena.base import Recommender

        try:
            cls = self.loader()
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

    def resolves_to(self, cls: type) -> bool:
        """Whether this entry names ``cls`` (compared by import path, without importing)."""
        return self.value == f"{cls.__module__}:{cls.__qualname__}"

    def describe(self) -> dict[str, Any]:
        cls = self.load()
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "class": self.value,
            "provider": self.provider,
            "capabilities": cls.capabilities.to_dict(),
        }


class DuplicatePluginError(RecArenaError):
    pass


def _import(value: str):
    import importlib

    mod, _, attr = value.partition(":")
    obj = importlib.import_module(mod)
    for part in attr.split(".") if attr else ():
        obj = getattr(obj, part)
    return obj


def _provided(ep, dist: str, version: str) -> list[PluginInfo]:
    try:
        listing = ep.load()
        models = listing() if callable(listing) else listing
        models = dict(models)
    except Exception as e:
        raise RecArenaError(f"Model provider {ep.name!r} ({dist} {version}, {ep.value}) failed to list its models: {e!r}") from e
    out = []
    for model, target in sorted(models.items()):
        if isinstance(target, str):
            value, loader = target, (lambda t=target: _import(t))
        else:
            value, loader = f"{target.__module__}:{target.__qualname__}", (lambda t=target: t)
        out.append(PluginInfo(f"{ep.name}/{model}", dist, version, value, loader, provider=ep.name))
    return out


@lru_cache(maxsize=1)
def discover() -> dict[str, PluginInfo]:
    found: dict[str, PluginInfo] = {}

    def add(info: PluginInfo, group: str):
        prev = found.get(info.name)
        if prev is not None:
            if (prev.distribution, prev.value) == (info.distribution, info.value):
                return  # the same distribution seen twice on sys.path
            raise DuplicatePluginError(
                f"Two distributions declare the model plugin {info.name!r}: "
                f"{prev.distribution} {prev.version} ({prev.value}) and {info.distribution} {info.version} "
                f"({info.value}). Uninstall one of them or rename its entry point in "
                f"[project.entry-points.\"{group}\"]."
            )
        found[info.name] = info

    for ep in entry_points(group=GROUP):
        dist = ep.dist.name if ep.dist is not None else "?"
        version = ep.dist.version if ep.dist is not None else "?"
        if "/" in ep.name:
            raise RecArenaError(f"{dist}: model name {ep.name!r} has a '/': namespaces belong to "
                                f"[project.entry-points.\"{PROVIDER_GROUP}\"].")
        add(PluginInfo(ep.name, dist, version, ep.value, ep.load), GROUP)
    for ep in entry_points(group=PROVIDER_GROUP):
        dist = ep.dist.name if ep.dist is not None else "?"
        version = ep.dist.version if ep.dist is not None else "?"
        for info in _provided(ep, dist, version):
            add(info, PROVIDER_GROUP)
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

"""Site drivers discovered through the ``lwfm.sites`` entry-point group."""

from __future__ import annotations

from importlib.metadata import entry_points

from .config import Config
from .errors import ConfigError
from .site import Site, SiteHost

GROUP = "lwfm.sites"


def drivers() -> dict[str, object]:
    """Entry points by driver name (not loaded: loading may import heavy SDKs)."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def load_driver(name: str) -> type[Site]:
    eps = drivers()
    if name not in eps:
        raise ConfigError(f"no site driver {name!r} is installed; installed drivers: "
                          f"{', '.join(sorted(eps)) or 'none'} (is lwfm installed with pip?)")
    cls = eps[name].load()  # type: ignore[attr-defined]
    if not (isinstance(cls, type) and issubclass(cls, Site)):
        raise ConfigError(f"entry point {name!r} in {GROUP} is not an lwfm Site subclass")
    return cls


def make_site(config: Config, name: str, host: SiteHost) -> Site:
    """Build the configured site ``name``."""
    cfg = config.site_config(name)
    return load_driver(str(cfg.get("driver", name)))(host)

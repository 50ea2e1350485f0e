"""The Caddy config's provider, where stacks deployed before timemachine/ name it (see __init__.py)."""

from timemachine.dynamic.caddy_config import _CaddyConfigProvider

__all__ = ["_CaddyConfigProvider"]

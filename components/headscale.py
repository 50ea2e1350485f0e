"""The Headscale resources' providers, where stacks deployed before timemachine/ name them (see __init__.py)."""

from timemachine.dynamic.headscale import _PolicyProvider, _PreAuthKeyProvider, _UserProvider

__all__ = ["_PolicyProvider", "_PreAuthKeyProvider", "_UserProvider"]

"""The share storage's provider, where stacks deployed before timemachine/ name it (see __init__.py)."""

from timemachine.dynamic.share_storage import _ShareStorageProvider

__all__ = ["_ShareStorageProvider"]

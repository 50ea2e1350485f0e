"""The process limit's provider, where stacks deployed before timemachine/ name it (see __init__.py)."""

from timemachine.dynamic.process_limit import _ProcessLimitProvider

__all__ = ["_ProcessLimitProvider"]

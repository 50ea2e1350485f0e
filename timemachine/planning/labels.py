"""The Docker labels that mark what a stack created: their names, and whose an object is."""

PREFIX = "timemachine"
# <project>/<stack> on every container and the network (not on volumes: a changed label replaces a
# volume, and the data volumes are protected): whose an object is, for the name guard
# (timemachine/preflight/guard.py).
STACK_LABEL = f"{PREFIX}.stack"


def stack_id(project: str, stack: str) -> str:
    return f"{project}/{stack}"

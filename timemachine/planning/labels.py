"""The Docker labels that mark what a stack created: their names, and whose an object is."""

PREFIX = "timemachine"
# <project>/<stack> on every container and the network (not on volumes: a changed label replaces a
# volume, and the data volumes are protected): whose an object is, for the name guard
# (timemachine/preflight/guard.py).
STACK_LABEL = f"{PREFIX}.stack"


def stack_id(project: str, stack: str) -> str:
    return f"{project}/{stack}"


# The Caddy shard (proxy.shards) of a share's Samba container and of a Caddy container, on shards
# beyond 0 only: a stack without shards keeps its labels (a changed label replaces a container).
SHARD_LABEL = f"{PREFIX}.shard"

"""Generated stack configs of any size, shared by the program tests and the benchmark."""
from __future__ import annotations

from config.loader import ConfigError, load


def generated(n: int, **overrides) -> dict:
    """n shares in a /16 with deterministic names; hash collisions are resolved by pinning the
    address the config error suggests, as a user would."""
    config = {
        "storageRoot": "/srv/tm",
        "network": {"name": "tm", "subnet": "10.77.0.0/16"},
        "tailnet": {"dnsSuffix": "corp.ts.net"},
        "shares": [{"name": f"user{i:03d}", "owner": f"user{i}@example.com", "quota": f"{i + 1}G"} for i in range(n)],
    }
    config.update(overrides)
    while True:
        try:
            load(config)
            return config
        except ConfigError as exc:
            first = exc.problems[0]
            index = int(first.split("[")[1].split("]")[0])
            config["shares"][index]["ip"] = first.split("e.g. ip: ")[1].split(" ")[0]

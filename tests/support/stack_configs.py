"""Generated stack configs of any size, shared by the program tests and the benchmark."""

from __future__ import annotations


def generated(n: int, **overrides) -> dict:
    """n shares in a /20 with deterministic names (hash collisions need no pin)."""
    config = {
        "storageRoot": "/srv/tm",
        "network": {"name": "tm", "subnet": "10.77.0.0/20"},
        "tailnet": {"dnsSuffix": "corp.ts.net"},
        "shares": [{"name": f"user{i:03d}", "owner": f"user{i}@example.com", "quota": f"{i + 1}G"} for i in range(n)],
    }
    config.update(overrides)
    return config

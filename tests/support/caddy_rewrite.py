"""Turns the program's Caddy config into one a test can run where no tailnet control server exists.

Only what a test names changes: the `tailscale` app is removed and each `tailscale/<node>:445`
listener becomes a plain TCP address. Routes, handlers and upstreams stay exactly as generated.
"""

from __future__ import annotations

import json


def without_tailnet(config_text: str, listeners: dict[str, str]) -> str:
    """`listeners` maps node hostname → plain address (e.g. "127.0.0.1:14450")."""
    config = json.loads(config_text)
    config["apps"].pop("tailscale")
    # The status page is an HTTP server on a tailnet node of its own, with no plain-TCP stand-in here.
    config["apps"].pop("http", None)
    for server in config["apps"]["layer4"]["servers"].values():
        rewritten = []
        for address in server["listen"]:
            network, _, hostport = address.partition("/")
            if network != "tailscale":
                raise ValueError(f"unexpected listener {address!r}")
            node = hostport.rsplit(":", 1)[0]
            rewritten.append(listeners[node])
        server["listen"] = rewritten
    return json.dumps(config, indent=2, sort_keys=True)

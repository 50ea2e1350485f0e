"""Fixed ports of the system: what every part agrees on."""

# SMB over TCP: what a Mac dials on a share's node, and what smbd listens on.
SMB_PORT = 445
# The status page on the tailnet: plain HTTP on the status node (the tailnet encrypts it).
STATUS_PAGE_PORT = 80
# The status container's /metrics and / on the stack's network.
STATUS_PORT = 9110

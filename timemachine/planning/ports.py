"""Fixed ports of the system: what every part agrees on."""

# SMB over TCP: what a Mac dials on a share's node, and what smbd listens on.
SMB_PORT = 445

"""tailscale-timemachine: per-user macOS Time Machine backups over a tailnet, as a Pulumi program."""

"""The `python -m timemachine.health` command line: `status` reports and exits 1 on trouble, `serve` serves."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Sequence

from timemachine.health.collector import DEFAULT_INCOMPLETE_AFTER_SECONDS, collect, discover_shares
from timemachine.health.inputs import ShareInputs, load_shares_file, parse_duration, parse_share, parse_shares_json
from timemachine.health.probes import nodes_registered, probe_shares
from timemachine.health.remote import RemoteError, metrics_url_of_stack, remote_snapshot
from timemachine.health.report import failing, text_report
from timemachine.health.server import SnapshotSource, make_server


def _share(text: str) -> object:
    try:
        return parse_share(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="python -m timemachine.health",
        description="Watch Time Machine backups in the share directories of a storage root (read-only).",
    )
    commands = top.add_subparsers(dest="command", required=True)
    for name, summary in (
        ("status", "print every Mac's backup state; exit 1 when anything is stale, failed, missing or down"),
        ("serve", "serve /metrics (Prometheus) and / (a status page) over HTTP"),
    ):
        command = commands.add_parser(name, help=summary, description=summary)
        if name == "status":
            where = command.add_mutually_exclusive_group(required=True)
            where.add_argument("--root", help="the storage root: one directory per share")
            where.add_argument("--url", help="a running collector's /metrics (a stack's status.metricsUrl)")
            where.add_argument(
                "--stack", help="a deployed stack: its status.metricsUrl from `pulumi stack output` (run it there)"
            )
        else:
            command.add_argument("--root", required=True, help="the storage root: one directory per share")
        command.add_argument(
            "--share",
            action="append",
            type=_share,
            default=[],
            metavar="NAME[=QUOTA[:STALE_AFTER]]",
            help="a share to read, e.g. alice=500G:3d (QUOTA empty = unlimited; STALE_AFTER default 3d); repeatable",
        )
        shares = command.add_mutually_exclusive_group()
        shares.add_argument(
            "--shares-file",
            metavar="JSON",
            help='{"shares": [{"name", "quota", "staleAfterSeconds", "up", "nodeRegistered"}]}; serve rereads it',
        )
        shares.add_argument(
            "--shares-json", metavar="TEXT", help="the same as --shares-file's content, given on the command line"
        )
        command.add_argument(
            "--incomplete-after",
            type=_duration,
            metavar="DURATION",
            help="bands written this long after the last completed backup mean backups do not complete (default 24h)",
        )
        if name == "status":
            command.add_argument("--now", type=float, help="seconds since the epoch to judge ages at (default: now)")
        else:
            command.add_argument("--port", type=int, required=True)
            command.add_argument("--bind", default="127.0.0.1", help="address to listen on (0.0.0.0 in a container)")
            command.add_argument(
                "--min-interval", type=_duration, default=60.0, help="collect at most this often (default 60s)"
            )
    return top


def _inputs(args: argparse.Namespace) -> ShareInputs:
    if args.shares_file:
        given = load_shares_file(args.shares_file)
    elif args.shares_json:
        given = parse_shares_json(args.shares_json)
    else:
        given = ShareInputs()
    # --share overrides the file's entry of the same name; up and registered stay the file's.
    specs = {s.name: s for s in given.specs}
    specs.update({s.name: s for s in args.share})
    incomplete = args.incomplete_after or given.incomplete_after_seconds
    return dataclasses.replace(given, specs=tuple(specs.values()), incomplete_after_seconds=incomplete)


def probed(inputs: ShareInputs) -> ShareInputs:
    """The inputs with what the probes found now: each share's smbd over SMB, each node's state in Caddy's."""
    results = probe_shares(inputs.smb_targets)
    registered = (
        nodes_registered(inputs.caddy_state_dir, inputs.nodes, inputs.node_state_dirs) if inputs.caddy_state_dir else {}
    )
    return dataclasses.replace(
        inputs,
        up={**inputs.up, **{share: r.up for share, r in results.items()}},
        down_reasons={**inputs.down_reasons, **{share: r.reason for share, r in results.items() if not r.up}},
        node_registered={**inputs.node_registered, **registered},
    )


def _remote_status(args: argparse.Namespace) -> int:
    try:
        url = args.url or metrics_url_of_stack(args.stack)
        snapshot = remote_snapshot(url)
    except RemoteError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    sys.stdout.write(text_report(snapshot))
    return 1 if failing(snapshot) else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "status" and args.root is None:
        return _remote_status(args)
    try:
        inputs = _inputs(args)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.command == "status":
        inputs = probed(inputs)
        snapshot = collect(
            args.root,
            inputs.specs or discover_shares(args.root),
            time.time() if args.now is None else args.now,
            up=inputs.up,
            node_registered=inputs.node_registered,
            incomplete_after_seconds=inputs.incomplete_after_seconds or DEFAULT_INCOMPLETE_AFTER_SECONDS,
            down_reasons=inputs.down_reasons,
        )
        sys.stdout.write(text_report(snapshot))
        return 1 if failing(snapshot) else 0

    def reread() -> ShareInputs:
        # The file may be rewritten by whatever knows which containers are up; a bad version keeps the last.
        nonlocal inputs
        try:
            inputs = _inputs(args)
        except (OSError, ValueError) as error:
            print(f"warning: keeping the previous share inputs: {error}", file=sys.stderr)
        return probed(inputs)

    source = SnapshotSource(args.root, reread, min_interval=args.min_interval)
    server = make_server(source, args.bind, args.port)
    host, port = server.server_address[:2]
    print(f"serving http://{host!s}:{port}/metrics and / for {args.root}", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0

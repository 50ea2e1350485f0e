"""Mints the stand-in's keys as Headscale pre-auth keys (its CLI in its container), so a node given
a key the stand-in returned really registers with the test's control server, with the key's tags."""

from __future__ import annotations

import json
import threading
from typing import Any

from tests.tailscale_api.server import Minted
from timemachine.headscale.versions import keys_by_id


class HeadscaleKeys:
    """Pre-auth keys of one Headscale user (made if missing), through `headscale … -o json`."""

    def __init__(self, container, user: str):
        self.container = container
        self.user = user
        self._user_id: str | None = None
        self._version: str | None = None
        self._lock = threading.Lock()

    def by_id(self) -> bool:
        """Whether its Headscale lists and expires keys by id (0.28 and later)."""
        if self._version is None:
            code, output = self.container.exec_run(["headscale", "version"])
            self._version = output.decode().strip().splitlines()[0].removeprefix("headscale version").strip()
        return keys_by_id(self._version)

    def _cli(self, *args: str) -> Any:
        code, output = self.container.exec_run(["headscale", *args, "-o", "json"], demux=True)
        stdout, stderr = ((part or b"").decode(errors="replace").strip() for part in output)
        if code != 0:
            raise RuntimeError(f"headscale {' '.join(args)} failed (exit {code}): {stderr or stdout}")
        return json.loads(stdout) if stdout else None

    def user_id(self) -> str:
        with self._lock:
            if self._user_id is None:
                users = {u["name"]: str(u["id"]) for u in self._cli("users", "list") or []}
                self._user_id = users.get(self.user) or str(self._cli("users", "create", self.user)["id"])
            return self._user_id

    def mint(self, tags: list[str], reusable: bool, ephemeral: bool, expiry_seconds: int) -> Minted:
        args = ["preauthkeys", "create", "--user", self.user_id(), "--expiration", f"{expiry_seconds}s"]
        if reusable:
            args.append("--reusable")
        if ephemeral:
            args.append("--ephemeral")
        if tags:
            args += ["--tags", ",".join(tags)]
        made = self._cli(*args)
        return Minted(str(made["id"]), made["key"])

    def _listed(self, minted: Minted) -> dict:
        keys = self._cli("preauthkeys", "list", *([] if self.by_id() else ["--user", self.user_id()])) or []
        return next((k for k in keys if str(k["id"]) == minted.id), {})

    def used(self, minted: Minted) -> bool:
        return bool(self._listed(minted).get("used"))

    def revoke(self, minted: Minted) -> None:
        if self.by_id():
            self._cli("preauthkeys", "expire", "--id", minted.id)
        else:
            self._cli("preauthkeys", "expire", "--user", self.user_id(), minted.key)

    def add_members(self, logins: list[str]) -> None:
        """The tailnet's members as Headscale users: `alice` with the email alice@example.com, which
        is how Headscale matches a login the policy names (its users have no domain)."""
        existing = {u["name"] for u in self._cli("users", "list") or []}
        for login in logins:
            name = login.split("@")[0]
            if name not in existing:
                self._cli("users", "create", name, "--email", login)

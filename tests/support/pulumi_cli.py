"""Drives the real `pulumi` CLI as a user does: a project folder, a file backend, one stack.

Each stack gets a temporary project folder whose entries link to this repository's program
(`Pulumi.yaml`, `__main__.py`, `timemachine/`, `images/`, `.venv`, `pyproject.toml`), so the stack's own
`Pulumi.<stack>.yaml` (and the passphrase provider's salt in it) never lands in the repository.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.project import PROJECT, ROOT

PROGRAM_FILES = ("Pulumi.yaml", "__main__.py", "timemachine", "images", ".venv", "requirements.txt", "pyproject.toml")
PASSPHRASE = "engine-tests-only"


def tools_env() -> dict[str, str]:
    """The exports of `scripts/pulumi-tools.sh env`, applied to this process's environment."""
    done = subprocess.run(["bash", str(ROOT / "scripts" / "pulumi-tools.sh"), "env"], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip() or "scripts/pulumi-tools.sh env failed")
    shell = f"{done.stdout}\nenv -0"
    dump = subprocess.run(["bash", "-c", shell], capture_output=True, check=True).stdout
    return dict(item.split("=", 1) for item in dump.decode().split("\0") if "=" in item)


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def json(self) -> Any:
        return json.loads(self.stdout)


class PulumiError(AssertionError):
    pass


class Stack:
    def __init__(self, workdir: Path, name: str, env: dict[str, str], docker_host: str):
        self.name = name
        self.project = workdir / "project"
        self.project.mkdir(parents=True)
        for entry in PROGRAM_FILES:
            (self.project / entry).symlink_to(ROOT / entry)
        state = workdir / "state"
        state.mkdir()
        self.env = {
            **env,
            "PULUMI_BACKEND_URL": f"file://{state}",
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
            "DOCKER_HOST": docker_host,
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "NO_COLOR": "1",
        }
        self.config_file = self.project / f"Pulumi.{name}.yaml"

    def run(self, *args: str, check: bool = True, timeout: float = 3600, cwd: Path | None = None) -> Result:
        done = subprocess.run(
            ["pulumi", *args, "--non-interactive"],
            cwd=cwd or self.project,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        result = Result(done.returncode, done.stdout, done.stderr)
        if check and done.returncode != 0:
            # The lines that name what failed may lie far before the end (a long outputs listing).
            errors = "\n".join(line for line in result.output.splitlines() if "error" in line.lower())[:4000]
            raise PulumiError(
                f"pulumi {' '.join(args)} exited {done.returncode}:\n{errors}\n---\n{result.output[-6000:]}"
            )
        return result

    def init(self, config: dict[str, Any], secrets: dict[str, str] | None = None) -> Stack:
        """`pulumi stack init`, then the config as a user writes it: plain values in the stack
        file, secrets through `pulumi config set-all --secret` (with --path for nested ones)."""
        self.run("stack", "init", self.name)
        self.write_config(config)
        self.set_secrets(secrets or {})
        return self

    def set_secrets(self, secrets: dict[str, str]) -> None:
        """Each path → value as a secret, in one `pulumi config set-all --path`."""
        if secrets:
            pairs = [arg for path, value in secrets.items() for arg in ("--secret", f"{path}={value}")]
            self.run("config", "set-all", "--path", *pairs, *self.stack_args())

    def rename(self, name: str) -> None:
        """`pulumi stack rename`, which renames the stack's config file too."""
        self.run("stack", "rename", name, *self.stack_args())
        self.name, self.config_file = name, self.project / f"Pulumi.{name}.yaml"

    def config(self) -> dict[str, Any]:
        """The stack's plain config as its file holds it (this project's keys without the namespace)."""
        current = yaml.safe_load(self.config_file.read_text()) if self.config_file.exists() else None
        values = (current or {}).get("config") or {}
        return {key.removeprefix(f"{PROJECT}:"): value for key, value in values.items()}

    def write_config(self, config: dict[str, Any]) -> None:
        """Replace the plain config, keeping the secrets and the salt already in the stack file."""
        current = yaml.safe_load(self.config_file.read_text()) if self.config_file.exists() else None
        current = current or {}
        keep = {k: v for k, v in (current.get("config") or {}).items() if _has_secret(v)}
        values = {(k if ":" in k else f"{PROJECT}:{k}"): v for k, v in config.items()}
        for key, secret in keep.items():
            values[key] = _merge_secret(values.get(key), secret)
        current["config"] = values
        self.config_file.write_text(yaml.safe_dump(current, sort_keys=True))

    def stack_args(self) -> tuple[str, str]:
        return ("--stack", self.name)

    def preview_json(self, *extra: str, check: bool = True) -> Result:
        return self.run("preview", "--json", *self.stack_args(), *extra, check=check)

    def up(self, *extra: str, check: bool = True) -> Result:
        return self.run("up", "--yes", "--skip-preview", *self.stack_args(), *extra, check=check)

    def outputs(self, show_secrets: bool = False) -> dict:
        args = ["stack", "output", "--json", *self.stack_args()]
        if show_secrets:
            args.append("--show-secrets")
        return self.run(*args).json()

    def export(self, show_secrets: bool = False) -> str:
        args = ["stack", "export", *self.stack_args()]
        if show_secrets:
            args.append("--show-secrets")
        return self.run(*args).stdout

    def resources(self) -> list[dict]:
        return json.loads(self.export())["deployment"].get("resources") or []


def _has_secret(value: Any) -> bool:
    if isinstance(value, dict):
        return "secure" in value or any(_has_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_secret(v) for v in value)
    return False


def _merge_secret(plain: Any, secret: Any) -> Any:
    """Put the `secure:` leaves of the old value back into the new plain value (same paths)."""
    if isinstance(secret, dict) and "secure" in secret:
        return secret
    if isinstance(secret, dict) and isinstance(plain, dict):
        return {**plain, **{k: _merge_secret(plain.get(k), v) for k, v in secret.items() if _has_secret(v)}}
    if isinstance(secret, list) and isinstance(plain, list):
        return [
            _merge_secret(p, s) if i < len(secret) and _has_secret(s) else p
            for i, (p, s) in enumerate(zip(plain, secret + [None] * len(plain), strict=False))
        ]
    return plain


def step_type(urn: str) -> str:
    """`urn:pulumi:stack::project::parent$type::name` → type."""
    return urn.split("::")[2].split("$")[-1]


def step_name(urn: str) -> str:
    return urn.split("::")[-1]


def plan(preview: dict) -> dict[str, str]:
    """Resource name → planned operation, from `pulumi preview --json`."""
    return {step_name(step["urn"]): step["op"] for step in preview.get("steps", [])}


def changes(preview: dict) -> dict[str, str]:
    """Resource name → planned operation, for those the preview changes: a replacement's own
    create and delete steps folded into its "replace"."""
    found: dict[str, str] = {}
    for step in preview.get("steps", []):
        name, op = step_name(step["urn"]), step["op"]
        if op in ("create-replacement", "delete-replaced"):
            op = "replace"
        if op != "same":
            found[name] = op
    return found


def tools_or_reason() -> tuple[dict[str, str] | None, str]:
    try:
        return tools_env(), ""
    except (RuntimeError, subprocess.CalledProcessError, FileNotFoundError) as exc:
        return None, str(exc)

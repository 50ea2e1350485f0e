"""The pull-request workflow: previews only where the state is reachable, never with the real key."""

from pathlib import Path

import yaml

WORKFLOW = Path(__file__).resolve().parents[2] / ".github" / "workflows" / "pull-request.yml"


def jobs() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())["jobs"]


def test_preview_runs_with_a_placeholder_credential_and_the_stack_tailnet():
    (step,) = [s for s in jobs()["preview"]["steps"] if s.get("uses", "").startswith("pulumi/actions")]
    env = step["env"]
    assert env["TAILSCALE_API_KEY"].startswith("tskey-api-") and "secrets." not in env["TAILSCALE_API_KEY"]
    assert "TAILSCALE_TAILNET" not in env, "the tailnet comes from the stack config (tailscale:tailnet)"
    assert not [k for k, v in env.items() if "TAILSCALE" in k and "secrets." in str(v)]
    assert step["with"]["command"] == "preview"


def test_fork_pull_requests_skip_the_preview_with_a_message():
    same_repo = "github.event.pull_request.head.repo.full_name == github.repository"
    assert jobs()["preview"]["if"] == same_repo
    fork = jobs()["fork"]
    assert fork["if"] == same_repo.replace("==", "!=")
    assert any("skipped for pull requests from forks" in s.get("run", "") for s in fork["steps"])


def test_only_the_preview_skips_the_per_step_checkpoints():
    """PULUMI_SKIP_CHECKPOINTS on the preview (it persists nothing), on no step that could run `up`."""
    steps = [s for job in jobs().values() for s in job["steps"]]
    skipping = [s for s in steps if (s.get("env") or {}).get("PULUMI_SKIP_CHECKPOINTS") == "true"]
    assert [s["with"]["command"] for s in skipping] == ["preview"]
    assert not [s for s in steps if "PULUMI_SKIP_CHECKPOINTS" in str(s.get("run", ""))]

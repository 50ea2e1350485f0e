"""The Pulumi program's entry point (Pulumi.yaml runs this file): check the stack, declare it,
export what it says. The wiring is timemachine/program.py."""

import pulumi

from timemachine.gc_tuning import tune_gc
from timemachine.preflight.stack import preflight
from timemachine.program import build

tune_gc()
# The engine the docker provider uses when set in its config; else DOCKER_HOST, as the provider.
docker_host = pulumi.Config("docker").get("host")
for name, value in build(preflight(docker_host), docker_host).items():
    pulumi.export(name, value)

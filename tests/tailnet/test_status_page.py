"""The status page on a real tailnet: an administrator's browser opens http://tm-status.<suffix>/ through
their tailnet node (Debian's chromium driven by Selenium), a share owner who is not one is refused by the
policy, and `status --url` on the Docker host exits 0 once everything is backed up and registered.

Its own stack (namePrefix tm-page): Headscale with users admin (the tag owner, so the default admins) and
bob (a share owner), the program's own policy loaded, and one client per user. The page's screenshot is
docs/status-page.png."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import docker
import pytest
import smbclient

from tests.support.containers import remove_containers
from tests.support.deploy import deployed_stack, stack_config
from tests.support.network import unique_subnet
from tests.support.project import ROOT
from tests.support.pulumi_runner import run_program
from tests.support.smb import GuestClient
from tests.support.tailnet import HEADSCALE_NAME, PORT, start_client, start_headscale
from tests.unit.health.bundles import DAY, HOUR, Bundle, make_bundle

pytestmark = pytest.mark.tailnet

PREFIX = "tm-page"
SHARES = [{"name": "bob", "owner": "bob@", "quota": "2G"}]
TAGS = {"tm-bob": ["tag:timemachine", "tag:tm-bob"], "tm-status": ["tag:timemachine", "tag:tm-status"]}
SCREENSHOT = ROOT / "docs" / "status-page.png"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Each client forwards this port to the page's node through its own tailnet identity.
PAGE_PORT = 80
SMB_FORWARD = 4450


def addresses(subnet: str, taken: set[str], count: int) -> list[str]:
    hosts = [str(ip) for ip in ipaddress.IPv4Network(subnet).hosts()][1:-1]
    return [ip for ip in hosts if ip not in taken][:count]


@pytest.fixture(scope="module")
def page(pulumi_env, docker_client, goproxy, images, tmp_path_factory):
    work = tmp_path_factory.mktemp("page")
    storage = work / "storage"
    subnet = unique_subnet(docker_client)
    control_subnet = unique_subnet(docker_client, exclude={subnet})
    control_ip = str(ipaddress.IPv4Network(control_subnet).network_address + 10)
    network = f"{PREFIX}-{uuid.uuid4().hex[:6]}"
    made: list = []
    with ExitStack() as cleanup:
        control_net = docker_client.networks.create(
            f"{PREFIX}-control-{uuid.uuid4().hex[:6]}",
            driver="bridge",
            internal=True,
            ipam=docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=control_subnet)]),
        )
        cleanup.callback(control_net.remove)
        cleanup.callback(remove_containers, made)
        config = stack_config(
            storage,
            network,
            subnet,
            goproxy.build_args(),
            SHARES,
            name_prefix=PREFIX,
            internal=True,
            control_url=f"https://{HEADSCALE_NAME}:{PORT}",
        )
        # A collection at every scrape (at most once a second): the page shows what was just written.
        config["status"] = {"enabled": True, "collectInterval": "1s"}
        # Where the plan puts the share and the status container, so the clients and Headscale go elsewhere.
        planned = run_program(
            {
                **config,
                "shares": [dict(SHARES[0], authKey="0" * 48)],
                "status": {**config["status"], "authKey": "0" * 48},
            }
        )
        status_ip = planned.outputs["status"]["ip"]
        taken = {
            planned.outputs["shares"]["bob"]["ip"],
            status_ip,
            str(ipaddress.IPv4Network(subnet).broadcast_address - 2),
        }
        hs_ip, admin_ip, bob_ip = addresses(subnet, taken, 3)
        headscale = start_headscale(docker_client, images["headscale"], control_net.name, control_ip, hs_ip, "{}")
        made.append(headscale.container)
        keys = {
            "shares[0].authKey": headscale.preauth_key("admin", TAGS["tm-bob"]),
            "status.authKey": headscale.preauth_key("admin", TAGS["tm-status"]),
        }
        config["tailnet"]["controlCaCertificate"] = headscale.ca_pem
        secret_config = {
            **config,
            "shares": [dict(SHARES[0], authKey=keys["shares[0].authKey"])],
            "status": {**config["status"], "authKey": keys["status.authKey"]},
        }
        policy = run_program(secret_config).outputs["tailnetPolicy"]
        headscale.load_policy(policy)
        deployment = cleanup.enter_context(
            deployed_stack(
                docker_client,
                pulumi_env,
                work / "stack",
                "page",
                config,
                keys={"bob": keys["shares[0].authKey"]},
                up=False,
                made=made,
            )
        )
        stack = deployment.stack
        stack.set_secrets({"status.authKey": keys["status.authKey"]})
        stack.up()
        outputs = stack.outputs()
        assert json.loads(outputs["tailnetPolicy"]) == json.loads(policy)
        headscale.attach(network, hs_ip)
        headscale.wait_online(["tm-bob", "tm-status"])
        clients = {}
        for user, ip in (("admin", admin_ip), ("bob", bob_ip)):
            c = start_client(docker_client, images["client"], network, ip, f"{user}-mac")
            made.append(c.container)
            c.up(headscale.url, headscale.preauth_key(user))
            clients[user] = c
        headscale.wait_online(["admin-mac", "bob-mac"])
        for c in clients.values():
            c.forward(PAGE_PORT, "tm-status", 80)
        clients["bob"].forward(SMB_FORWARD, "tm-bob", 445)
        yield {"stack": stack, "outputs": outputs, "clients": clients, "storage": storage, "policy": policy}


def browser(via: str):
    """Headless Debian chromium, every request for the page's tailnet name sent to `via` (a client's
    forwarder into the tailnet), nothing else reachable; no browser or driver is downloaded."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,900",
        f"--host-resolver-rules=MAP tm-status.e2e.ts.net {via}, MAP * ~NOTFOUND",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    return driver


def write_backup(bob, storage: Path, tmp_path: Path) -> None:
    """A Mac's backup in bob's share, written over the tailnet as bob, with a completion just now."""
    now = time.time()
    local = make_bundle(
        tmp_path,
        Bundle(
            "Bob’s MacBook Air",
            completions=[now - DAY, now - HOUR],
            bands={str(i): (1024 * 1024, now - HOUR) for i in range(3)},
            created=now - 30 * DAY,
            verification_date=now - DAY,
        ),
    )
    client = GuestClient(bob.ip, SMB_FORWARD)
    try:
        for directory, _dirs, files in os.walk(local):
            relative = Path(directory).relative_to(tmp_path)
            smbclient.makedirs(client.path("bob", *relative.parts), exist_ok=True, **client.kw())
            for name in files:
                path = Path(directory) / name
                with smbclient.open_file(client.path("bob", *relative.parts, name), mode="wb", **client.kw()) as f:
                    f.write(path.read_bytes())
                mtime = path.stat().st_mtime
                smbclient.utime(client.path("bob", *relative.parts, name), times=(mtime, mtime), **client.kw())
    finally:
        client.close()
    assert (storage / "bob" / local.name / "Info.plist").exists()


def test_the_policy_admits_the_admins_only(page):
    policy = json.loads(page["policy"])
    assert {"action": "accept", "src": ["admin@"], "dst": ["tag:tm-status:80"]} in policy["acls"]
    assert page["outputs"]["status"]["pageUrl"] == "http://tm-status.e2e.ts.net/"
    assert "tm-status" in page["clients"]["admin"].peers()
    bob = page["clients"]["bob"]
    assert "tm-status" not in bob.peers(), "the policy gives bob nothing on tm-status"
    failed, why = bob.nc_fails("tm-status", 80)
    assert failed, why


def test_an_admin_opens_the_page_in_a_browser_and_a_share_owner_is_refused(page, tmp_path):
    write_backup(page["clients"]["bob"], page["storage"], tmp_path)
    url = page["outputs"]["status"]["pageUrl"]
    admin = browser(page["clients"]["admin"].ip)
    try:
        admin.get(url)
        assert admin.title == "Time Machine backups: OK", admin.page_source[:2000]
        text = admin.find_element("tag name", "body").text
        assert "Bob’s MacBook Air" in text and "registered" in text
        SCREENSHOT.parent.mkdir(exist_ok=True)
        assert admin.save_screenshot(str(SCREENSHOT))
    finally:
        admin.quit()
    bob = browser(page["clients"]["bob"].ip)
    try:
        try:
            bob.get(url)
        except Exception:  # noqa: BLE001 - a refused page may also time out, which is a refusal too
            pass
        assert "Time Machine backups" not in bob.page_source and "Bob’s MacBook Air" not in bob.page_source
    finally:
        bob.quit()


def test_status_url_exits_0_when_everything_is_backed_up_up_and_registered(page, tmp_path):
    url = page["outputs"]["status"]["metricsUrl"]
    done = subprocess.run(
        [sys.executable, "-m", "timemachine.health", "status", "--url", url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "registered" in done.stdout and "findings" not in done.stdout

"""The alerting rules, checked by promtool and tested over the collector's real output: fixture bundles are read
once a simulated minute while "now" moves forward and the bundles change, each exposition becomes a sample of
promtool's input series, and each alert must be silent before its threshold and firing after it."""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from tests.unit.health.bundles import Bundle, add_completion, date, make_bundle, write_band, write_plist
from timemachine.health.collector import ShareSpec, collect
from timemachine.health.metrics import render

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "monitoring" / "timemachine.rules.yml"
# promtool evaluates from the epoch: the simulated clock starts there, so the bundles' dates are minutes
# after 1970-01-01 and a sample scraped at minute m is the input series' m-th value.
MINUTE = 60
END = 780
GAP = range(600, 660)  # the collector is not scraped at all
STUCK_FROM = 700  # the collector serves the snapshot of this minute from then on


def promtool() -> str:
    found = shutil.which("promtool")
    if not found:
        pytest.fail("promtool is not installed: apt-get install prometheus (Debian's package ships promtool)")
    return found


def test_the_rules_are_valid() -> None:
    done = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_duration_a_severity_and_both_annotations() -> None:
    for rule in (r for group in yaml.safe_load(RULES.read_text())["groups"] for r in group["rules"]):
        assert rule.get("for"), rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert set(rule["annotations"]) == {"summary", "description"}, rule["alert"]


# --- the simulated storage root -------------------------------------------------------------------------------


def usage(root: Path) -> int:
    return sum(os.lstat(os.path.join(d, n)).st_blocks * 512 for d, ds, fs in os.walk(root) for n in ds + fs)


@dataclass
class Storage:
    """The shares the rules are tested over, and what happens to them minute by minute."""

    root: Path
    shares: list[ShareSpec] = field(default_factory=list)
    disk_size: int = 0
    events: dict[int, Callable[[], None]] = field(default_factory=dict)

    def up(self, minute: int) -> dict[str, bool]:
        return {"alice": True, "bob": True, "carol": not 100 <= minute < 200}

    def registered(self, minute: int) -> dict[str, bool]:
        return {"alice": True, "bob": True, "carol": minute < 300}

    def statvfs(self, path: str) -> os.statvfs_result:
        # A disk of a chosen size whose used bytes are the tree's real usage: the machine's own disk is
        # shared with everything else, and its fill level is no fixture.
        free = self.disk_size - usage(self.root)
        return os.statvfs_result((1, 1, self.disk_size, free, free, 0, 0, 0, 0, 255))


def at(minute: float) -> float:
    return minute * MINUTE


def build(root: Path) -> Storage:
    alice, bob = root / "alice", root / "bob"
    macbook = make_bundle(
        alice, Bundle("Alice’s MacBook", completions=[at(10)], bands={"0": (4096, at(10))}, created=0)
    )
    make_bundle(alice, Bundle('Alice "iMac"', fmt="binary", version=2, bands={"0": (4096, at(5))}, created=0))
    mini = make_bundle(bob, Bundle("Bob Mini", completions=[at(10)], bands={"0": (4096, at(10))}, created=0))
    make_bundle(root / "carol", Bundle("Carol Laptop", completions=[0], bands={"0": (4096, 0)}, created=0))
    # Two bands Bob's Mini will write, made beforehand on the same filesystem so that their allocated sizes
    # are known: the quota and the disk are sized so that the first leaves both just under 90 % used and the
    # second takes both over it.
    staging = root.parent / "staging"
    write_band(staging, "1", 1024 * 1024, 0)
    write_band(staging, "2", 32 * 1024, 0)
    first, second = (os.lstat(staging / name).st_blocks * 512 for name in ("1", "2"))
    storage = Storage(root)
    storage.shares = [
        ShareSpec("alice", None, at(240)),
        ShareSpec("bob", math.ceil((usage(bob) + first + second / 2) / 0.9), at(360)),
        ShareSpec("carol"),
        ShareSpec("dave", None, at(240)),
    ]
    storage.disk_size = math.ceil((usage(root) + first + second / 2) / 0.9)

    def move_band(name: str, minute: int) -> None:
        os.rename(staging / name, mini / "bands" / name)
        os.utime(mini / "bands" / name, (at(minute), at(minute)))

    def complete_again() -> None:
        # A backup of Alice's MacBook completes at 400: its bands change and the history grows.
        write_band(macbook / "bands", "1", 4096, at(400))
        add_completion(macbook, at(400))

    machine_id = mini / "com.apple.TimeMachine.MachineID.plist"
    failed = {"com.apple.backupd.HostUUID": "X", "ModelID": "Macmini9,1", "VerificationState": 2}
    storage.events = {
        60: lambda: write_plist(machine_id, failed),
        120: lambda: write_plist(machine_id, {**failed, "RecoveryBackupDeclinedDate": date(at(120))}),
        200: lambda: move_band("1", 200),
        230: lambda: move_band("2", 230),
        400: complete_again,
        500: lambda: (root / "dave").mkdir(),
    }
    return storage


# --- from expositions to promtool's input series -------------------------------------------------------------

Sample = dict[str, float]


def scrape(exposition: bytes) -> Sample:
    found = {}
    for family in text_string_to_metric_families(exposition.decode("utf-8")):
        for s in family.samples:
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(s.labels.items()))
            found[f"{s.name}{{{labels}}}"] = s.value
    return found


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)


def encode(values: list[float | str | None]) -> str:
    """promtool's expanding notation: 'a+bxn' for n+1 evenly stepping values, '_xn' for n missing ones."""
    tokens, i = [], 0
    while i < len(values):
        v = values[i]
        j = i + 1
        if v is None:
            while j < len(values) and values[j] is None:
                j += 1
            tokens.append(f"_x{j - i}")
        elif isinstance(v, str):
            tokens.append(v)
        else:
            step: float | None = None
            while j < len(values):
                following = values[j]
                if not isinstance(following, float):
                    break
                candidate = following - v if step is None else step
                # Only what promtool's start + k * step gives back exactly.
                if v + (j - i) * candidate != following:
                    break
                step = candidate
                j += 1
            if j - i == 1:
                tokens.append(_number(v))
            else:
                assert step is not None
                sign = "+" if step >= 0 else "-"
                tokens.append(f"{_number(v)}{sign}{_number(abs(step))}x{j - i - 1}")
        i = j
    return " ".join(tokens)


def input_series(scrapes: list[Sample | None]) -> list[dict[str, str]]:
    """One entry per series; a failed scrape (None) leaves a staleness marker, as Prometheus does."""
    names = sorted({key for s in scrapes if s for key in s})
    series = []
    for key in names:
        values: list[float | str | None] = []
        present = False
        for s in scrapes:
            if s is not None and key in s:
                values.append(float(s[key]))
                present = True
            else:
                values.append("stale" if present else None)
                present = False
        series.append({"series": key, "values": encode(values)})
    return series


def run_collector(storage: Storage) -> list[Sample | None]:
    scrapes: list[Sample | None] = []
    served = b""
    for minute in range(END + 1):
        if minute in storage.events:
            storage.events[minute]()
        if minute in GAP:
            scrapes.append(None)
            continue
        if minute <= STUCK_FROM:
            snapshot = collect(
                str(storage.root),
                storage.shares,
                at(minute),
                up=storage.up(minute),
                node_registered=storage.registered(minute),
                incomplete_after_seconds=at(120),
                statvfs=storage.statvfs,
            )
            served = render(snapshot)
        scrapes.append(scrape(served))
    return scrapes


# --- what must fire, when ----------------------------------------------------------------------------------------


def humanize_duration(v: float) -> str:
    """Prometheus's humanizeDuration for values of a second or more."""
    d = int(v)
    days, hours, minutes, seconds = d // 86400, d // 3600 % 24, d // 60 % 60, d % 60
    if days:
        return f"{days}d {hours}h {minutes}m {seconds}s"
    if hours:
        return f"{hours}h {minutes}m {seconds}s"
    return f"{minutes}m {seconds}s"


def render_template(template: str, labels: dict[str, str], value: float) -> str:
    """The few template forms the rules use; any other fails the test, so this stays in step with them."""
    text = re.sub(r"\{\{ with \$labels\.instance \}\}.*?\{\{ end \}\}", "", template, flags=re.S)
    text = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], text)
    text = text.replace("{{ $value | humanizeDuration }}", humanize_duration(value))
    text = text.replace("{{ $value | humanizePercentage }}", f"{value * 100:.4g}%")
    assert "{{" not in text, f"a template form the test does not know: {text}"
    return text


@dataclass(frozen=True)
class Firing:
    labels: dict[str, str]
    value: Callable[[list[Sample | None], int], float] = lambda scrapes, minute: 1.0


def age_since(ts: float) -> Callable[[list[Sample | None], int], float]:
    return lambda scrapes, minute: at(minute) - ts


def ratio(numerator: str, denominator: str, complement: bool = False) -> Callable[[list[Sample | None], int], float]:
    def value(scrapes: list[Sample | None], minute: int) -> float:
        s = scrapes[minute]
        assert s is not None
        r = s[numerator] / s[denominator]
        return 1 - r if complement else r

    return value


MACBOOK = {"share": "alice", "machine": "Alice’s MacBook"}
IMAC = {"share": "alice", "machine": 'Alice "iMac"'}
MINI = {"share": "bob", "machine": "Bob Mini"}
FREE, SIZE = "timemachine_storage_free_bytes{}", "timemachine_storage_size_bytes{}"
BOB_USED, BOB_QUOTA = 'timemachine_share_used_bytes{share="bob"}', 'timemachine_share_quota_bytes{share="bob"}'

# alert -> [(minute, alerts firing then)]: silent just before each threshold (+ its `for:`), firing after it,
# silent again once the cause is gone.
EXPECTED: dict[str, list[tuple[int, list[Firing]]]] = {
    # Alice's MacBook completed at 10 with 4h to go stale: pending from 251, firing from 311, and quiet once
    # it completes again at 400. Bob's (6h) fires from 431; Carol's (default 3 days) never in this timeline.
    "TimeMachineBackupStale": [
        (305, []),
        (315, [Firing(MACBOOK, age_since(at(10)))]),
        (402, []),
        (425, []),
        (440, [Firing(MINI, age_since(at(10)))]),
    ],
    # Alice's iMac was created at 0 and never completed: pending from 241, firing from 301.
    "TimeMachineBackupNeverCompleted": [(295, []), (310, [Firing(IMAC, age_since(0))])],
    # Bob's Mini writes a band at 200, 190 minutes after its last completion (threshold 2h): firing from 260.
    # The iMac writes without ever completing too, but that is the never-completed alert's case.
    "TimeMachineBackupNotCompleting": [(258, []), (265, [Firing(MINI)])],
    "TimeMachineVerificationFailed": [(59, []), (73, []), (80, [Firing(MINI)])],
    "TimeMachineRecoveryDeclined": [(133, []), (140, [Firing(MINI)])],
    # Just under 90 % from 200 (asserted at 228), over it from 230: firing from 245.
    "TimeMachineShareQuotaNearlyFull": [
        (228, []),
        (243, []),
        (250, [Firing({"share": "bob"}, ratio(BOB_USED, BOB_QUOTA))]),
    ],
    "TimeMachineStorageNearlyFull": [(228, []), (243, []), (250, [Firing({}, ratio(FREE, SIZE, complement=True))])],
    "TimeMachineShareDirectoryMissing": [(3, []), (10, [Firing({"share": "dave"})]), (502, [])],
    "TimeMachineShareDown": [(99, []), (103, []), (110, [Firing({"share": "carol"})]), (202, [])],
    "TimeMachineNodeNotRegistered": [(299, []), (308, []), (315, [Firing({"share": "carol"})])],
    # Not scraped from 600 to 659: firing from 605, quiet once scraped again. Serving minute 700's snapshot
    # for ever: older than 10 minutes from 711, firing from 716.
    "TimeMachineCollectorNotReporting": [
        (300, []),
        (603, []),
        (607, [Firing({})]),
        (665, []),
        (714, []),
        (720, [Firing({})]),
    ],
}


def alert_tests(scrapes: list[Sample | None]) -> list[dict[str, Any]]:
    rules = {r["alert"]: r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    assert set(EXPECTED) == set(rules), "every alert is tested, and only those"
    tests = []
    for alertname, checks in EXPECTED.items():
        rule = rules[alertname]
        assert any(f for _, f in checks) and any(not f for _, f in checks), f"{alertname}: silent and firing"
        for minute, firing in checks:
            exp_alerts = []
            for f in firing:
                value = f.value(scrapes, minute)
                annotations = {k: render_template(v, f.labels, value) for k, v in rule["annotations"].items()}
                # Whoever reads the alert learns which share and which Mac it is about.
                assert all(name in text for name in f.labels.values() for text in annotations.values()), alertname
                exp_alerts.append(
                    {"exp_labels": {**f.labels, "severity": rule["labels"]["severity"]}, "exp_annotations": annotations}
                )
            tests.append({"eval_time": f"{minute}m", "alertname": alertname, "exp_alerts": exp_alerts})
    return tests


def test_each_alert_fires_exactly_when_it_should(tmp_path: Path) -> None:
    tool = promtool()
    scrapes = run_collector(build(tmp_path / "storage"))
    spec = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": input_series(scrapes),
                "alert_rule_test": alert_tests(scrapes),
            }
        ],
    }
    test_file = tmp_path / "timemachine.test.yml"
    test_file.write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False, width=1000), encoding="utf-8")
    done = subprocess.run([tool, "test", "rules", str(test_file)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{done.stdout}{done.stderr}\n(test file: {test_file})"


def expand(notation: str) -> list[float | str | None]:
    """promtool's reading of the notation (as its docs and a probe of promtool 2.42 show)."""
    values: list[float | str | None] = []
    for token in notation.split():
        if match := re.fullmatch(r"_x(\d+)", token):
            values += [None] * int(match.group(1))
        elif token in ("_", "stale"):
            values.append(None if token == "_" else token)
        elif match := re.fullmatch(r"(-?[0-9.e+]+?)([+-])([0-9.e+]+)x(\d+)", token):
            start, sign, step, times = match.groups()
            values += [float(start) + k * float(sign + step) for k in range(int(times) + 1)]
        else:
            values.append(float(token))
    return values


def test_the_series_encoding() -> None:
    values: list[float | str | None] = [None, None, 1.0, 2.0, 3.0, 3.0, 3.0, "stale", None, 7.5, None, 1e20, None]
    assert encode(values + [0.0, -4.0]) == "_x2 1+1x2 3+0x1 stale _x1 7.5 _x1 1e+20 _x1 0-4x1"


@given(
    st.lists(
        st.one_of(st.none(), st.just("stale"), st.integers(-(2**40), 2**40).map(float), st.sampled_from([0.5, 1.7e9])),
        max_size=40,
    )
)
def test_the_series_encoding_round_trips(values: list[float | str | None]) -> None:
    assert expand(encode(values)) == values

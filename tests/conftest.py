import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

# Real Docker peers (an engine, a registry, a Debian rootfs) as session fixtures; started only when a test asks.
pytest_plugins = ["peers.docker_engine"]
# Real AWS peers: a moto server (EC2/SSM API) and one QEMU guest playing the instances behind it.
pytest_plugins += ["peers.moto_server", "peers.ec2_guest"]
# A Vault KV v2 peer (a local fake of its HTTP API, driven by the real hvac client).
pytest_plugins += ["peers.vault_kv"]


# --- the fault-injection matrix's summary: cases run and passed, per builder ----------------------------------
_MATRIX: dict[str, dict[str, int]] = {}


def pytest_runtest_logreport(report):
    marker = dict(getattr(report, "fault_matrix", ()) or ())
    if not marker:
        return
    counts = _MATRIX.setdefault(marker["builder"], {"cases": 0, "passed": 0})
    if report.when == "call" or (report.when == "setup" and not report.passed):
        counts["cases"] += 1
        counts["passed"] += int(report.passed)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    found = item.get_closest_marker("fault_matrix")
    if found is not None:
        outcome.get_result().fault_matrix = (("builder", found.args[0]),)


def pytest_terminal_summary(terminalreporter):
    if not _MATRIX:
        return
    terminalreporter.section("fault-injection matrix")
    for builder, counts in sorted(_MATRIX.items()):
        terminalreporter.write_line(f"{builder}: {counts['cases']} case(s), {counts['passed']} passed")
    total = sum(c["cases"] for c in _MATRIX.values())
    passed = sum(c["passed"] for c in _MATRIX.values())
    terminalreporter.write_line(f"total: {total} case(s), {passed} passed")

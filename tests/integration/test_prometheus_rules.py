"""deploy/prometheus: the scrape config and the alert rules are valid
(`promtool check config`, `promtool check rules`) and behave as intended on
synthetic series (`promtool test rules tidemark.rules.test.yml`). Also checks
that every rule carries severity and tidemark_rule labels, and that the rules
only use metric names the coordinator exports or plans to export.

promtool is in the Debian package `prometheus`.
"""
import os
import re
import shutil
import subprocess

from tmtest.runner import check, run, test

SRC = os.environ.get("TM_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
PROM = os.path.join(SRC, "deploy", "prometheus")
RULES = os.path.join(PROM, "rules", "tidemark.rules.yml")
RULES_TEST = os.path.join(PROM, "rules", "tidemark.rules.test.yml")
CONFIG = os.path.join(PROM, "prometheus.yml")

# Exported now, exported by the alert sinks, or planned (issue 5).
KNOWN = {
    "up", "tidemark_agents", "tidemark_rpc_requests_total", "tidemark_rpc_duration_seconds",
    "tidemark_tasks", "tidemark_catalog_size_bytes", "tidemark_build_info",
    "tidemark_coordinator_start_time_seconds", "tidemark_alert_notifications_total",
    "tidemark_alert_sink_queue_length", "tidemark_backup_last_success_timestamp_seconds",
    "tidemark_backup_expected_interval_seconds", "tidemark_backup_failures_total",
    "tidemark_archive_lag_seconds", "tidemark_replication_lag_seconds",
    "tidemark_drill_last_rto_seconds", "tidemark_drill_last_success_timestamp_seconds",
    "tidemark_alerts_firing", "tidemark_log_archive_failures_total",
    "tidemark_log_last_archived_timestamp_seconds", "tidemark_log_chain_resets_total",
    "tidemark_drill_last_rpo_seconds", "tidemark_drill_last_result",
    "tidemark_drill_rto_goal_seconds", "tidemark_drill_rpo_goal_seconds", "tidemark_drills_total",
    "tidemark_repository_up", "tidemark_replication_gaps",
    "tidemark_replication_checks_total", "tidemark_replication_copies_total",
    "tidemark_replication_last_check_timestamp_seconds", "tidemark_backup_partial_total",
}


def promtool(*args):
    exe = shutil.which("promtool")
    check(exe is not None, "promtool not found: apt-get install -y prometheus")
    r = subprocess.run([exe, *args], capture_output=True, text=True, timeout=120, cwd=PROM)
    out = r.stdout + r.stderr
    check(r.returncode == 0, f"promtool {' '.join(args)} failed:\n{out}")
    return out


@test
def check_rules():
    out = promtool("check", "rules", RULES)
    m = re.search(r"SUCCESS: (\d+) rules found", out)
    check(m and int(m.group(1)) >= 15, f"rules found: {out}")
    print(f"  {m.group(1)} rules")


@test
def check_config():
    out = promtool("check", "config", CONFIG)
    check("SUCCESS" in out, out)


@test
def unit_test_rules():
    out = promtool("test", "rules", RULES_TEST)
    check("SUCCESS" in out, out)
    with open(RULES_TEST) as f:
        tested = set(re.findall(r"alertname: (\w+)", f.read()))
    print(f"  {len(tested)} alerts exercised: {', '.join(sorted(tested))}")
    check(len(tested) >= 3, "at least 3 rules exercised")


@test
def rules_are_labelled_and_use_known_metrics():
    with open(RULES) as f:
        text = f.read()
    alerts = re.findall(r"^\s+- alert: (\w+)$", text, re.M)
    blocks = re.split(r"^\s+- alert: ", text, flags=re.M)[1:]
    check(len(blocks) == len(alerts), "one block per alert")
    for name, block in zip(alerts, blocks):
        check(re.search(r"severity: (warning|critical)\b", block), f"{name}: severity label")
        check(re.search(r"tidemark_rule: [a-z_]+\b", block), f"{name}: tidemark_rule label")
        check("summary:" in block, f"{name}: summary annotation")
    names = set()
    for expr in re.findall(r"expr: (?:\|\n)?((?:.*\n)+?)\s+(?:for|labels):", text):
        expr = re.sub(r'\{[^}]*\}|"[^"]*"', "", expr)
        for tok in re.findall(r"\b([a-z_][a-z0-9_]*)\b\s*(?!\()", expr):
            if tok.startswith("tidemark_") or tok == "up":
                names.add(tok)
    unknown = names - KNOWN
    check(not unknown, f"rules use metric names nobody exports or plans: {unknown}")
    check({"tidemark_backup_failures_total", "tidemark_backup_last_success_timestamp_seconds",
           "tidemark_archive_lag_seconds"} <= names, f"the main metrics are used: {names}")


if __name__ == "__main__":
    run()

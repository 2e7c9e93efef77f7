"""docs/RESTORE.md blocks marked <!-- e2e:NAME --> as commands: the e2e
tests run what the on-call engineer reads."""
import os
import re
import shlex

from tmtest.cluster import binary
from tmtest.runner import check

RUNBOOK = os.path.join(os.environ.get("TM_SOURCE_DIR",
                                      os.path.join(os.path.dirname(__file__), "..", "..", "..")),
                       "docs", "RESTORE.md")


def runbook(name, **values):
    """The command of the runbook block marked <!-- e2e:name -->, with its
    ${...} values filled in, as an argv (tidemarkctl / tidemark-agent
    resolved to the built binaries)."""
    with open(RUNBOOK) as f:
        text = f.read()
    m = re.search(r"<!-- e2e:" + re.escape(name) + r" -->\s*```sh\n(.*?)\n```", text, re.S)
    check(m is not None, f"docs/RESTORE.md has the e2e:{name} block")
    cmd = m.group(1).strip()
    for k, v in values.items():
        cmd = cmd.replace("${" + k + "}", v)
    check("${" not in cmd, f"every value of e2e:{name} filled in: {cmd}")
    argv = shlex.split(cmd)
    exe = {"tidemarkctl": binary("tidemarkctl"), "tidemark-agent": binary("tidemark-agent")}
    return [exe.get(argv[0], argv[0])] + argv[1:]

"""A throw-away project with root causes in its history and a bare "remote", for the risk
scanner's tests (test_scan, test_hooks, test_sarif, test_risk)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

RCAHOOK = str(Path(sys.executable).parent / "rcahook")

NET_C = """#include <stddef.h>

static int checksum(const char *buf, size_t len)
{
\tint sum = 0;
\tfor (size_t i = 0; i < len; i++)
\t\tsum += buf[i];
\treturn sum;
}

int parse_packet(const char *buf, size_t len)
{
\tif (len < 4)
\t\treturn -1;
\treturn checksum(buf, len);
}

int send_packet(const char *buf, size_t len)
{
\treturn parse_packet(buf, len);
}
"""


def c_function(name: str, lines: int) -> str:
    body = "".join(f"\tx += {i} * parse_packet(buf, len);\n" for i in range(lines))
    return f"\nint {name}(const char *buf, size_t len)\n{{\n\tint x = 0;\n{body}\treturn x;\n}}\n"


def build_history(repo) -> dict[str, str]:
    """Commits with two root causes in src/net.c (one named by Fixes:, one reverted)."""
    shas = {}
    maintainer = "Maintainer <maint@example.com>"
    shas["init"] = repo.commit("init: skeleton", {
        "src/net.c": NET_C, "src/util.c": "int util(void) { return 0; }\n", "README.md": "# demo\n"},
        author=maintainer)
    for i in range(6):
        repo.commit(f"util: tidy helper {i}", {"src/util.c": f"int util(void) {{ return {i}; }}\n"},
                    author=maintainer)
        repo.commit(f"docs: explain step {i}", {"README.md": "# demo\n" + "more words\n" * (i + 1)},
                    author=maintainer)
    net = NET_C + c_function("net_receive", 30)
    shas["culprit1"] = repo.commit("net: add receive path", {"src/net.c": net}, author="Newcomer <new@example.com>")
    net = net.replace("if (len < 4)", "if (len < 8)")
    shas["fix1"] = repo.commit(
        f"net: fix length check in parse_packet\n\nFixes: {shas['culprit1'][:12]} (\"net: add receive path\")\n",
        {"src/net.c": net}, author=maintainer)
    shas["culprit2"] = repo.commit("net: add batching to send path", {"src/net.c": net + c_function("net_batch", 25)},
                                   author="Newcomer <new@example.com>")
    shas["revert2"] = repo.commit(
        f"Revert \"net: add batching to send path\"\n\nThis reverts commit {shas['culprit2']}.\n",
        {"src/net.c": net}, author=maintainer)
    for i in range(3):
        repo.commit(f"docs: typo {i}", {"README.md": f"# demo\nfixed {i}\n"}, author=maintainer)
    return shas


def add_remote(repo, tmp_path: Path) -> Path:
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    repo.git("remote", "add", "origin", str(remote))
    repo.git("push", "-q", "origin", "main")
    return remote


def index(repo) -> None:
    subprocess.run([RCAHOOK, "index", "--quiet", "--repo", str(repo.path)], check=True, env=hook_env())


def published(repo, tmp_path: Path) -> dict[str, str]:
    """build_history, pushed to a fresh remote, indexed: where most risk tests start."""
    shas = build_history(repo)
    add_remote(repo, tmp_path)
    index(repo)
    return shas


def risky_commit(repo) -> str:
    """A large change to the file both root causes touched, by someone new to it."""
    text = (repo.path / "src" / "net.c").read_text() + c_function("net_offload", 120)
    return repo.commit("net: add offload support to receive path", {"src/net.c": text},
                       author="Drive By <drive@example.com>")


def benign_commit(repo, n: int = 0) -> str:
    return repo.commit(f"docs: typo {n + 10}", {"README.md": f"# demo\nfixed again {n}\n"},
                       author="Maintainer <maint@example.com>")


def hook_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["RCAHOOK"] = RCAHOOK
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def run_scan(repo, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([RCAHOOK, "scan", "--repo", str(repo.path), *args], capture_output=True, text=True,
                          env=hook_env(**env))

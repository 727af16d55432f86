"""`rcahook deploy record|list`: deploy events in the repository's state database, for
pipelines (the same store `POST /api/deploys` writes; rcahook/serve/deploys.py)."""
from __future__ import annotations

import time as _time

from rcahook.commands.common import open_repo, print_json
from rcahook.rca import feedback as fb


def run(*, action: str, repo: str, environment: str | None, sha: str | None = None, time_: str | None = None,
        limit: int = 20, fmt: str = "text") -> int:
    from rcahook.serve import deploys as dp

    r = open_repo(repo)
    path = fb.state_path(r.common_dir)
    if action == "record":
        full = r.resolve(sha or "HEAD")
        when = int(_time.time())
        if time_:
            from rcahook.rca.incident import parse_time

            when = int(parse_time(time_).timestamp())
        conn = fb.open_state(path)
        try:
            deploy = dp.record_deploy(conn, environment=environment or "", sha=full, time=when)
        finally:
            conn.close()
        if fmt == "json":
            print_json(deploy.to_json())
        else:
            print(f"recorded: {full[:12]} live in {deploy.environment} since {fb.iso(deploy.time)}")
        return 0
    if not path.exists():
        found = []
    else:
        conn = fb.open_state(path, create=False)
        try:
            found = dp.deploys(conn, dp.check_environment(environment) if environment else None, limit=limit)
        finally:
            conn.close()
    if fmt == "json":
        print_json([d.to_json() for d in found])
    elif not found:
        print("no deploys recorded" + (f" for {environment}" if environment else ""))
    for d in found if fmt != "json" else []:
        print(f"{fb.iso(d.time)}  {d.environment:<20} {d.sha[:12]}")
    return 0

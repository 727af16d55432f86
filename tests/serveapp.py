"""What the `rcahook serve` tests share: an indexed demo repository and the app in process."""
from __future__ import annotations

import json
import types
from pathlib import Path

from rcahook.demo import generate
from rcahook.index import store
from rcahook.index.gitrepo import Repo
from rcahook.index.indexer import index_repository
from rcahook.rca import feedback as fb

TOKEN = "s3cret-token-for-tests-0123456789"


def indexed_demo(path: Path) -> types.SimpleNamespace:
    """rcahook's demo repository (a regression and the incident it caused), indexed."""
    demo = generate(path)
    repo = Repo(demo.repo)
    index_repository(repo, store.default_db_path(repo.common_dir), jobs=1)
    incident = json.loads(demo.incident_file.read_text())
    return types.SimpleNamespace(path=demo.repo, culprit=demo.culprit, incident=incident, demo=demo,
                                 state=fb.state_path(repo.common_dir))


def service(repo_path: Path, name: str = "demo", **kwargs):
    from rcahook.serve.app import Service
    from rcahook.serve.repos import ServedRepo

    kwargs.setdefault("update_interval", None)  # tests drive updates themselves
    return Service({name: ServedRepo.open(name, str(repo_path))}, **kwargs)


def client(svc):
    from fastapi.testclient import TestClient

    from rcahook.serve.app import create_app

    return TestClient(create_app(svc), base_url="http://127.0.0.1:8340")


def verdicts_in_store(state: Path, inv_id: str) -> list[fb.Verdict]:
    """Read back from the same store `rcahook feedback` uses."""
    conn = fb.open_state(state, create=False)
    try:
        return fb.verdicts(conn, inv_id)
    finally:
        conn.close()

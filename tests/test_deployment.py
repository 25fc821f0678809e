"""Docker files checked with what runs here (no Docker daemon): the compose file's structure, the
Dockerfile's install step against pyproject.toml, the build context, and the first-run script for real."""

from __future__ import annotations

import fnmatch
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
DOCKERFILE = (ROOT / "Dockerfile").read_text()
RECSYS_SERVICES = {"migrate", "first-run", "api", "worker"}


def test_one_image_is_built_once_and_run_by_every_recsys_service():
    services = COMPOSE["services"]
    assert set(services) >= RECSYS_SERVICES
    assert [name for name, s in services.items() if "build" in s] == ["migrate"]
    assert {services[name]["image"] for name in RECSYS_SERVICES} == {"recsys:latest"}
    assert {services[name]["pull_policy"] for name in RECSYS_SERVICES} == {"never"}
    assert services["migrate"]["build"]["args"]["TORCH_INDEX_URL"].endswith("download.pytorch.org/whl/cpu}")


def test_compose_refuses_to_start_without_a_password():
    text = (ROOT / "docker-compose.yml").read_text()
    uses = re.findall(r"\$\{POSTGRES_PASSWORD[^}]*\}", text)
    assert len(uses) == 2 and all(u.startswith("${POSTGRES_PASSWORD:?") for u in uses), uses
    assert COMPOSE["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")


def test_the_first_run_is_a_one_shot_on_demand_that_imports_a_folder():
    first = COMPOSE["services"]["first-run"]
    assert first["profiles"] == ["first-run"] and first["restart"] == "no"
    assert first["command"] == ["deploy/first-run.sh", "/import"]
    assert "${RECSYS_IMPORT_DIR:-./examples}:/import:ro" in first["volumes"]
    assert first["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    api = COMPOSE["services"]["api"]
    assert api["depends_on"] == {"migrate": {"condition": "service_completed_successfully"}}


def test_the_image_installs_the_cpu_build_of_the_projects_torch_pin_first():
    pin = next(d for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
               if d.startswith("torch"))
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in DOCKERFILE
    torch_step = f'RUN pip install --index-url "$TORCH_INDEX_URL" "{pin}"'
    assert torch_step in DOCKERFILE
    assert DOCKERFILE.index(torch_step) < DOCKERFILE.index("RUN pip install -e .")


def test_the_build_context_leaves_out_the_venv_and_data_but_keeps_what_is_copied():
    patterns = [p.strip().rstrip("/") for p in (ROOT / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]

    def ignored(path: str) -> bool:
        return any(fnmatch.fnmatch(path, p) or path.startswith(p + "/") for p in patterns)

    for path in (".venv", ".recsys", ".git", "tests", "bench"):
        assert ignored(path), path
    copied = [s for line in DOCKERFILE.splitlines() if line.startswith("COPY ") for s in line.split()[1:-1]]
    assert copied and all((ROOT / s).exists() and not ignored(s) for s in copied), copied


def test_the_first_run_script_imports_a_folder_and_trains(db, settings, tmp_path):
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "RECSYS_DATABASE_URL": settings.database.url,
        "RECSYS_DATA_DIR": str(tmp_path),
        "RECSYS_TRAIN_MODEL": "gmf", "RECSYS_TRAIN_EPOCHS": "1", "RECSYS_GATE_MIN_HR": "0",
        # A one-epoch model: the test is about the script, not the gate's baseline checks.
        "RECSYS_GATE_POPULARITY_MARGIN": "1", "RECSYS_GATE_BEAT_ITEMKNN": "false",
            "RECSYS_GATE_BEAT_IALS": "false",
    }
    done = subprocess.run([str(ROOT / "deploy" / "first-run.sh"), str(ROOT / "examples")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "27,311 sessions read: 27,311 inserted" in done.stdout
    assert re.search(r"pipeline run \d+ succeeded", done.stdout)
    empty = subprocess.run([str(ROOT / "deploy" / "first-run.sh"), str(tmp_path)], env=env,
                           capture_output=True, text=True, timeout=120)
    assert empty.returncode == 2
    assert f"first-run: no players file in {tmp_path}" in empty.stderr

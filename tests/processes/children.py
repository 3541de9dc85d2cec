"""Child processes of the process and fault tests, on a database the test names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


class Children:
    """Starts child processes on the test database and collects their JSON results."""

    def __init__(self, tmp_path: Path, settings: dict[str, Any]) -> None:
        self.tmp_path = tmp_path
        self.processes: list[subprocess.Popen[str]] = []
        database = {
            key: settings[key] for key in ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT")
        }
        self.env = {
            **os.environ,
            "HEPHAESTUS_TEST_DB": json.dumps(database),
            "PYTHONPATH": str(REPO),
        }
        self.env.pop("DJANGO_SETTINGS_MODULE", None)

    def spawn(
        self, command: str, payload: dict[str, Any], *, log: Path | None = None, **env: str
    ) -> subprocess.Popen[str]:
        """Start a child; its stderr goes to ``log`` if given (a long-lived child's log would
        fill a pipe nobody reads), else to a pipe read at the end."""
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.processes.child", command, json.dumps(payload)],
            cwd=REPO,
            env={**self.env, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if log is None else log.open("a"),
            text=True,
        )
        self.processes.append(process)
        return process

    def run(self, command: str, payload: dict[str, Any], **env: str) -> dict[str, Any]:
        return self.result(self.spawn(command, payload, **env))

    @staticmethod
    def result(process: subprocess.Popen[str], timeout: float = 300) -> dict[str, Any]:
        out, err = process.communicate(timeout=timeout)
        assert process.returncode == 0, err
        return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]

    def go_file(self) -> Path:
        return self.tmp_path / "go"

    def kill_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()

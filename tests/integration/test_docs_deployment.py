"""The deployment guide's configuration files for tools outside Python are valid, and run this
project's commands.

systemd units and supervisord programs parse as the INI files they are and have the keys their
tool requires; the Kubernetes manifests parse as YAML Deployments. Every command they start is
``manage.py`` with a management command that exists in a project with both job engines installed
(this suite's settings), and each options it passes are the command's own.
"""

from __future__ import annotations

import configparser
import shlex
from typing import Any

import yaml
from django.core.management import get_commands, load_command_class

from tests.docblocks import block

PAGE = "docs/guides/deployment.md"


def ini(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read_string(text)
    return parser


def assert_runs_a_command(argv: list[str]) -> str:
    """``[python, manage.py, command, options...]``: the command exists, takes the options."""
    manage = argv.index("manage.py")
    assert argv[manage - 1].endswith("python"), argv
    name, *options = argv[manage + 1 :]
    commands = get_commands()
    assert name in commands, f"{name} is no management command"
    if name == "procrastinate":  # a command with subcommands: 'worker' is one of them
        assert options[:1] == ["worker"]
        return name
    parser = load_command_class(commands[name], name).create_parser("manage.py", name)
    parser.parse_args(options)  # exits (SystemExit) on an option the command does not take
    return name


def test_systemd_units() -> None:
    started = []
    for fragment in ["procrastinate worker %i", "Description=shop: workflow timers"]:
        unit = ini(block(PAGE, fragment))
        assert set(unit.sections()) == {"Unit", "Service", "Install"}
        service = unit["Service"]
        assert service["Restart"] == "always"
        assert service["ExecStart"].startswith("/")  # systemd needs an absolute path
        started.append(assert_runs_a_command(shlex.split(service["ExecStart"])))
        assert unit["Install"]["WantedBy"] == "multi-user.target"
    assert started == ["procrastinate", "hephaestus_worker"]


def test_supervisord_programs() -> None:
    config = ini(block(PAGE, "[program:shop-steps]"))
    assert config.sections() == ["program:shop-steps", "program:shop-sweep"]
    started = []
    for section in config.sections():
        program = config[section]
        assert program["autorestart"] == "true"
        if int(program.get("numprocs", "1")) > 1:  # supervisord refuses several without it
            assert "%(process_num)" in program["process_name"]
        started.append(assert_runs_a_command(shlex.split(program["command"])))
    assert started == ["db_worker", "hephaestus_worker"]


def test_kubernetes_deployments() -> None:
    documents: list[dict[str, Any]] = list(yaml.safe_load_all(block(PAGE, "apiVersion: apps/v1")))
    assert [d["kind"] for d in documents] == ["Deployment", "Deployment"]
    started = []
    for document in documents:
        spec = document["spec"]
        assert spec["selector"]["matchLabels"] == spec["template"]["metadata"]["labels"]
        (container,) = spec["template"]["spec"]["containers"]
        started.append(assert_runs_a_command(container["command"]))
        probe = container.get("livenessProbe")
        if probe:
            assert assert_runs_a_command(probe["exec"]["command"]) == "hephaestus_status"
    assert started == ["procrastinate", "hephaestus_worker"]

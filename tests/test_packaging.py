"""pyproject.toml, environment.yml and constraints.txt must name the same packages."""

import re
import tomllib

import yaml

from conftest import REPO


# conda has no "extras": environment.yml lists what an extra pulls in by name.
EXTRAS = {"moto[server]": {"flask", "flask-cors"}}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_lists_the_same_packages_as_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"]}
    wanted |= {_name(r) for r in project["optional-dependencies"]["test"]}
    for requirement in project["dependencies"] + project["optional-dependencies"]["test"]:
        wanted |= EXTRAS.get(re.split(r"[<>=!~ ]", requirement, maxsplit=1)[0], set())
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    listed = {_name(d) for d in env["dependencies"] if isinstance(d, str)} - {"python", "pip"}
    assert listed == wanted


def test_environment_yml_pins_the_versions_of_constraints():
    pins = {_name(line): line.split("==")[1] for line in (REPO / "constraints.txt").read_text().splitlines()
            if "==" in line}
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    for dependency in env["dependencies"]:
        name = _name(dependency)
        if name in ("python", "pip"):
            continue
        assert "==" in dependency and dependency.split("==")[1] == pins[name], dependency


def test_every_dependency_is_pinned_in_constraints():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = {_name(line): line for line in (REPO / "constraints.txt").read_text().splitlines() if "==" in line}
    for requirement in project["dependencies"] + project["optional-dependencies"]["test"]:
        assert _name(requirement) in pins, f"{requirement} is not pinned in constraints.txt"

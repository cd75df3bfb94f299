"""The import-linter contracts in pyproject.toml (checked by `lint-imports` in `make lint` and
CI) name the tracefoundry package's core and wiring modules twice: in the "core" and "wiring"
contracts, and in the exhaustive "tracefoundry" contract that makes every new module of the
package declare itself one or the other. The lists must agree, or a module declared core in one
place could import an app unchecked."""

from __future__ import annotations

import tomllib

from tests.livestack import ROOT


def _contracts() -> tuple[dict, dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return config, {c["id"]: c for c in config["contracts"]}


def _tails(layer: str) -> set[str]:
    return {f"tracefoundry.{name.strip()}" for name in layer.split(":")}


def test_core_and_wiring_are_the_same_modules_in_every_contract():
    _, contracts = _contracts()
    wiring, core = contracts["tracefoundry"]["layers"]
    assert set(contracts["core"]["source_modules"]) == _tails(core)
    assert set(contracts["wiring"]["forbidden_modules"]) == _tails(wiring)


def test_every_app_is_checked():
    config, contracts = _contracts()
    apps = set(contracts["apps"]["layers"])
    assert set(config["root_packages"]) == {"tracefoundry", *apps}
    assert set(contracts["core"]["forbidden_modules"]) == apps
    assert set(contracts["wiring"]["source_modules"]) == apps

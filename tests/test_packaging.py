"""The installed package carries every subpackage and the schema documents."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_subpackage_and_the_schemas_are_packaged():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    on_disk = {".".join(p.parent.relative_to(ROOT).parts)
               for p in (ROOT / "armory_datasets").rglob("__init__.py")}
    assert set(config["packages"]) == on_disk | {"armory_datasets.schemas"}
    assert config["package-dir"]["armory_datasets.schemas"] == "schemas"
    assert {p.name for p in (ROOT / "schemas").glob("*.json")} == {
        "table.v1.json", "table.v2.json", "manifest.v1.json", "manifest.v2.json", "objects.v2.json"}

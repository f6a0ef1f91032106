"""pyproject.toml ships every package of the repository: an editable install finds a sub-package that the list
forgets, a wheel does not."""
import tomllib

from common_data.util.paths import REPO_ROOT


def test_every_package_folder_is_listed_in_pyproject():
    settings = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    listed = set(settings["packages"])
    folders = {package: REPO_ROOT / settings.get("package-dir", {}).get(package, package) for package in listed
               if "." not in package}
    found = {".".join((top, *init.parent.relative_to(folder).parts))
             for top, folder in folders.items() for init in folder.rglob("__init__.py")
             if "__pycache__" not in init.parts}
    assert found - listed == set()

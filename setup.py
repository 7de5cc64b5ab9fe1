"""Packaging hook: the wheel carries what the package ships (core/resources.py's SHIPPED_FILES, every
model package under Resources/Models, and the review page's NiiVue bundle) as DTISynthLib/_resources,
so an installed package (not editable) has them; core.resources finds them there, or in the checkout's
Resources/ beside DTISynthLib (editable installs, the Slicer extension). Everything else is in
pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "Resources"
RESOURCES_PY = HERE / "DTISynthLib" / "core" / "resources.py"
SHIPPING = {"__file__": str(RESOURCES_PY)}  # SHIPPED_FILES, MODELS, NIIVUE_BUNDLE (plain Python: no imports)
exec(compile(RESOURCES_PY.read_text(), str(RESOURCES_PY), "exec"), SHIPPING)


class BuildWithResources(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the checkout's Resources/ itself
        target = Path(self.build_lib) / "DTISynthLib" / "_resources"
        bundle = SOURCE / SHIPPING["NIIVUE_BUNDLE"]
        if not bundle.is_file():
            raise SystemExit(f"{bundle}: expected the review page's NiiVue bundle; found no such file (run "
                             "`npm ci --prefix Resources/Review`, as `make test` does, before building)")
        for entry in (*SHIPPING["SHIPPED_FILES"], SHIPPING["NIIVUE_BUNDLE"]):
            (target / entry).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(SOURCE / entry, target / entry)
        for manifest in sorted((SOURCE / SHIPPING["MODELS"]).glob("*/manifest.json")):
            folder = manifest.parent
            shutil.copytree(folder, target / SHIPPING["MODELS"] / folder.name, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("checkpoints"))


setup(cmdclass={"build_py": BuildWithResources})

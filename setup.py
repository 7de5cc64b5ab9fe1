"""Packaging hook: the wheel carries what the package ships (Resources/: model sets, atlas label
tables, phantom tissue maps, the review page and its NiiVue bundle) as DTISynthLib/_resources, so an
installed package (not editable) has them; core.resources finds them there, or in the checkout's
Resources/ beside DTISynthLib (editable installs, the Slicer extension). Everything else is in
pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
NIIVUE_BUNDLE = Path("Review/node_modules/@niivue/niivue/dist/niivue.umd.js")
# Resources/ entries the package reads at run time (rebuild scripts and the npm tree stay out)
SHIPPED = ("README.md", "Atlases", "Phantom", "Models/diagonal", "Models/pix2pix", "Models/tensor-unet",
           "Models/tensor-unet-signed", "Review/review.html", str(NIIVUE_BUNDLE))


class BuildWithResources(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the checkout's Resources/ itself
        source, target = HERE / "Resources", Path(self.build_lib) / "DTISynthLib" / "_resources"
        if not (source / NIIVUE_BUNDLE).is_file():
            raise SystemExit(f"{source / NIIVUE_BUNDLE}: expected the review page's NiiVue bundle; found no such "
                             "file (run `npm ci --prefix Resources/Review`, as `make test` does, before building)")
        for entry in SHIPPED:
            (target / entry).parent.mkdir(parents=True, exist_ok=True)
            if (source / entry).is_dir():
                shutil.copytree(source / entry, target / entry, dirs_exist_ok=True)
            else:
                shutil.copy2(source / entry, target / entry)


setup(cmdclass={"build_py": BuildWithResources})

"""The package as a user installs it: the wheel built from this checkout, installed into a fresh virtual
environment outside the checkout (its dependencies from the machine's pip configuration), run from
another folder. It must carry what it ships (model sets, atlas, phantom maps, the review page and its
viewer): nothing may be found in the checkout instead."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from test_layout import shipped_resources

from DTISynthLib.core.resources import NIIVUE_BUNDLE

REPO = Path(__file__).resolve().parents[2]


def run(command, cwd, env, timeout=600):
    done = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (command, done.stdout[-3000:], done.stderr[-3000:])
    return done.stdout


def test_the_wheel_installs_into_a_fresh_environment_and_runs_with_what_it_ships(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", tmp_path / "dist", REPO], tmp_path, env)
    wheels = list((tmp_path / "dist").glob("dtisynth-*.whl"))
    assert len(wheels) == 1
    with zipfile.ZipFile(wheels[0]) as wheel:
        carried = {n.split("DTISynthLib/_resources/", 1)[1] for n in wheel.namelist() if "/_resources/" in n}
    assert shipped_resources() | {NIIVUE_BUNDLE} <= carried, sorted(shipped_resources() - carried)
    run([sys.executable, "-m", "venv", tmp_path / "venv"], tmp_path, env)
    bin_dir = tmp_path / "venv" / "bin"
    # --no-compile: byte-compiling every dependency (torch's thousands of modules) was two thirds of the
    # install (56 s against 20 s); what runs below compiles what it imports.
    run([bin_dir / "python", "-m", "pip", "install", "-q", "--no-compile", wheels[0]], tmp_path, env, timeout=900)
    work = tmp_path / "elsewhere"  # not the checkout: nothing can be found there by accident
    work.mkdir()
    where = run([bin_dir / "python", "-c", "import DTISynthLib, json; from DTISynthLib.core.resources import RESOURCES; "
                 "from DTISynthLib.review.server import niivue_bundle; "
                 "print(json.dumps([DTISynthLib.__file__, str(RESOURCES), str(niivue_bundle())]))"], work, env)
    package, resources, bundle = json.loads(where)
    site = str(tmp_path / "venv")
    assert package.startswith(site) and resources.startswith(site) and bundle.startswith(site)
    listing = run([bin_dir / "dtisynth", "models"], work, env)
    assert "tensor-unet (default)" in listing and f"{resources}/Models/tensor-unet" in listing
    run([bin_dir / "dtisynth", "simulate", "cohort", "--n", "1", "--seed", "3", "--grid", "48x48x24", "--out",
         work / "cohort"], work, env)
    dwi = next((work / "cohort").rglob("*_acq-dwi3_dwi.nii.gz"))
    run([bin_dir / "dtisynth", "synthesize", "--dwi", dwi, "--out", work / "synthetic" / "sub-001", "--device", "cpu"],
        work, env)
    report = json.loads((work / "synthetic" / "sub-001" / "synthesis.json").read_text())
    assert Path(report["models"]).resolve() == Path(resources, "Models", "tensor-unet").resolve()
    created = run([bin_dir / "dtisynth", "review", "create", "--original", work / "cohort", "--synthetic",
                   work / "synthetic", "--out", work / "study", "--maps", "fa", "--readers", "1", "--jsonl"], work, env)
    assert "/r/" in json.loads(created.splitlines()[-1])["message"] and (work / "study" / "study.sqlite").is_file()

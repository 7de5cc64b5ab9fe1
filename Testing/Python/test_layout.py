"""Static checks of the extension layout, packaging and the project's rules."""

import ast
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _cmake_list(text, variable):
    block = re.search(rf"set\({variable}\s+(.*?)\)", text, re.S).group(1)
    return [line.strip() for line in block.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_cmake_lists_every_library_file_and_module_resource():
    cmake = (REPO / "DTISynth" / "CMakeLists.txt").read_text()
    listed = set(_cmake_list(cmake, "DTISYNTHLIB_PYTHON_SCRIPTS"))
    present = {p.relative_to(REPO).as_posix() for p in (REPO / "DTISynthLib").rglob("*.py")}
    assert listed == present, (sorted(present - listed), sorted(listed - present))
    for resource in _cmake_list(cmake, "MODULE_PYTHON_RESOURCES"):
        assert (REPO / "DTISynth" / resource.replace("${MODULE_NAME}", "DTISynth")).exists(), resource
    for resource in _cmake_list(cmake, "DTISYNTH_SHARED_RESOURCES"):
        assert (REPO / resource).exists(), resource
    top = (REPO / "CMakeLists.txt").read_text()
    assert 'set(EXTENSION_CATEGORY "Diffusion")' in top and "add_subdirectory(DTISynth)" in top
    assert "find_package(Slicer REQUIRED)" in top and "Slicer_EXTENSION_CPACK" in top


def shipped_resources():
    """Resources/-relative paths of what the wheel and the Slicer extension must ship: core.resources'
    SHIPPED_FILES and every shipped model package's files (generators.package.package_files)."""
    from DTISynthLib.core.resources import MODELS, SHIPPED_FILES
    from DTISynthLib.generators.package import read_manifest

    files = set(SHIPPED_FILES)
    for manifest in sorted((REPO / "Resources" / MODELS).glob("*/manifest.json")):
        files |= {f"{MODELS}/{manifest.parent.name}/{name}" for name in read_manifest(manifest.parent).package_files()}
    return files


def test_the_extension_ships_every_file_the_library_reads_and_every_file_the_manifests_name():
    """The CMake resource list against core.resources and the shipped manifests (an installed extension
    once lacked the input checks, so every synthesis failed), and the library's own resource paths
    against core.resources."""
    from DTISynthLib.core.resources import RESOURCES, SHIPPED_FILES
    from DTISynthLib.review import server
    from DTISynthLib.simulation.brain_phantom import TISSUE_FILE

    listed = set(_cmake_list((REPO / "DTISynth" / "CMakeLists.txt").read_text(), "DTISYNTH_SHARED_RESOURCES"))
    expected = {f"Resources/{name}" for name in shipped_resources()}
    # the npm manifests travel too, so that an extension build can install the review page's viewer
    npm = {"Resources/Review/package.json", "Resources/Review/package-lock.json"}
    assert listed - npm == expected, "missing: {}; not shipped by core.resources: {}".format(
        sorted(expected - listed), sorted(listed - npm - expected))
    assert all((REPO / name).is_file() for name in listed)
    assert TISSUE_FILE.relative_to(RESOURCES).as_posix() in SHIPPED_FILES
    assert "Review/review.html" in SHIPPED_FILES and 'RESOURCES / "Review" / "review.html"' in \
        Path(server.__file__).read_text()


def test_dependencies_are_pinned_and_torch_is_the_cpu_wheel():
    text = (REPO / "pyproject.toml").read_text()
    requirements = re.findall(r'^\s+"([A-Za-z0-9_.-]+)([^"]*)",$', text, re.M)
    assert requirements, "no dependencies found"
    for name, spec in requirements:
        assert spec.startswith("=="), f"{name} is not pinned: {spec!r}"
    assert ("torch", "==2.13.0") in requirements
    assert not any(name == "slicer" for name, _ in requirements)  # the unrelated PyPI package


def test_readme_commands_and_ci_agree():
    readme = (REPO / "README.md").read_text()
    commands = re.findall(r"^make (\w+)", readme, re.M)
    assert commands[:2] == ["demo", "test"]
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    ci = (REPO / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M)


def test_library_imports_no_gui_and_no_torch_at_import():
    forbidden = {"slicer", "qt", "ctk", "vtk"}
    for path in (REPO / "DTISynthLib").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module-level imports only: lazy imports inside functions are allowed
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            assert not any(n.split(".")[0] in forbidden for n in names), (path.name, names)
    # Only the network and training modules load torch; everything Slicer or the CLI start-up touches
    # must not (torch never enters the Slicer process, and `dtisynth fit` starts fast).
    torch_modules = {"generators.networks", "training.pix2pix", "training.tensor_unet", "training.distributed",
                     "training.checkpoints"}
    modules = [".".join(p.relative_to(REPO / "DTISynthLib").with_suffix("").parts)
               for p in (REPO / "DTISynthLib").rglob("*.py")]
    modules = [m.removesuffix(".__init__") for m in modules if m not in torch_modules | {"__main__", "__init__"}]
    code = ("import sys\n" + "".join(f"import DTISynthLib.{m}\n" for m in modules) +
            "print('torch' in sys.modules, 'slicer' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert run.stdout.strip() == "False False"
    assert "cli" in modules and "generators.package" in modules


def test_no_unpickling_of_model_files():
    for path in list((REPO / "DTISynthLib").rglob("*.py")) + list((REPO / "DTISynth").glob("*.py")):
        text = path.read_text()
        assert not re.search(r"pickle\.loads?\(", text), path
        for call in re.findall(r"torch\.load\([^)]*\)", text):
            assert "weights_only=True" in call, (path, call)

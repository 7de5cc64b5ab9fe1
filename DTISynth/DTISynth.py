"""DTISynth Slicer module: the panel, a parameter node and a thin logic. The science is DTISynthLib
(beside this file); synthesis and evaluation run in a child process (DTISynthLib.slicer.job_runner), so
Slicer never freezes nor imports torch. From Slicer's Python console:

    nodes = slicer.util.getModuleLogic("DTISynth").synthesize(dwiNode, b0Node, wait=True)   # {role: node}
"""

import importlib.util
import logging
import sys
from pathlib import Path
from typing import Annotated

# The supported floor: Slicer 5.10 (Python 3.12). Slicer 5.8 ships Python 3.9, where DTISynthLib's Python 3.10
# code (zip(strict=...), X | Y types) fails: refuse to load, saying so, before any of it is imported.
MINIMUM_PYTHON = (3, 10)
if sys.version_info < MINIMUM_PYTHON:
    raise ImportError(f"DTISynth needs 3D Slicer 5.10 or later (Python {MINIMUM_PYTHON[0]}.{MINIMUM_PYTHON[1]}+); "
                      f"this Slicer runs Python {sys.version.split()[0]}: install a newer Slicer")

# Installed, DTISynthLib lies beside this file (CMake puts it there); loaded from the source tree (Application
# Settings > Modules > Additional module paths: .../DTISynth) it is one folder up, where Slicer does not look.
SOURCE_ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("DTISynthLib") is None and (SOURCE_ROOT / "DTISynthLib" / "__init__.py").is_file():
    sys.path.insert(0, str(SOURCE_ROOT))

import qt  # noqa: E402 (after the version check)
import slicer
import vtk
from slicer import vtkMRMLDiffusionWeightedVolumeNode, vtkMRMLScalarVolumeNode, vtkMRMLSequenceNode
from slicer.i18n import tr as _, translate
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from DTISynthLib.generators.package import DEFAULT_MODELS
from DTISynthLib.slicer.dependencies import ensure_dependencies
from DTISynthLib.slicer.job_folders import remove_stale_job_folders
from DTISynthLib.slicer.results_display import MAP_ROLES
from DTISynthWidgets.model_sets_panel import ModelSetsPanel, model_folder
from DTISynthWidgets.results_panel import ResultsPanel
from DTISynthWidgets.review_panel import ReviewPanel


class DTISynth(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("DTISynth")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Diffusion")]
        # the modules whose logic and MRML classes it calls: DWI and scalar volumes, 4D input sequences, ROI
        # segmentations, the results' subject-hierarchy folder, Bland-Altman charts, tables, the phantom sample
        self.parent.dependencies = ["Volumes", "Sequences", "Segmentations", "SubjectHierarchy", "Plots", "Tables",
                                    "SampleData"]
        self.parent.contributors = ["DTISynth developers"]
        self.parent.helpText = _(
            "Synthesize a diffusion tensor image (b=0 + 6 directions) from a conventional 3-direction DWI with "
            "deep generators (default: one tensor U-Net; the paper's six pix2pix models are shipped too), fit "
            "tensors and show FA / MD / AD / RD / colour-FA / V1-confidence maps. With an acquired "
            "DTI, the paper's evaluation runs too: atlas ROIs, ROI statistics, paired t-tests and Bland-Altman. "
            "Work runs in a separate process: Slicer stays responsive and Cancel stops it. "
            "Documentation: the README of the DTISynth extension.")
        self.parent.acknowledgementText = _(
            "Method after: Deep learning-based diffusion tensor image generation model: a proof-of-concept study "
            "(pix2pix, one model per gradient direction), and the multi-tensor simulation and single-voxel "
            "autoencoder realism score for synthetic diffusion data. The brain phantom uses the MNI ICBM152 2009a "
            "tissue maps (see Resources/Phantom/README.md).")
        slicer.app.connect("startupCompleted()", registerSampleData)


def registerSampleData():
    """A brain-phantom subject in Sample Data, simulated locally (nothing is downloaded)."""
    import SampleData

    icon = str(Path(__file__).parent / "Resources" / "Icons" / "DTISynth.png")
    # SampleDataSource needs uris and fileNames of one length even when a custom downloader does the work
    # (it takes len() of both): placeholders, as SampleData's own custom-downloader test source has.
    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category="DTISynth", sampleName="DTISynthPhantom", uris="dtisynth://phantom", fileNames="DTISynthPhantom.nrrd",
        thumbnailFileName=icon, customDownloader=lambda source: DTISynthLogic().loadPhantomSample())


@parameterNodeWrapper
class DTISynthParameterNode:
    """inputDWI: the 3-direction DWI, or inputSequence (a 4D volume loaded as a sequence) with FSL
    bvalFile / bvecFile (paths, "" when not given), or inputFile (a DWI file: NIfTI with those FSL files,
    their default beside it, NRRD or a DICOM folder; used instead of the nodes when given); referenceB0:
    the b=0 to register to (default the DWI's own), or referenceB0File; acquiredDTI: an acquired DTI to
    evaluate against (optional); modelSet: the name of an installed model package (model_sets_panel.
    model_folder finds it: a saved scene must not pin one install's folder); device: where the generators
    run; shownMap / showROIs / hideGuessedOrientation (colour FA grey where the V1
    confidence is below 0.8): the results display. A reader's review link is not kept: a saved scene must
    not carry it."""

    inputDWI: vtkMRMLDiffusionWeightedVolumeNode
    inputSequence: vtkMRMLSequenceNode
    # str, bound by hand (PATH_FIELDS): Slicer's only ctkPathLineEdit connector is for pathlib types, and an
    # empty Path is Path("."), which the field would show as "."
    bvalFile: str = ""
    bvecFile: str = ""
    inputFile: str = ""
    referenceB0: vtkMRMLScalarVolumeNode
    referenceB0File: str = ""
    acquiredDTI: vtkMRMLDiffusionWeightedVolumeNode
    modelSet: str = DEFAULT_MODELS.name
    device: Annotated[str, Choice(["auto", "cpu", "cuda"])] = "auto"
    shownMap: Annotated[str, Choice(list(MAP_ROLES))] = "FA"
    showROIs: bool = True
    hideGuessedOrientation: bool = False


PATH_FIELDS = {"bvalPathLineEdit": "bvalFile", "bvecPathLineEdit": "bvecFile", "inputFilePathLineEdit": "inputFile",
               "referenceB0FilePathLineEdit": "referenceB0File"}


class DTISynthWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self.job = None
        self.timer = qt.QTimer()
        self.timer.setInterval(200)
        self.timer.connect("timeout()", self.onPoll)

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/DTISynth.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = DTISynthLogic()
        remove_stale_job_folders(jobs_folder())  # left by a Slicer that crashed: patients' exported DWIs
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndImportEvent, self.onSceneEndImport)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        for widget, name in PATH_FIELDS.items():  # bound by hand (see DTISynthParameterNode)
            getattr(self.ui, widget).connect("currentPathChanged(QString)", lambda path, name=name: (
                self._parameterNode is not None and setattr(self._parameterNode, name, path)))
        self.modelSets = ModelSetsPanel(self.ui, lambda: self._parameterNode.modelSet,
                                        lambda name: setattr(self._parameterNode, "modelSet", name))
        self.results = ResultsPanel(self.ui, views_taken=lambda: self.review.session is not None)
        self.review = ReviewPanel(self.ui, self.parent, lambda: self.ensureDependencies(torch=False))
        self.initializeParameterNode()

    def cleanup(self):
        self.review.cleanup()  # its shortcuts too: a reloaded module's would sit beside them
        if self.job is not None:
            self.job.cancel(wait=True)  # Slicer is closing or reloading the module: reap the child now
        self.timer.stop()
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)

    def onSceneStartClose(self, caller, event):
        if self.job is not None:  # its results belong to the scene that is closing, not the next one
            self.job.cancel()
            self._log(_("Cancelled: the scene was closed."))
            self._stop()
        self.setParameterNode(None)
        self.review.close()  # the scene's nodes are going: forget them, as the template does its parameter node
        self.results.set_nodes({})

    def onSceneEndImport(self, caller, event):
        """A scene opened (or imported): its DTISynth results come back to the Results section, shown as saved."""
        from DTISynthLib.slicer.mrml_adapter import find_results

        with slicer.util.tryWithErrorDisplay(_("DTISynth could not read the scene's results.")):
            found = find_results(slicer.mrmlScene)
            if found:
                self.results.set_nodes(found, show=False)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputDWI and not self._parameterNode.inputSequence:
            first = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLDiffusionWeightedVolumeNode")
            if first:
                self._parameterNode.inputDWI = first

    def setParameterNode(self, parameterNode):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
        self._parameterNode = parameterNode
        if self._parameterNode:
            with self.results.holding():  # filling the widgets from the node is not the user choosing a map
                self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._checkCanApply()

    def _checkCanApply(self, caller=None, event=None):
        running = self.job is not None
        p = self._parameterNode
        for widget, name in PATH_FIELDS.items():  # the hand-bound fields follow the node (scene load, scripts)
            if p and getattr(self.ui, widget).currentPath != getattr(p, name):
                getattr(self.ui, widget).currentPath = getattr(p, name)
        ready = bool(p and (p.inputFile or p.inputDWI or (p.inputSequence and p.bvalFile and p.bvecFile)))
        self.ui.applyButton.enabled = running or ready
        self.ui.applyButton.text = _("Cancel") if running else _("Apply")
        self.ui.applyButton.toolTip = _("Stop the running synthesis") if running else (
            _("Synthesize the DTI") if ready else _("Select a 3-direction DWI, a 4D sequence with bval / bvec, or a "
                                                   "DWI file"))

    def onApplyButton(self):
        if self.job is not None:
            self.job.cancel()
            self._log(_("Cancelled: nothing was loaded."))
            self._stop()
            return
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("DTISynth could not start."), waitCursor=True):
            if not self.ensureDependencies():
                return
            self.ui.logTextEdit.clear()
            self.ui.progressBar.value = 0
            fsl = not p.inputDWI or p.inputFile  # bval / bvec belong to a sequence or a NIfTI file
            if p.inputFile:  # shown as DTISynth reads it (gradients in RAS): a bad file is refused here, named
                from DTISynthLib.slicer.mrml_adapter import add_dwi_file

                add_dwi_file(slicer.mrmlScene, p.inputFile, p.bvalFile, p.bvecFile)
            self.job = self.logic.synthesize(p.inputFile or p.inputDWI or p.inputSequence,
                                             p.referenceB0File or p.referenceB0, p.acquiredDTI,
                                             models=model_folder(p.modelSet), device=p.device, wait=False,
                                             bval=p.bvalFile if fsl else None, bvec=p.bvecFile if fsl else None)
            self.timer.start()
        self._checkCanApply()

    def ensureDependencies(self, torch=True):
        """The logic's installation, with Apply and the review's Start disabled meanwhile (a second click
        on 5.10 started a second pip install into the same site-packages)."""
        for button in (self.ui.applyButton, self.ui.reviewStartButton):
            button.enabled = False
        try:
            return self.logic.ensureDependencies(torch=torch)
        finally:
            self.ui.reviewStartButton.enabled = True
            self._checkCanApply()

    def onPoll(self):
        from DTISynthLib.slicer.job_runner import JobFailed

        try:
            for event in self.job.poll():
                if event.get("event") == "progress":
                    self.ui.progressBar.value = int(100 * event["fraction"])
                    self.ui.progressBar.format = f"{event['stage']} %p%"
                if event.get("message"):
                    self._log(event["message"])
            if self.job.running:
                return
            nodes = self.job.load(slicer.mrmlScene)
            self._log(_("Done: results are in the subject hierarchy folder {name}.").format(name=self.job.name))
            if "reliability" in nodes:  # what to know before trusting the maps, in the log too
                self._log(nodes["reliability"].GetText())
            self.results.set_nodes(nodes)
        except JobFailed as exc:
            slicer.util.errorDisplay(_("DTISynth failed: {message}").format(message=str(exc)))
            self._log(str(exc))
        except Exception as exc:  # loading the results failed: stop polling, or each tick adds the nodes again
            logging.exception("DTISynth: loading the results failed")
            slicer.util.errorDisplay(_("DTISynth could not load its results: {message}").format(message=str(exc)))
            self._log(str(exc))
        self._stop()

    def _stop(self):
        self.timer.stop()
        if self.job.running:  # an exception while following it: the child must not run on unobserved
            self.job.cancel()
        self.job.cleanup()  # its temporary files, whether it succeeded, failed or failed to load
        self.job = None
        self._checkCanApply()

    def _log(self, text):
        self.ui.logTextEdit.appendPlainText(text)


def jobs_folder():
    """Where jobs export their inputs: DTISynth in Slicer's temporary folder (the user's, set in Application
    Settings), not the system's shared one."""
    return Path(slicer.app.temporaryPath) / "DTISynth"


class DTISynthLogic(ScriptedLoadableModuleLogic):
    """The work is DTISynthLib's (slicer.job_runner, slicer.mrml_adapter); dialogs only to install packages."""

    def getParameterNode(self):
        return DTISynthParameterNode(super().getParameterNode())

    def ensureDependencies(self, confirm=True, torch=True):
        """Install what DTISynth needs (Resources/requirements.txt; with `torch`, PyTorch for the child
        process), after the user agrees; False when they decline (DTISynthLib.slicer.dependencies)."""
        return ensure_dependencies(Path(__file__).parent / "Resources" / "requirements.txt", confirm, torch)

    def synthesize(self, dwiNode, b0Node=None, acquiredNode=None, models=None, device="auto", wait=True,
                   progress=None, bval=None, bvec=None):
        """Synthesize (and, with acquiredNode, evaluate). dwiNode: a DWI node, a sequence node with FSL
        bval / bvec files, or a DWI file path (NIfTI with bval / bvec, NRRD, a DICOM folder); b0Node: a
        scalar volume node or a b=0 file path. wait=True blocks and returns {role: node}; wait=False returns the started
        DTISynthLib.slicer.job_runner.SynthesisJob for the caller to poll."""
        if not self.ensureDependencies():  # scripted use too, not only the Apply button
            raise RuntimeError("DTISynth's Python packages are not installed (the installation was declined)")
        from DTISynthLib.slicer.job_runner import SynthesisJob

        job = SynthesisJob(dwiNode, b0Node, acquiredNode, models=models, device=device, bval=bval, bvec=bvec,
                           work_root=jobs_folder())
        if wait:  # Slicer keeps processing events meanwhile: it repaints, and the progress shows
            return job.run(slicer.mrmlScene, progress=progress or (lambda e: logging.info(e.get("message", ""))),
                           idle=slicer.app.processEvents)
        job.start()
        return job

    def loadPhantomSample(self):
        """Simulate a phantom subject here (a few seconds) and add its 3-direction DWI and 6-direction DTI."""
        with slicer.util.tryWithErrorDisplay(_("The DTISynth phantom could not be made."), waitCursor=True):
            if not self.ensureDependencies(torch=False):  # nibabel and the rest, before the library needs them
                return []
            from DTISynthLib.slicer.mrml_adapter import add_phantom_subject

            return add_phantom_subject(slicer.mrmlScene)


class DTISynthTest(ScriptedLoadableModuleTest):
    """Runs in real Slicer: Developer Tools > Reload and Test, or `Slicer --testing --python-code
    "import DTISynth; DTISynth.DTISynthTest().runTest()"`."""

    def setUp(self):
        # CTest (slicer.testing.runUnitTest) runs the test_ methods through unittest, never runTest: skip here,
        # or the test would install PyTorch (confirmation dialogs auto-accept in testing mode)
        if importlib.util.find_spec("torch") is None:
            self.skipTest("PyTorch is not installed in this Slicer")
        slicer.mrmlScene.Clear()

    def runTest(self):
        # Reload and Test calls runTest directly, outside unittest's runner, where skipTest would be a failure
        if importlib.util.find_spec("torch") is None:
            self.delayDisplay("DTISynth test skipped: PyTorch is not installed in this Slicer")
            return
        self.setUp()
        self.test_synthesize_phantom_with_default_models()

    def test_synthesize_phantom_with_default_models(self):
        logic = DTISynthLogic()
        dwi, dti = logic.loadPhantomSample()
        nodes = logic.synthesize(dwi, None, dti, wait=True)
        self.assertTrue(nodes["tensor"].IsA("vtkMRMLDiffusionTensorVolumeNode"))
        self.assertEqual((nodes["dwi"].GetNumberOfGradients(), nodes["table"].GetNumberOfRows()), (7, 20))
        self.assertGreater(float(slicer.util.arrayFromVolume(nodes["fa"]).max()), 0.5)
        self.assertNotIn("torch", sys.modules)
        self.delayDisplay("DTISynth synthesis test passed")

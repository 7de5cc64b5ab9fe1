"""DTISynth Slicer module: the panel, a parameter node and a thin logic.

The science lives in DTISynthLib (installed beside this file). Synthesis and evaluation run as a child
process (`PythonSlicer -m DTISynthLib ... --jsonl`, DTISynthLib.slicer.job_runner), so Slicer never freezes
and never imports torch; results come back through one MRML adapter (DTISynthLib.slicer.mrml_adapter).

Scripting from Slicer's Python console:

    logic = slicer.util.getModuleLogic("DTISynth")
    nodes = logic.synthesize(dwiNode, b0Node, models=None, wait=True)   # {role: node}
"""

import importlib
import importlib.util
import logging
import re
import sys
from pathlib import Path
from typing import Annotated

# The supported floor: 3D Slicer 5.10 (Python 3.12). Slicer 5.8 and older ship Python 3.9, where
# DTISynthLib's Python 3.10 code (zip(strict=...), X | Y types at run time) fails: refuse to load, saying so,
# before any of it is imported.
MINIMUM_PYTHON = (3, 10)
if sys.version_info < MINIMUM_PYTHON:
    raise ImportError(f"DTISynth needs 3D Slicer 5.10 or later (Python {MINIMUM_PYTHON[0]}.{MINIMUM_PYTHON[1]}+); "
                      f"this Slicer runs Python {sys.version.split()[0]}: install a newer Slicer")

import qt  # noqa: E402 (after the version check)
import slicer
import vtk
from slicer import (
    vtkMRMLDiffusionWeightedVolumeNode,
    vtkMRMLScalarVolumeNode,
    vtkMRMLSequenceNode,
)
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

from DTISynthLib.generators.package import DEFAULT_MODELS
from DTISynthLib.slicer.review_session import ReviewSession

MAP_ROLES = {"FA": "fa", "MD": "md", "AD": "ad", "RD": "rd", "colour FA": "color", "V1 confidence": "v1_confidence"}


class DTISynth(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("DTISynth")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Diffusion")]
        self.parent.dependencies = []
        self.parent.contributors = ["DTISynth developers"]
        self.parent.helpText = _(
            "Synthesize a diffusion tensor image (b=0 + 6 directions) from a conventional 3-direction DWI with "
            "six pix2pix generators, fit tensors and show FA / MD / AD / RD / colour-FA maps. With an acquired "
            "DTI, the paper's evaluation runs too: atlas ROIs, ROI statistics, paired t-tests and Bland-Altman. "
            "Work runs in a separate process: Slicer stays responsive and Cancel stops it. "
            "Documentation: the README of the DTISynth extension.")
        self.parent.acknowledgementText = _(
            "Method after: Deep learning-based diffusion tensor image generation model: a proof-of-concept study "
            "(pix2pix, one model per gradient direction), and the multi-tensor simulation and single-voxel "
            "autoencoder realism score for synthetic diffusion data. The brain phantom uses the MNI ICBM152 2009a "
            "tissue maps (see Resources/Phantom/README.md).")
        slicer.app.connect("startupCompleted()", registerSampleData)


def _pip_ensure_module():
    """Slicer's module with pip_ensure and load_requirements (slicer.pydeps; slicer.packaging in some
    previews), or None on a Slicer without them (5.10): then requirements are checked here."""
    for name in ("slicer.pydeps", "slicer.packaging"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if hasattr(module, "pip_ensure") and hasattr(module, "load_requirements"):
            return module
    return None


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
    bvalFile / bvecFile (paths, "" when not given); referenceB0: the b=0 to register to (default the DWI's
    own); acquiredDTI: an acquired DTI to evaluate against (optional); modelsFolder: a model package; device:
    where the generators run; shownMap / showROIs / hideGuessedOrientation (colour FA grey where the V1 confidence is
    below 0.8): the results display."""

    inputDWI: vtkMRMLDiffusionWeightedVolumeNode
    inputSequence: vtkMRMLSequenceNode
    # str, bound by hand (PATH_FIELDS): Slicer's only ctkPathLineEdit connector is for pathlib types, and an
    # empty Path is Path("."), which the field would show as "."
    bvalFile: str = ""
    bvecFile: str = ""
    referenceB0: vtkMRMLScalarVolumeNode
    acquiredDTI: vtkMRMLDiffusionWeightedVolumeNode
    modelsFolder: Path = DEFAULT_MODELS
    device: Annotated[str, Choice(["auto", "cpu", "cuda"])] = "auto"
    shownMap: Annotated[str, Choice(list(MAP_ROLES))] = "FA"
    showROIs: bool = True
    hideGuessedOrientation: bool = False


PATH_FIELDS = {"bvalPathLineEdit": "bvalFile", "bvecPathLineEdit": "bvecFile"}


class DTISynthWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self.job = None
        self.nodes = {}
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
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        for widget, name in PATH_FIELDS.items():
            getattr(self.ui, widget).connect("currentPathChanged(QString)",
                                             lambda path, name=name: self._setPathParameter(name, path))
        self.ui.importModelsButton.connect("clicked(bool)", self.onImportModels)
        self.ui.openModelsFolderButton.connect("clicked(bool)", self.onOpenModelsFolder)
        self.ui.modelSetsListWidget.connect("itemClicked(QListWidgetItem*)", self.onModelSetClicked)
        self.listModelSets()
        self.ui.showTableButton.connect("clicked(bool)", lambda: self.logic.showTable(self.nodes))
        self.ui.showPlotButton.connect("clicked(bool)", lambda: self.logic.showPlot(
            self.nodes, MAP_ROLES.get(self.ui.mapComboBox.currentText, "fa")))  # the map on show, not always FA
        self.ui.mapComboBox.connect("currentIndexChanged(int)", self.onDisplayChanged)
        self.ui.roiOverlayCheckBox.connect("toggled(bool)", self.onDisplayChanged)
        self.ui.hideGuessCheckBox.connect("toggled(bool)", self.onDisplayChanged)
        self.ui.resultsCollapsibleButton.enabled = False
        self.setupReview()
        self.initializeParameterNode()

    def setupReview(self):
        """The Review section: a reader's blinded noise review (DTISynthLib.slicer.review_session does the
        work; here only widgets, buttons and the shortcuts Left / Right arrow and 1-5)."""
        import ctk

        self.review = None
        section = ctk.ctkCollapsibleButton()
        section.text = _("Review (blinded noise review)")
        section.collapsed = True
        self.layout.addWidget(section)
        form = qt.QFormLayout(section)
        self.reviewStudy = ctk.ctkPathLineEdit()
        self.reviewStudy.filters = ctk.ctkPathLineEdit.Dirs
        self.reviewStudy.toolTip = _("The study folder (dtisynth review create)")
        form.addRow(_("Study folder:"), self.reviewStudy)
        self.reviewToken = qt.QLineEdit()
        self.reviewToken.echoMode = qt.QLineEdit.Password
        self.reviewToken.toolTip = _("Your reader link or token, as the study's organiser gave it")
        form.addRow(_("Reader link:"), self.reviewToken)
        start = qt.QPushButton(_("Start / resume"))
        start.connect("clicked(bool)", self.onReviewStart)
        form.addRow(start)
        self.reviewProgress = qt.QLabel(_("Not started"))
        form.addRow(self.reviewProgress)
        buttons = qt.QHBoxLayout()
        for side, text in (("left", _("\u2190 Left is noisier")), ("right", _("Right is noisier \u2192"))):
            button = qt.QPushButton(text)
            button.connect("clicked(bool)", lambda checked, side=side: self.onReviewAnswer(side))
            buttons.addWidget(button)
            # on this panel only (not the main window): slice views keep their arrow keys, Segment Editor its 1-5
            shortcut = qt.QShortcut(qt.QKeySequence(qt.Qt.Key_Left if side == "left" else qt.Qt.Key_Right), self.parent)
            shortcut.setContext(qt.Qt.WidgetWithChildrenShortcut)
            shortcut.connect("activated()", lambda side=side: self.onReviewAnswer(side))
        form.addRow(buttons)
        self.reviewConfidence = qt.QSpinBox()
        self.reviewConfidence.setRange(0, 5)
        self.reviewConfidence.specialValueText = _("choose 1-5")
        self.reviewConfidence.toolTip = _("Required: 1 guess, 2 unsure, 3 fairly sure, 4 sure, 5 certain")
        form.addRow(_("Confidence (required):"), self.reviewConfidence)
        for value in range(1, 6):
            shortcut = qt.QShortcut(qt.QKeySequence(str(value)), self.parent)
            shortcut.setContext(qt.Qt.WidgetWithChildrenShortcut)
            shortcut.connect("activated()", lambda value=value: setattr(self.reviewConfidence, "value", value))
        self.reviewComment = qt.QLineEdit()
        form.addRow(_("Comment:"), self.reviewComment)

    def onReviewStart(self):
        if not self.logic.ensureDependencies(torch=False):
            return
        with slicer.util.tryWithErrorDisplay(_("The review could not start."), waitCursor=True):
            self.review = ReviewSession(slicer.mrmlScene, self.reviewStudy.currentPath, self.reviewToken.text)
            self.review.show_next()
            self._reviewShown()

    def onReviewAnswer(self, side):
        if self.review is None or self.review.shown is None:
            return
        with slicer.util.tryWithErrorDisplay(_("The answer was not saved."), waitCursor=True):
            self.review.answer(side, self.reviewConfidence.value or None, self.reviewComment.text or None)
            self._reviewShown()

    def _reviewShown(self):
        self.reviewProgress.text = self.review.progress_text()
        self.reviewConfidence.value = 0
        self.reviewComment.text = ""

    def cleanup(self):
        if self.review is not None:
            self.review.close()
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
        self.setParameterNode(None)
        # the scene's nodes are going: forget them, as the template does its parameter node
        if self.review is not None:
            self.review.close()
            self.review = None
        self.nodes = {}
        self.ui.resultsCollapsibleButton.enabled = False

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
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._checkCanApply)
            self._checkCanApply()

    def _setPathParameter(self, name, path):
        if self._parameterNode:
            setattr(self._parameterNode, name, path)

    def _checkCanApply(self, caller=None, event=None):
        running = self.job is not None
        p = self._parameterNode
        for widget, name in PATH_FIELDS.items():  # the hand-bound fields follow the node (scene load, scripts)
            if p and getattr(self.ui, widget).currentPath != getattr(p, name):
                getattr(self.ui, widget).currentPath = getattr(p, name)
        ready = bool(p and (p.inputDWI or (p.inputSequence and p.bvalFile and p.bvecFile)))
        self.ui.applyButton.enabled = running or ready
        self.ui.applyButton.text = _("Cancel") if running else _("Apply")
        self.ui.applyButton.toolTip = _("Stop the running synthesis") if running else (
            _("Synthesize the DTI") if ready else _("Select a 3-direction DWI (or a 4D sequence with bval / bvec)"))

    def onApplyButton(self):
        if self.job is not None:
            self.job.cancel()
            self._log(_("Cancelled: nothing was loaded."))
            self._stop()
            return
        if not self.logic.ensureDependencies():
            return
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay(_("DTISynth could not start."), waitCursor=True):
            self.ui.logTextEdit.clear()
            self.ui.progressBar.value = 0
            self.job = self.logic.synthesize(p.inputDWI or p.inputSequence, p.referenceB0, p.acquiredDTI,
                                             models=p.modelsFolder, device=p.device, wait=False,
                                             bval=None if p.inputDWI else p.bvalFile,
                                             bvec=None if p.inputDWI else p.bvecFile)
            self.timer.start()
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
            self.nodes = self.job.load(slicer.mrmlScene)
            self.job.cleanup()
            self._log(_("Done: results are in the subject hierarchy folder {name}.").format(name=self.job.name))
            self.ui.resultsCollapsibleButton.enabled = True
            self.onDisplayChanged()
            self.logic.showTable(self.nodes)
            self.logic.showPlot(self.nodes)
        except JobFailed as exc:
            self.job.cleanup()
            slicer.util.errorDisplay(_("DTISynth failed: {message}").format(message=str(exc)))
            self._log(str(exc))
        except Exception as exc:  # loading the results failed: stop polling, or each tick adds the nodes again
            logging.exception("DTISynth: loading the results failed")
            slicer.util.errorDisplay(_("DTISynth could not load its results: {message}").format(message=str(exc)))
            self._log(str(exc))
        self._stop()

    def _stop(self):
        self.timer.stop()
        self.job = None
        self._checkCanApply()

    def _log(self, text):
        self.ui.logTextEdit.appendPlainText(text)

    def onDisplayChanged(self, *args):
        # the parameter node's GUI binding refills the map list on entering: "" passes by while it does
        if self.nodes and self.ui.mapComboBox.currentText in MAP_ROLES:
            self.logic.showResults(self.nodes, self.ui.mapComboBox.currentText, self.ui.roiOverlayCheckBox.checked,
                                   self.ui.hideGuessCheckBox.checked)

    def onImportModels(self):
        source = qt.QFileDialog.getOpenFileName(None, _("Import a model package"), "", _("Model package (*.zip)"))
        if not source:
            source = qt.QFileDialog.getExistingDirectory(None, _("Import a model package folder"))
        if source:
            with slicer.util.tryWithErrorDisplay(_("The model package was refused."), waitCursor=True):
                self._parameterNode.modelsFolder = self.logic.importModels(source)
            self.listModelSets()

    def listModelSets(self):
        self.ui.modelSetsListWidget.clear()
        for folder, description in self.logic.modelSets():
            item = qt.QListWidgetItem(f"{folder.name}: {description}")
            item.setToolTip(str(folder))
            item.setData(qt.Qt.UserRole, str(folder))
            self.ui.modelSetsListWidget.addItem(item)

    def onModelSetClicked(self, item):
        self._parameterNode.modelsFolder = Path(item.data(qt.Qt.UserRole))

    def onOpenModelsFolder(self):
        qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(str(self._parameterNode.modelsFolder)))


class DTISynthLogic(ScriptedLoadableModuleLogic):
    """Qt-free apart from dialogs: the work is DTISynthLib.slicer.job_runner and DTISynthLib.slicer.mrml_adapter."""

    def getParameterNode(self):
        return DTISynthParameterNode(super().getParameterNode())

    def modelsRoot(self):
        """Where imported model packages go (the user's application data folder)."""
        location = qt.QStandardPaths.writableLocation(qt.QStandardPaths.AppDataLocation)
        return Path(location) / "DTISynth" / "models"

    def ensureDependencies(self, confirm=True, torch=True):
        """Install what DTISynth needs, after the user agrees; False when they decline. Resources/
        requirements.txt (nibabel, isal, pynrrd, ...: Slicer's process reads results, studies and the phantom
        with them) always; with `torch`, PyTorch for the child process that runs the networks. Checked with
        find_spec and installed with pip, so torch is never imported into Slicer (PyTorchUtils' installTorch
        imports it to report its version)."""
        requirements = Path(__file__).parent / "Resources" / "requirements.txt"
        if torch and importlib.util.find_spec("torch") is None:
            if confirm and not slicer.util.confirmOkCancelDisplay(
                    _("DTISynth needs PyTorch (a large download). Install it now?")):
                return False
            slicer.util.pip_install("torch")
        packaging = _pip_ensure_module()
        if packaging is not None:
            try:
                packaging.pip_ensure(packaging.load_requirements(requirements), requester="DTISynth",
                                     prompt_install=confirm)
            except RuntimeError:  # "User declined package installation" (Slicer's pip_ensure raises it)
                return False
            return True
        lines = [line.split("#")[0].strip() for line in requirements.read_text().splitlines()]
        modules = {"pynrrd": "nrrd"}  # distribution name -> import name, where they differ
        needed = [line for line in lines if line and importlib.util.find_spec(
            modules.get(re.split(r"[<>=!~ ]", line)[0], re.split(r"[<>=!~ ]", line)[0])) is None]
        if needed:
            if confirm and not slicer.util.confirmOkCancelDisplay(
                    _("DTISynth needs {packages}. Install them now?").format(packages=", ".join(needed))):
                return False
            slicer.util.pip_install(needed)
        return True

    def synthesize(self, dwiNode, b0Node=None, acquiredNode=None, models=None, device="auto", wait=True,
                   progress=None, bval=None, bvec=None):
        """Synthesize (and, with acquiredNode, evaluate). dwiNode: a DWI node, or a sequence node with FSL
        bval / bvec files. wait=True blocks and returns {role: node}; wait=False returns the started
        DTISynthLib.slicer.job_runner.SynthesisJob for the caller to poll."""
        if not self.ensureDependencies():  # scripted use too, not only the Apply button
            raise RuntimeError("DTISynth's Python packages are not installed (the installation was declined)")
        from DTISynthLib.slicer.job_runner import SynthesisJob

        job = SynthesisJob(dwiNode, b0Node, acquiredNode, models=models, device=device, bval=bval, bvec=bvec)
        if wait:
            return job.run(slicer.mrmlScene, progress=progress or (lambda e: logging.info(e.get("message", ""))))
        job.start()
        return job

    def modelSets(self):
        """[(folder, one-line description)] of the shipped and imported model packages."""
        from DTISynthLib.generators.package import SHIPPED_MODELS, installed_packages

        return [(folder, description) for folder, _, description in
                installed_packages([SHIPPED_MODELS, self.modelsRoot()])]

    def importModels(self, source):
        from DTISynthLib.generators.package import import_package

        return import_package(source, self.modelsRoot())

    def showResults(self, nodes, shownMap="FA", showROIs=True, hideGuessedOrientation=False):
        """Show a map in the slice views. hideGuessedOrientation: colour FA with the voxels whose V1
        confidence is below 0.8 in grey (results of kinds without a confidence: the plain colour FA)."""
        role = MAP_ROLES[shownMap]
        if role == "color" and hideGuessedOrientation and "color_confident" in nodes:
            role = "color_confident"
        if role not in nodes:  # a package that writes no V1 confidence
            role = "color" if role == "v1_confidence" else role
        slicer.util.setSliceViewerLayers(background=nodes[role], fit=True)
        if "rois" in nodes:
            nodes["rois"].GetDisplayNode().SetVisibility(bool(showROIs))

    def showTable(self, nodes):
        if "table" in nodes:
            slicer.app.layoutManager().setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpPlotTableView)
            slicer.app.applicationLogic().GetSelectionNode().SetActiveTableID(nodes["table"].GetID())
            slicer.app.applicationLogic().PropagateTableSelection()

    def showPlot(self, nodes, map_name="fa"):
        """The Bland-Altman chart of map_name (fa, md, ad, rd), FA's for maps without one (colour FA)."""
        chart = nodes.get(f"bland_altman_{map_name}", nodes.get("bland_altman_fa"))
        if chart is not None:
            slicer.modules.plots.logic().ShowChartInLayout(chart)

    def loadPhantomSample(self):
        """Simulate a phantom subject here (a few seconds) and add its 3-direction DWI and 6-direction DTI."""
        if not self.ensureDependencies(torch=False):  # nibabel and the rest, before the library needs them
            return []
        from DTISynthLib.core.dwi import check_dwi
        from DTISynthLib.simulation.cohort import draw_subject, simulate_subject
        from DTISynthLib.slicer.mrml_adapter import add_dwi_volume

        with slicer.util.WaitCursor():
            subject = simulate_subject(draw_subject("sub-001", 0), "sampled")
            dwi = add_dwi_volume(slicer.mrmlScene, "DTISynthPhantom 3-direction DWI", check_dwi(subject.dwi))
            dti = add_dwi_volume(slicer.mrmlScene, "DTISynthPhantom acquired DTI", check_dwi(subject.dti))
        return [dwi, dti]


class DTISynthTest(ScriptedLoadableModuleTest):
    """Runs in real Slicer: Developer Tools > Reload and Test, or `Slicer --testing --python-code
    "import DTISynth; DTISynth.DTISynthTest().runTest()"`."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        # Reload and Test calls runTest directly, outside unittest's runner, where skipTest would be a failure
        if importlib.util.find_spec("torch") is None:
            self.delayDisplay("DTISynth test skipped: PyTorch is not installed in this Slicer")
            return
        self.test_synthesize_phantom_with_demo_models()

    def test_synthesize_phantom_with_demo_models(self):
        logic = DTISynthLogic()
        if importlib.util.find_spec("torch") is None:
            self.skipTest("PyTorch is not installed in this Slicer")
        dwi, dti = logic.loadPhantomSample()
        nodes = logic.synthesize(dwi, None, dti, wait=True)
        self.assertTrue(nodes["tensor"].IsA("vtkMRMLDiffusionTensorVolumeNode"))
        self.assertEqual(nodes["dwi"].GetNumberOfGradients(), 7)
        self.assertEqual(nodes["table"].GetNumberOfRows(), 20)
        fa = slicer.util.arrayFromVolume(nodes["fa"])
        self.assertGreater(float(fa.max()), 0.5)
        self.assertNotIn("torch", __import__("sys").modules)
        self.delayDisplay("DTISynth synthesis test passed")

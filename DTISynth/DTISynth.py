"""DTISynth Slicer module: a minimal scripted module. The real panel comes with the Slicer issue.

The science lives in DTISynthLib (installed beside this file); this file stays thin.
"""

import slicer
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)


class DTISynth(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "DTISynth"
        self.parent.categories = ["Diffusion"]
        self.parent.dependencies = []
        self.parent.contributors = ["DTISynth developers"]
        self.parent.helpText = (
            "Synthesize diffusion tensor images (b0 + 6 directions) from a conventional 3-direction DWI, "
            "fit tensors and derive FA / MD / AD / RD / colour-FA maps. This version offers tensor fitting; "
            "synthesis arrives in a later release.")
        self.parent.acknowledgementText = (
            "Method after: Deep learning-based diffusion tensor image generation model: a proof-of-concept "
            "study (pix2pix, one model per gradient direction).")


class DTISynthWidget(ScriptedLoadableModuleWidget):
    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)


class DTISynthLogic(ScriptedLoadableModuleLogic):
    pass


class DTISynthTest(ScriptedLoadableModuleTest):
    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_fit_numerical_phantom()

    def test_fit_numerical_phantom(self):
        from DTISynthLib.numerical_phantom import make_fibre_phantom
        from DTISynthLib.tensor_fit import fit_tensors
        from DTISynthLib.tensor_maps import compute_maps

        dwi, truth = make_fibre_phantom(shape=(16, 16, 8))
        fit = fit_tensors(dwi, truth["labels"] > 0)
        fa = compute_maps(fit.tensor, names=("fa",))["fa"]
        expected = compute_maps(truth["tensor"], names=("fa",))["fa"]
        self.assertLess(abs(fa - expected).max(), 1e-4)
        self.delayDisplay("DTISynth fit test passed")

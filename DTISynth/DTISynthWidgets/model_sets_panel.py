"""The model sets of the module's panel: the list of shipped and imported model packages, importing
one (a .zip or a folder, verified and copied into the user's application data folder) and opening
the chosen one's folder."""

from pathlib import Path

import qt
import slicer
from slicer.i18n import tr as _

from DTISynthLib.generators.package import SHIPPED_MODELS, find_package, import_package, installed_packages


def imported_models_root():
    """Where imported model packages go: DTISynth/models in the user's application data folder."""
    return Path(qt.QStandardPaths.writableLocation(qt.QStandardPaths.AppDataLocation)) / "DTISynth" / "models"


def model_roots():
    """Where packages are looked for, in order: the shipped ones (this install's), then the imported."""
    return [SHIPPED_MODELS, imported_models_root()]


def model_folder(name):
    """The folder of the installed package `name` (InputError when there is none)."""
    return find_package(name, model_roots())


class ModelSetsPanel:
    """ui: the panel's widgets; model_set(): the name of the package chosen; choose(name): make it the
    chosen one."""

    def __init__(self, ui, model_set, choose):
        self.ui, self.model_set, self.choose = ui, model_set, choose
        ui.importModelsButton.connect("clicked(bool)", self.import_package)
        ui.openModelsFolderButton.connect("clicked(bool)", self.open_folder)
        ui.modelSetsListWidget.connect("itemClicked(QListWidgetItem*)", self.clicked)
        self.list()

    def list(self):
        self.ui.modelSetsListWidget.clear()
        for folder, _manifest, description in installed_packages(model_roots()):
            item = qt.QListWidgetItem(f"{folder.name}: {description}")
            item.setToolTip(str(folder))
            item.setData(qt.Qt.UserRole, str(folder))
            self.ui.modelSetsListWidget.addItem(item)

    def clicked(self, item):
        self.choose(Path(item.data(qt.Qt.UserRole)).name)

    def import_package(self):
        """A .zip, or a folder: asked which first (cancelling the .zip dialog opened a folder dialog)."""
        box = qt.QMessageBox(slicer.util.mainWindow())
        box.setWindowTitle(_("Import a model package"))
        box.setText(_("Is the model package a .zip file or a folder?"))
        zip_button = box.addButton(_("A .zip file"), qt.QMessageBox.AcceptRole)
        folder_button = box.addButton(_("A folder"), qt.QMessageBox.AcceptRole)
        box.addButton(qt.QMessageBox.Cancel)
        box.exec_()
        if box.clickedButton() == zip_button:
            source = qt.QFileDialog.getOpenFileName(None, _("Import a model package"), "", _("Model package (*.zip)"))
        elif box.clickedButton() == folder_button:
            source = qt.QFileDialog.getExistingDirectory(None, _("Import a model package folder"))
        else:  # cancelled
            return
        if source:
            with slicer.util.tryWithErrorDisplay(_("The model package was refused."), waitCursor=True):
                self.choose(import_package(source, imported_models_root()).name)
            self.list()

    def open_folder(self):
        with slicer.util.tryWithErrorDisplay(_("The model package is not installed.")):
            qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(str(model_folder(self.model_set()))))

"""The model sets of the module's panel: the list of shipped and imported model packages, importing
one (a .zip or a folder, verified and copied into the user's application data folder) and opening
the chosen one's folder."""

from pathlib import Path

import qt
import slicer
from slicer.i18n import tr as _

from DTISynthLib.generators.package import SHIPPED_MODELS, import_package, installed_packages


def imported_models_root():
    """Where imported model packages go: DTISynth/models in the user's application data folder."""
    return Path(qt.QStandardPaths.writableLocation(qt.QStandardPaths.AppDataLocation)) / "DTISynth" / "models"


class ModelSetsPanel:
    """ui: the panel's widgets; models_folder(): the package chosen; choose(folder): make it the chosen one."""

    def __init__(self, ui, models_folder, choose):
        self.ui, self.models_folder, self.choose = ui, models_folder, choose
        ui.importModelsButton.connect("clicked(bool)", self.import_package)
        ui.openModelsFolderButton.connect("clicked(bool)", self.open_folder)
        ui.modelSetsListWidget.connect("itemClicked(QListWidgetItem*)", self.clicked)
        self.list()

    def list(self):
        self.ui.modelSetsListWidget.clear()
        for folder, _manifest, description in installed_packages([SHIPPED_MODELS, imported_models_root()]):
            item = qt.QListWidgetItem(f"{folder.name}: {description}")
            item.setToolTip(str(folder))
            item.setData(qt.Qt.UserRole, str(folder))
            self.ui.modelSetsListWidget.addItem(item)

    def clicked(self, item):
        self.choose(Path(item.data(qt.Qt.UserRole)))

    def import_package(self):
        source = qt.QFileDialog.getOpenFileName(None, _("Import a model package"), "", _("Model package (*.zip)"))
        if not source:
            source = qt.QFileDialog.getExistingDirectory(None, _("Import a model package folder"))
        if source:
            with slicer.util.tryWithErrorDisplay(_("The model package was refused."), waitCursor=True):
                self.choose(import_package(source, imported_models_root()))
            self.list()

    def open_folder(self):
        qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(str(self.models_folder())))

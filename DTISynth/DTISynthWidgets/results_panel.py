"""The Results section of the module's panel (widgets in its .ui), showing results through
DTISynthLib.slicer.results_display."""

import contextlib

from DTISynthLib.slicer.results_display import MAP_ROLES, show_plot, show_results, show_table


class ResultsPanel:
    """The Results section of the module's panel (widgets in its .ui): the map shown, the ROI overlay,
    greyed guessed orientation, the table and chart buttons. Holds the nodes of the last results.

    It changes the views only when the user asks (a result loaded, a map or option chosen): not while
    the parameter node's GUI binding refills its widgets on entering the module (holding()), which
    repainted every slice view and lost zoom and pan, and not while a review owns the views
    (views_taken(): the next arrow key would answer a case no longer on screen)."""

    def __init__(self, ui, views_taken=lambda: False):
        self.ui, self.nodes, self.views_taken, self.held = ui, {}, views_taken, False
        ui.showTableButton.connect("clicked(bool)", lambda: self._show(show_table, self.nodes))
        ui.showPlotButton.connect("clicked(bool)", lambda: self._show(  # the map on show, not always FA
            show_plot, self.nodes, MAP_ROLES.get(ui.mapComboBox.currentText, "fa")))
        ui.mapComboBox.connect("currentIndexChanged(int)", self.update)
        ui.roiOverlayCheckBox.connect("toggled(bool)", self.update)
        ui.hideGuessCheckBox.connect("toggled(bool)", self.update)
        self.set_nodes({})

    @contextlib.contextmanager
    def holding(self):
        """Widget changes inside the block are not the user's: they change no view."""
        self.held = True
        try:
            yield
        finally:
            self.held = False

    def set_nodes(self, nodes, show=True):
        """New results: their reliability lines, and (with `show`) the map, table and chart; with {} forget
        them (the scene is closing). show=False for a reopened scene: its views are as it was saved."""
        self.nodes = nodes
        self.ui.resultsCollapsibleButton.enabled = bool(nodes)
        # the table and chart only for results with an evaluation (an acquired DTI): nothing to show otherwise
        self.ui.showTableButton.enabled = "table" in nodes
        self.ui.showPlotButton.enabled = "bland_altman_fa" in nodes
        self.ui.reliabilityTextEdit.plainText = nodes["reliability"].GetText() if "reliability" in nodes else ""
        if nodes and show:
            self.update()
            self._show(show_table, nodes)
            self._show(show_plot, nodes)

    def update(self, *args):
        # the parameter node's GUI binding refills the map list on entering: "" passes by while it does
        if self.nodes and self.ui.mapComboBox.currentText in MAP_ROLES:
            self._show(show_results, self.nodes, self.ui.mapComboBox.currentText, self.ui.roiOverlayCheckBox.checked,
                       self.ui.hideGuessCheckBox.checked)

    def _show(self, show, *args):
        if not self.held and not self.views_taken():
            show(*args)

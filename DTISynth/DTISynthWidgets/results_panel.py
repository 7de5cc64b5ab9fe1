"""The Results section of the module's panel (widgets in its .ui), showing results through
DTISynthLib.slicer.results_display."""

from DTISynthLib.slicer.results_display import MAP_ROLES, show_plot, show_results, show_table


class ResultsPanel:
    """The Results section of the module's panel (widgets in its .ui): the map shown, the ROI overlay,
    greyed guessed orientation, the table and chart buttons. Holds the nodes of the last results."""

    def __init__(self, ui):
        self.ui, self.nodes = ui, {}
        ui.showTableButton.connect("clicked(bool)", lambda: show_table(self.nodes))
        ui.showPlotButton.connect("clicked(bool)", lambda: show_plot(  # the map on show, not always FA
            self.nodes, MAP_ROLES.get(ui.mapComboBox.currentText, "fa")))
        ui.mapComboBox.connect("currentIndexChanged(int)", self.update)
        ui.roiOverlayCheckBox.connect("toggled(bool)", self.update)
        ui.hideGuessCheckBox.connect("toggled(bool)", self.update)
        self.set_nodes({})

    def set_nodes(self, nodes):
        """Show new results (map, table, chart), or with {} forget them (the scene is closing)."""
        self.nodes = nodes
        self.ui.resultsCollapsibleButton.enabled = bool(nodes)
        if nodes:
            self.update()
            show_table(nodes)
            show_plot(nodes)

    def update(self, *args):
        # the parameter node's GUI binding refills the map list on entering: "" passes by while it does
        if self.nodes and self.ui.mapComboBox.currentText in MAP_ROLES:
            show_results(self.nodes, self.ui.mapComboBox.currentText, self.ui.roiOverlayCheckBox.checked,
                         self.ui.hideGuessCheckBox.checked)

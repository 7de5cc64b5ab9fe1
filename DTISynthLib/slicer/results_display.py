"""The module panel's display of results in Slicer's views: a map in the slice views, the ROI
overlay, the statistics table and a Bland-Altman chart. `nodes` is mrml_adapter.load_results' {role:
node}. Needs the Slicer application (slicer.app, the layout manager), imported inside functions."""

# the panel's names of the maps -> load_results' roles
MAP_ROLES = {"FA": "fa", "MD": "md", "AD": "ad", "RD": "rd", "colour FA": "color", "V1 confidence": "v1_confidence"}


def shown_role(nodes, shown_map, hide_guessed_orientation=False):
    """The role of the node to show for a map name of MAP_ROLES. hide_guessed_orientation: the colour
    FA with the voxels whose V1 confidence is below 0.8 in grey (for results of kinds without a
    confidence: the plain colour FA, as for the confidence map itself)."""
    role = MAP_ROLES[shown_map]
    if role == "color" and hide_guessed_orientation and "color_confident" in nodes:
        role = "color_confident"
    if role not in nodes:  # a package that writes no V1 confidence
        role = "color" if role == "v1_confidence" else role
    return role


def show_results(nodes, shown_map="FA", show_rois=True, hide_guessed_orientation=False):
    """A map in the slice views (fitted to them), the ROI segmentation shown or hidden."""
    import slicer

    slicer.util.setSliceViewerLayers(background=nodes[shown_role(nodes, shown_map, hide_guessed_orientation)],
                                     fit=True)
    if "rois" in nodes:
        nodes["rois"].GetDisplayNode().SetVisibility(bool(show_rois))


def show_table(nodes):
    """The ROI statistics table in a four-up layout with table and plot views."""
    import slicer

    if "table" in nodes:
        slicer.app.layoutManager().setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpPlotTableView)
        slicer.app.applicationLogic().GetSelectionNode().SetActiveTableID(nodes["table"].GetID())
        slicer.app.applicationLogic().PropagateTableSelection()


def show_plot(nodes, map_name="fa"):
    """The Bland-Altman chart of map_name (fa, md, ad, rd), FA's for maps without one (colour FA)."""
    import slicer

    chart = nodes.get(f"bland_altman_{map_name}", nodes.get("bland_altman_fa"))
    if chart is not None:
        slicer.modules.plots.logic().ShowChartInLayout(chart)

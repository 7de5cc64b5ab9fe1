"""A reader's noise review in Slicer, Qt-free: the next case of their study in two linked axial slice
views (side by side), both images with one colour map and the map kind's fixed window, under neutral
node names. Everything goes through the study's server with the reader's link (review.client), as the
browser page does: the reader's Slicer never opens the study folder, whose store holds the answer key
and every reader's answers, and the server refuses what it refuses the page.

The Qt panel only forwards buttons and shortcuts (left / right arrow, 1-5, P) to this class. As on
the browser page: the study's display protocol (nearest-neighbour voxels unless the study says linear:
Slicer interpolates by default, which smooths the very noise being judged; radiological or neurological
axial views), each case fitted to the views, a case's reading clock started once both images are in
the views (the server's "shown"), a Pause that hides both images and keeps its time out of the reading
time, practice cases first (never analysed; the first study case says that practice is over), and an
answer needs a confidence (1-5, store.CONFIDENCE_SCALE).
"""

import time

from ..review.client import StudyClient

NODE_NAMES = {"left": "Review left", "right": "Review right"}
VIEWS = {"left": "Red", "right": "Yellow"}
OWNER = "DTISynth.review"  # node attribute marking the volumes a review session made (only those are removed)
# Slicer's "Axial" preset is radiological (XY-to-RAS x column -1: the patient's left on the screen's right);
# the neurological view is the same with x not mirrored, added to the review's two slice nodes.
NEUROLOGICAL_AXIAL = "Axial neurological"


class ReviewSession:
    """One reader's review, through the study server of their `link` (http://host:port/r/TOKEN), shown in
    `scene`. Opening it asks the server for the reader's state: a wrong link or a server not running is an
    InputError at once. fit_views: called with no argument once a case is in the views (the panel passes
    Slicer's slicer.util.resetSliceViews; the browser page likewise resets zoom and pan per case)."""

    def __init__(self, scene, link, fit_views=None):
        self.scene, self.fit_views = scene, fit_views
        self.client = StudyClient(link)
        self.state = self.client.state()
        self.shown, self.nodes = None, {}
        self.paused_since, self.paused_seconds = None, 0.0  # the case on screen's pauses (monotonic clock)
        self._practised = False  # a practice case was answered in this session (the next study case says so)
        self._linked = None  # the views' linked-control flags before the review linked them

    def progress_text(self):
        if self.shown is None:
            answered, total = self.state["answered"], self.state["total"]
            return f"Done: {answered} of {total}" if answered == total else "Not started"
        if self.shown.training:
            return f"Practice case {self.shown.number} of {self.shown.total}"
        over = "Practice is over: the study's cases begin (these are analysed). " \
            if self._practised and self.shown.number == 1 else ""
        return f"{over}Case {self.shown.number} of {self.shown.total}"

    def show_next(self):
        """Load the reader's first unanswered case (where they resume); None when all are answered."""
        position = self.state["next"]
        self._clear()
        self.shown = None
        if position is None:
            self.close()
            return None
        shown, window = self.client.case(position)
        for side in ("left", "right"):
            self.nodes[side] = self._load(side, getattr(shown, f"{side}_image"), window)
        self.shown = shown
        self.paused_since, self.paused_seconds = None, 0.0
        self._show_side_by_side()
        if self.fit_views is not None:
            self.fit_views()
        self.client.shown(position)
        return self.shown

    @property
    def paused(self):
        return self.paused_since is not None

    def pause(self):
        """Hide both images and stop the case's reading clock (resume() goes on); nothing can be answered."""
        if self.shown is None or self.paused:
            return
        self.paused_since = time.monotonic()
        self._show_images(False)

    def resume(self):
        if not self.paused:
            return
        self.paused_seconds += time.monotonic() - self.paused_since
        self.paused_since = None
        self._show_images(True)

    def save(self, choice, confidence, comment=None):
        """Save the choice (left / right: the noisier image) for the case shown; the case stays on screen
        but can no longer be answered (show_next loads the next)."""
        from ..core.errors import InputError

        if self.shown is None:
            raise InputError("review", "a case on screen", "none (all answered)")
        if self.paused:
            raise InputError("review", "the review resumed before answering (the images are hidden)", "a pause")
        self.state = self.client.answer(self.shown.position, choice, confidence, comment, self.paused_seconds)
        self._practised = self._practised or self.shown.training
        self.shown = None

    def answer(self, choice, confidence, comment=None):
        """save(), then show the next case (returned; None when all are answered)."""
        self.save(choice, confidence, comment)
        return self.show_next()

    def close(self):
        """End the session's display: its volumes removed, the views' linking as it was before."""
        self._clear()
        if self._linked is not None:
            for view, linked in self._linked.items():
                self._view_node("vtkMRMLSliceCompositeNode", view).SetLinkedControl(linked)
            self._linked = None

    def _load(self, side, image_name, window):
        from .mrml_adapter import add_color_volume, add_scalar_volume

        data, affine = self.client.image(image_name)
        if data.ndim == 4:
            node = add_color_volume(self.scene, NODE_NAMES[side], data, affine)
        else:
            node = add_scalar_volume(self.scene, NODE_NAMES[side], data, affine, window=window)
            grey = self.scene.GetFirstNodeByName("Grey")
            if grey is not None:
                node.GetDisplayNode().SetAndObserveColorNodeID(grey.GetID())
        node.SetAttribute(OWNER, "1")
        node.GetDisplayNode().SetInterpolate(int(self.state.get("interpolation") == "linear"))
        return node

    def _show_side_by_side(self):
        """Left image in the Red view, right in the Yellow, both axial and linked; the side-by-side
        layout where the scene has a layout node (Slicer's)."""
        if self._linked is None:
            self._linked = {view: self._view_node("vtkMRMLSliceCompositeNode", view).GetLinkedControl()
                            for view in VIEWS.values()}
        for side, view in VIEWS.items():
            composite = self._view_node("vtkMRMLSliceCompositeNode", view)
            composite.SetBackgroundVolumeID(self.nodes[side].GetID())
            composite.SetForegroundVolumeID(None)
            composite.SetLabelVolumeID(None)
            composite.SetLinkedControl(1)
            self._orient(self._view_node("vtkMRMLSliceNode", view))
        layout = self.scene.GetFirstNodeByClass("vtkMRMLLayoutNode")
        if layout is not None:
            layout.SetViewArrangement(layout.SlicerLayoutSideBySideView)

    def _orient(self, slice_node):
        """Axial, radiological or neurological as the study says."""
        if self.state.get("orientation") != "neurological":
            slice_node.SetOrientation("Axial")
            return
        if not slice_node.HasSliceOrientationPreset(NEUROLOGICAL_AXIAL):
            import vtk

            slice_node.AddSliceOrientationPreset(NEUROLOGICAL_AXIAL, vtk.vtkMatrix3x3())  # identity: x not mirrored
        slice_node.SetOrientation(NEUROLOGICAL_AXIAL)

    def _show_images(self, visible):
        for side, view in VIEWS.items():
            composite = self._view_node("vtkMRMLSliceCompositeNode", view)
            composite.SetBackgroundVolumeID(self.nodes[side].GetID() if visible else None)

    def _view_node(self, class_name, view):
        """The scene's node of `class_name` for slice view `view` (Red, Yellow), made if missing."""
        for index in range(self.scene.GetNumberOfNodesByClass(class_name)):
            node = self.scene.GetNthNodeByClass(index, class_name)
            if node.GetLayoutName() == view:
                return node
        if class_name == "vtkMRMLSliceNode":  # presets Slicer's application gives its own slice nodes
            import slicer

            slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(self.scene)
        node = self.scene.CreateNodeByClass(class_name)
        node.SetLayoutName(view)
        self.scene.AddNode(node)
        return node

    def _clear(self):
        """Remove the review's volumes, this session's and any an earlier session left in the scene (those
        marked OWNER: a volume of the user's that happens to share the name stays)."""
        volumes = [self.scene.GetNthNodeByClass(k, "vtkMRMLVolumeNode")
                   for k in range(self.scene.GetNumberOfNodesByClass("vtkMRMLVolumeNode"))]
        for node in [v for v in volumes if v.GetAttribute(OWNER) == "1"]:
            displays = [node.GetNthDisplayNode(k) for k in range(node.GetNumberOfDisplayNodes())]
            self.scene.RemoveNode(node)
            for display in displays:
                self.scene.RemoveNode(display)
        self.nodes = {}

"""The Review section of the module's panel: its buttons and keys, forwarded to a ReviewSession (the
widgets are in the module's .ui)."""

import qt
import slicer
from slicer.i18n import tr as _

from DTISynthLib.slicer.review_session import ReviewSession


class ReviewPanel:
    """ui: the panel's widgets (slicer.util.childWidgetVariables of the module's .ui); panel: the module
    panel's widget, which owns the keys: Left / Right arrow answer, 1-5 set the confidence and P pauses
    while focus is in the panel, not in the whole main window (slice views keep their arrow keys, Segment
    Editor its 1-5); ensure_dependencies(): False when the user declines the packages the review needs
    (raises when their installation fails: called inside the error display). The reader gives only their
    link: the review goes through the study's server (ReviewSession), never its folder."""

    def __init__(self, ui, panel, ensure_dependencies):
        self.ui, self.panel, self.ensure_dependencies = ui, panel, ensure_dependencies
        self.session = None
        self.shortcuts = []
        ui.reviewStartButton.connect("clicked(bool)", self.start)
        ui.reviewPauseButton.connect("clicked(bool)", self.toggle_pause)
        for side, button, key in (("left", ui.reviewLeftButton, qt.Qt.Key_Left),
                                  ("right", ui.reviewRightButton, qt.Qt.Key_Right)):
            button.connect("clicked(bool)", lambda checked, side=side: self.answer(side))
            self._add_shortcut(qt.QKeySequence(key), lambda side=side: self.answer(side))
        for value in range(1, 6):
            self._add_shortcut(qt.QKeySequence(str(value)),
                               lambda value=value: setattr(ui.reviewConfidenceSpinBox, "value", value))
        self._add_shortcut(qt.QKeySequence("P"), self.toggle_pause)

    def _add_shortcut(self, keys, action):
        shortcut = qt.QShortcut(keys, self.panel)
        shortcut.setContext(qt.Qt.WidgetWithChildrenShortcut)
        shortcut.connect("activated()", action)
        self.shortcuts.append(shortcut)

    def start(self):
        with slicer.util.tryWithErrorDisplay(_("The review could not start."), waitCursor=True):
            if not self.ensure_dependencies():
                return
            self.close()
            self.session = ReviewSession(slicer.mrmlScene, self.ui.reviewLinkLineEdit.text,
                                         fit_views=slicer.util.resetSliceViews)
            self.session.show_next()
        self._shown()

    def answer(self, side):
        """Save the answer, then load the next case: a failure of the second is not "not saved"."""
        if self.session is None or self.session.shown is None:
            return
        if self.session.paused:
            self.ui.reviewProgressLabel.text = _("Paused: resume (P) before answering")
            return
        with slicer.util.tryWithErrorDisplay(_("The answer was not saved."), waitCursor=True):  # re-raises
            self.session.save(side, self.ui.reviewConfidenceSpinBox.value or None,
                              self.ui.reviewCommentLineEdit.text or None)
        with slicer.util.tryWithErrorDisplay(_("The answer was saved, but the next case could not be loaded: "
                                               "press Start / resume to go on."), waitCursor=True):
            self.session.show_next()
        self._shown()

    def toggle_pause(self):
        if self.session is None or self.session.shown is None:
            return
        if self.session.paused:
            self.session.resume()
        else:
            self.session.pause()
        self.ui.reviewPauseButton.text = _("Resume (P)") if self.session.paused else _("Pause (P)")
        self.ui.reviewProgressLabel.text = _("Paused: the images are hidden and the clock is stopped") \
            if self.session.paused else self.session.progress_text()

    def _shown(self):
        if self.session is not None:
            self.ui.reviewProgressLabel.text = self.session.progress_text()
        self.ui.reviewPauseButton.text = _("Pause (P)")
        self.ui.reviewConfidenceSpinBox.value = 0
        self.ui.reviewCommentLineEdit.text = ""

    def close(self):
        """End the session's display (its volumes removed, the views as they were)."""
        if self.session is not None:
            self.session.close()
            self.session = None

    def cleanup(self):
        """The module is going (Slicer closing, or Reload): end the display and delete the shortcuts, or a
        reloaded panel's would sit beside them and Qt would send every key as ambiguous."""
        self.close()
        for shortcut in self.shortcuts:
            shortcut.disconnect("activated()")
            shortcut.setParent(None)
            shortcut.deleteLater()
        self.shortcuts = []

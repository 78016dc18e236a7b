"""Widgets and models the other ui/ packages share: the task runner, the GUI-thread guard,
the batch buffer, the table base classes, the log pane, icons and the saved window state."""

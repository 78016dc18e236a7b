"""The "TLS" group of the Nodes dialog: DICOM TLS of a node (CA, our client certificate, host
name check) or of our own SCPs (certificate, key, client CA, client certificates required).

A private key file readable by other users is named under the fields (and logged once when
used). Only files are checked here (``os.stat``); certificates are loaded when used.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QWidget,
)

from workstation.dimse.tls import key_warning

_PEM = "PEM files (*.pem *.crt *.cer *.key);;All files (*)"


class _FileField(QWidget):
    edited = Signal()

    def __init__(self, title: str, placeholder: str = "") -> None:
        super().__init__()
        self.title = title
        self.edit = QLineEdit()
        self.edit.setPlaceholderText(placeholder)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.edit, 1)
        layout.addWidget(browse)
        self.edit.textEdited.connect(self.edited)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, self.title, self.edit.text(), _PEM)
        if path:
            self.edit.setText(path)
            self.edited.emit()

    def text(self) -> str:
        return self.edit.text().strip()

    def setText(self, text: str) -> None:
        self.edit.setText(text)


class TlsGroup(QGroupBox):
    """A checkable "TLS" group. ``server``: our SCPs' settings, else a node's."""

    edited = Signal()

    def __init__(self, *, server: bool = False) -> None:
        super().__init__("DICOM TLS" + (" for our storage and Q/R SCPs" if server else ""))
        self.server = server
        self.setCheckable(True)
        self.setChecked(False)
        self.setToolTip(
            "DICOM over TLS 1.2 or later with BCP 195 cipher suites (PS3.15 B.9); the usual "
            "port is 2762"
        )
        if server:
            self.cert = _FileField("Our certificate")
            self.key = _FileField("Our private key")
            self.ca = _FileField("CA of the client certificates", "system trust store")
            self.check = QCheckBox("Require a client certificate signed by that CA")
        else:
            self.ca = _FileField("CA of the node's certificate", "system trust store")
            self.cert = _FileField("Our client certificate", "none")
            self.key = _FileField("Our private key", "none")
            self.check = QCheckBox("Check that the certificate names the host")
        self.warning = QLabel()
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet("color: #a15c00;")
        form = QFormLayout(self)
        if server:
            form.addRow("Certificate", self.cert)
            form.addRow("Private key", self.key)
            form.addRow("Client CA", self.ca)
        else:
            form.addRow("CA certificate", self.ca)
            form.addRow("Client certificate", self.cert)
            form.addRow("Private key", self.key)
        form.addRow("", self.check)
        form.addRow(self.warning)
        for field in (self.ca, self.cert, self.key):
            field.edited.connect(self._changed)
        self.check.toggled.connect(self._changed)
        self.toggled.connect(self._changed)

    def _changed(self) -> None:
        self._show_warning()
        self.edited.emit()

    def _show_warning(self) -> None:
        key = self.key.text()
        warning = key_warning(key) if key and self.isChecked() else None
        self.warning.setText(warning[:1].upper() + warning[1:] + "." if warning else "")
        self.warning.setVisible(bool(warning))

    def set_values(self, enabled: bool, ca: str, cert: str, key: str, check: bool) -> None:
        """Show saved values (no ``edited`` signal)."""
        self.blockSignals(True)
        self.check.blockSignals(True)
        try:
            self.setChecked(enabled)
            self.ca.setText(ca)
            self.cert.setText(cert)
            self.key.setText(key)
            self.check.setChecked(check)
        finally:
            self.blockSignals(False)
            self.check.blockSignals(False)
        self._show_warning()

    def values(self) -> tuple[bool, str, str, str, bool]:
        """(enabled, CA, certificate, key, verify host / require client certificate)."""
        return (
            self.isChecked(),
            self.ca.text(),
            self.cert.text(),
            self.key.text(),
            self.check.isChecked(),
        )

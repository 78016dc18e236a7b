"""The workstation's resources, installed as the package ``workstation_resources``.

No code: icons, the ``.desktop`` entry, the About text and licence notices. Read them through
:mod:`workstation.resources` (``importlib.resources``), never by a path into the source tree.
"""

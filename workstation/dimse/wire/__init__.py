"""The lean DIMSE data path: PDUs, command sets and messages without pynetdicom's per-message
machinery (see README, "The transfer engine")."""

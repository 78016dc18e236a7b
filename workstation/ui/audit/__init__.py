"""View → Audit trail…: the dialog over the store's audit trail."""

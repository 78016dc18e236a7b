"""The Nodes dialog: the PACS the window talks to, and their TLS settings."""

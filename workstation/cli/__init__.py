"""The command line face: ``workstation find|move|get|echo|store-scp|nodes ...``."""

from workstation.cli.main import main

__all__ = ["main"]

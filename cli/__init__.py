"""The ``ifcflow`` command line: ``ifcflow up`` runs the whole pipeline on one machine."""

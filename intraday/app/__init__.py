"""The composition root: the command line, the process supervisor, the services and status."""

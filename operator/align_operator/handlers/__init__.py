"""Kopf handlers: thin I/O around the pure renderers and status logic. Registered in align_operator.main."""

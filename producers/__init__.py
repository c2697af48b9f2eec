"""Producers: turn the files of a delivery-day directory into source events (data-formats.md)."""

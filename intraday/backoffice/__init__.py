"""Invoices, the performance report, data permissions and the users file."""

"""The performance report: its figures (compute), its files (JSON, CSV), its page (HTML with inline SVG charts)."""

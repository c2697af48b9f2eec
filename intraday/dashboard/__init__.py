"""The desk's web pages: layout, figures, login and the report page."""

"""Derived topics to the database: the writer loop and the migrations runner."""

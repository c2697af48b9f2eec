"""Every SELECT the desk, the result files and the back office read, in one place."""

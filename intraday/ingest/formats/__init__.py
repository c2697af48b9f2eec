"""One module per source family of data-formats.md: each turns a file into records and rejections."""

"""Input files to source topics: the file formats, the generated days and the replay."""

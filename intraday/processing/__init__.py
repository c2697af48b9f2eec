"""Source topics to derived topics: the Faust agents around the pure state steps."""

"""Growth curves of one nexios process, 1k to 50k members. See ``bench/README.md``."""

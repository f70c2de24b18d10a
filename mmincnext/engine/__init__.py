"""Training utilities (optimizer constructors). Filled by the detection work."""

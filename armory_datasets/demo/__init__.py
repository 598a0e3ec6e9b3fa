"""Small real models and data (scikit-learn digits) used by tests, examples and benchmarks."""

"""Instance and code-location variants the benchmark can measure against the project defaults."""

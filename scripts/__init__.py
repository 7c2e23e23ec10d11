"""The project's scripts: shell entry points (`run`, `test`, `setup`, …) and `bench`, the benchmarks as a package."""

"""Shared contracts: the names every stage and both DAGs agree on, and the typed payloads
that travel between tasks through XCom. Imports nothing else of the project."""

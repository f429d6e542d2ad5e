"""The Python API's own parts: `Study` (a study directory read for a notebook) and `run`.

`import ablate` exposes them with the rest of the surface (`ablate.load_grid`,
`ablate.train_one`, the errors); see ablate/__init__.py and the README's "Use from Python".
This floor sits above the engine and below the command line: the commands call the same
functions these do.
"""

"""The ``stemstore`` command line: parse, call the library, render. No logic of its own."""

"""One-off measurements: each module is a script, `python -m lab.experiments.<name> --help`."""

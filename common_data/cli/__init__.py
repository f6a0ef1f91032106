"""The command lines of the project's commands: their flags (gpt2_ft.py, gpt2_beam.py, nlg-data), --config files
and recipes, and how every command ends on bad input."""

"""linewatch train: fine-tune a model on a dataset export (see command.py)."""

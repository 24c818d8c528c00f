"""The trainer: Alertmanager's ``retrain="true"`` webhook in, train and promote out."""

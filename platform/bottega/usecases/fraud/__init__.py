"""Fraud detection: card payments scored in real time, with chargebacks as delayed labels."""

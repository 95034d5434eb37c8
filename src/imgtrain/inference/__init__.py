"""Inference: scoring image directories with a trained model, and evaluating the scores."""

"""Linking new text with a trained model: inputs, model sources, outputs."""

"""Linkers that score (mention, candidate name) pairs: BERT-family and CNN encoders."""

"""Single-task training and evaluation of a linker."""

"""Sequential training across tasks with forgetting-prevention methods."""

"""Networks. Every model takes raw patches or tiles and says its tensor shapes in its docstrings."""

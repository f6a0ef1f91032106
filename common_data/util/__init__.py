"""Small helpers every part uses: atomic writes, error types, JSON Lines, paths."""

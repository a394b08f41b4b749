"""Teacher and student models: loading, deriving a student, and the features a loss reads from them."""

"""Read models built from the log: boundary models, indexes, and the query views over them."""

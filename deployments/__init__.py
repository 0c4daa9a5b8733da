"""How flows run: serving every deployment in one process (embedded) or via work pools."""

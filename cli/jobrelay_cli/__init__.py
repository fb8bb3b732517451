"""The operator CLI, `jobrelay`: for any jobrelay stack, local or deployed."""

"""The core: the typed tensor IR, its canonical constructors (the simplifier), the rule
table, reverse mode, and what each elementwise function means for one number."""

"""The language: source text to tokens and a syntax tree, lowered to the typed IR of
:mod:`matcalc.core`; programs, their declarations and sizes."""

"""The forms a result takes: text and LaTeX printers, Jacobian matrices of linear maps,
Kronecker and index forms, derivations, and the code emitters with the modules they write."""

"""Networks and their training: every torch network, device and threads, weight files, and the one
training loop. See docs/architecture-nn.md for where a new network or training feature goes.

Importing this package (or any module in it except ``networks``) does not import torch."""

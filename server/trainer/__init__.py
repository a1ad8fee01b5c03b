"""Trainers: the supervisor that claims runs by lease, and the per-run Alg. 1 loop over SQL."""

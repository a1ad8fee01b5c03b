"""Unified RL in torch: SAC, the dropout-LSTM model-based learner and the EPS gate."""

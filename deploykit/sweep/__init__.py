"""Sweeps: the cross product of models x targets x precision x batch x resolution x threads, one child process
per cell."""

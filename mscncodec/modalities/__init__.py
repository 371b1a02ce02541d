"""Modalities: the only code that knows what a signal is (load, sample, render, save)."""

"""Shared building blocks for the model zoo (the ParC operator). Import torch lazily: only model builders
import this package."""

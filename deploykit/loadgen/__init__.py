"""Serving under load: MLPerf LoadGen scenarios with a deploykit runtime as the system under test."""

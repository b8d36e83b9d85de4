"""Transcription engines and the redaction policy."""
